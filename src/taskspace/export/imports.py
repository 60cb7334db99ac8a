"""A PEFT adapter folder (LoRA or prompt tuning) as a taskspace theta, and as a finished run.

LoRA: each adapted module must be a whole ``nn.Linear`` projection that taskspace's LoRA can target (q, k, v, o,
feed-forward in and out, in self or cross attention). The run's ``targets`` are the roles the adapter touches;
a module of those roles that the adapter leaves out (peft's ``layers_to_transform``, or a list of some layers'
modules) gets A = B = 0 in theta, which adds exactly nothing. Refused, with the reason: rsLoRA, DoRA, LoRA biases,
per-module ranks or alphas, fused or ``Conv1D`` modules, and modules taskspace has no site for.

Prompt tuning: decoder-only backbones, one prompt (``num_transformer_submodules`` 1), as the export writes it.

Only safetensors weights are read (``adapter_model.safetensors``); a pickled ``adapter_model.bin`` is refused.

The base model: the adapter's ``base_model_name_or_path`` unless another backbone is named, and a named one that is
another model is refused (:func:`adapter_backbone`). An adapter that taskspace exported carries its record
(:mod:`.card`): it is imported on the weights it was tuned on (their fingerprint) and in its input format.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..backbones import BUILTIN, Backbone
from ..deltas import DeltaMethod, build_method
from ..deltas.lora import ROLES
from ..errors import ConfigError, DataError, IncompatibleError
from ..store import read_json, read_tensors
from .card import METHOD_OF, read_record
from .peft import CONFIG, WEIGHTS

if TYPE_CHECKING:
    from ..tasks import Task
    from ..tuning import TuneConfig

_PREFIX = "base_model.model."


def read_adapter(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise DataError(f"no {CONFIG}: expected a PEFT adapter folder", folder)
    if not (folder / WEIGHTS).is_file():
        why = " (adapter_model.bin is a pickle, which taskspace never loads; save it with safe_serialization)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise DataError(f"no {WEIGHTS}{why}", folder)
    return read_json(folder / CONFIG), read_tensors(folder / WEIGHTS)


def _refuse_lora_options(config: dict, where: Path) -> None:
    checks = [("use_rslora", False, "rsLoRA scales by alpha / sqrt(r), taskspace's LoRA by alpha / r"),
              ("use_dora", False, "DoRA rescales the weight's columns, which taskspace's LoRA does not"),
              ("lora_bias", False, "a LoRA bias has no slice in taskspace's LoRA"),
              ("bias", "none", "trained biases have no slice in taskspace's LoRA")]
    for key, fine, why in checks:
        if config.get(key, fine) not in (fine, None):
            raise DataError(f"{key}={config[key]!r}: {why}", where)
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise DataError(f"{key} is set: taskspace's LoRA has one rank and one alpha for every module", where)


def _role_sites(backbone: Backbone) -> dict[int, tuple[str, str]]:
    """id(module) -> (role, attention kind) for every whole-module site taskspace's LoRA can target."""
    out: dict[int, tuple[str, str]] = {}
    for block in backbone.sites.blocks:
        for kind, att in block.attentions():
            for role in ("q", "k", "v", "o"):
                site = getattr(att, role)
                if site.covers_output and isinstance(site.module, torch.nn.Linear):
                    out[id(site.module)] = (role, kind.split("_")[0])
        for site in block.ffn_in:
            if site.covers_output and isinstance(site.module, torch.nn.Linear):
                out[id(site.module)] = ("ffn_in", "")
        if block.ffn_out.covers_output and isinstance(block.ffn_out.module, torch.nn.Linear):
            out[id(block.ffn_out.module)] = ("ffn_out", "")
    return out


def _lora(config: dict, tensors: dict[str, torch.Tensor], backbone: Backbone, where: Path):
    _refuse_lora_options(config, where)
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(r, int) or r < 1 or not isinstance(alpha, (int, float)):
        raise DataError(f"r={r!r}, lora_alpha={alpha!r}: expected a positive integer rank and a number", where)
    modules = dict(backbone.model.named_modules())
    roles = _role_sites(backbone)
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        body = key.removeprefix(_PREFIX)
        for part in ("lora_A", "lora_B"):
            if body.endswith(f".{part}.weight"):
                weights.setdefault(body[: -len(f".{part}.weight")], {})[part] = value
                break
        else:
            raise DataError(f"{WEIGHTS}: tensor {key!r} is not a LoRA A or B weight", where)
    used_roles, used_kinds = set(), set()
    for name in weights:
        module = modules.get(name)
        if module is None or id(module) not in roles:
            what = "no module of that name" if module is None else f"a {type(module).__name__} that is not a " \
                                                                     "projection taskspace's LoRA adapts"
            raise DataError(f"{WEIGHTS}: module {name!r}: {what} in {backbone.name}", where)
        role, kind = roles[id(module)]
        used_roles.add(role)
        if kind:
            used_kinds.add(kind)
    options = {"r": r, "alpha": float(alpha), "targets": tuple(x for x in ROLES if x in used_roles)}
    if any(b.cross_attn is not None for b in backbone.sites.blocks) and used_kinds:
        options["attention"] = tuple(k for k in ("self", "cross") if k in used_kinds)
    method = build_method("lora", backbone, options)
    theta = torch.zeros(method.size)
    names = {id(m): n for n, m in modules.items()}
    for site in method.target_sites():
        found = weights.get(names[id(site.module)])
        if found is None:
            continue  # a module of a targeted role that the adapter leaves alone: A = B = 0 adds nothing
        for part, shape in (("lora_A", (r, site.in_features)), ("lora_B", (site.out_features, r))):
            if part not in found or tuple(found[part].shape) != shape:
                got = tuple(found[part].shape) if part in found else "missing"
                raise DataError(f"{WEIGHTS}: {names[id(site.module)]}.{part}: shape {got}, expected {shape}", where)
            method.layout.view(theta, f"{site.name}.{part}").copy_(found[part].float())
    return method, theta


def _prompt(config: dict, tensors: dict[str, torch.Tensor], backbone: Backbone, where: Path):
    if backbone.family != "causal":
        raise DataError(f"prompt tuning is imported on decoder-only backbones; {backbone.name} is {backbone.family}",
                        where)
    if config.get("num_transformer_submodules", 1) != 1:
        raise DataError("num_transformer_submodules != 1: expected one prompt (a decoder-only model)", where)
    prompt = tensors.get("prompt_embeddings")
    if prompt is None or prompt.dim() != 2 or prompt.shape[1] != backbone.hidden_size:
        got = None if prompt is None else tuple(prompt.shape)
        raise DataError(f"{WEIGHTS}: prompt_embeddings of shape {got}; expected [tokens, {backbone.hidden_size}]",
                        where)
    method = build_method("prompt", backbone, {"n_tokens": int(prompt.shape[0])})
    return method, prompt.float().reshape(-1).clone()


_IMPORTERS = {"LORA": _lora, "PROMPT_TUNING": _prompt}
#: peft_type -> the taskspace method it becomes.


def adapter_method(folder: str | Path) -> str:
    """The taskspace method an adapter folder becomes (read from its config only)."""
    config = read_adapter(folder)[0]
    kind = config.get("peft_type")
    if kind not in METHOD_OF:
        raise DataError(f"peft_type {kind!r}: taskspace imports {' and '.join(METHOD_OF)}", Path(folder) / CONFIG)
    return METHOD_OF[kind]


def _model_key(name: str) -> str:
    """What identifies the model ``name`` names: a built-in model's own name (its aliases and hub name alike), a
    local folder's resolved path, else the hub name."""
    builtin = BUILTIN.get(name.lower())
    if builtin is not None:
        return builtin[0]
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _in_hub_cache(name: str) -> bool:
    """Whether the local Hugging Face cache holds the model ``name`` (asked without the network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid hub name
        return False


def _available_here(name: str) -> bool:
    """Whether the model ``name`` can be loaded without the network: a built-in name, a local path, a model in the
    local Hugging Face cache."""
    return BUILTIN.get(name.lower()) is not None or Path(name).expanduser().exists() or _in_hub_cache(name)


def adapter_backbone(folder: str | Path, backbone: str | None, *, given_by: str = "--backbone") -> str:
    """The backbone to import the adapter in ``folder`` on (``given_by`` names where ``backbone`` came from).

    Without ``backbone``: the adapter's base model (``base_model_name_or_path``) where it can be had without the
    network (a local folder as it is, a built-in name, a model in the local Hugging Face cache); else refused, naming
    it and ``--backbone``. With ``backbone``: that one, refused when the base model is here and another model (the
    same folder, or one built-in model's names, are the same model). A base model that is not here (a path on
    another machine, a hub name never downloaded) cannot be compared: ``backbone`` is taken as the user's word for
    it. A taskspace export is let through too, as the same weights may lie at another path: :func:`import_peft`
    compares their fingerprint with the one it records."""
    folder = Path(folder)
    where = folder / CONFIG
    base = read_json(where).get("base_model_name_or_path") or None
    here = base is not None and _available_here(base)
    if backbone is not None:
        if here and read_record(folder) is None and _model_key(base) != _model_key(backbone):
            hint = " (leave --backbone out to use it)" if given_by == "--backbone" else ""
            raise ConfigError(f"{given_by} {backbone} is another model than the adapter's base model {base} "
                              f"(base_model_name_or_path in {where}){hint}")
        return backbone
    if base is None:
        raise DataError("no base_model_name_or_path: pass --backbone, the model the adapter was made for", where)
    if not here:
        raise ConfigError(f"the adapter's base model {base!r} (base_model_name_or_path in {where}) is not a local "
                          "folder, a built-in name or in the local Hugging Face cache: pass --backbone (a folder "
                          "holding it, or its hub name to download it)")
    return base


def _check_record(record: dict[str, Any], backbone: Backbone, folder: Path) -> None:
    """A taskspace export is imported on the weights it was tuned on, in the input format it was tuned with."""
    saved = record["backbone"]
    if saved.get("fingerprint") != backbone.fingerprint():
        raise IncompatibleError(f"{folder}: the adapter was exported from a run on {saved.get('name')} (weights "
                                f"sha256 {str(saved.get('fingerprint'))[:12]}...); the backbone {backbone.name} has "
                                f"other weights (sha256 {backbone.fingerprint()[:12]}...)")
    now = backbone.describe()
    for key in ("template", "task_prefix"):
        if key in saved and saved[key] != now[key]:
            raise ConfigError(f"{folder}: the adapter was tuned with {key}={saved[key]!r}, the backbone it is "
                              f"imported on has {key}={now[key]!r}; import-peft takes the adapter's own (leave "
                              f"--backbone-opt {key} out)")


def import_peft(folder: str | Path, backbone: Backbone) -> tuple[DeltaMethod, torch.Tensor, dict[str, Any]]:
    """The adapter in ``folder`` as (method, theta, its adapter_config) on ``backbone``; a taskspace export only on
    the weights and in the input template it was tuned with."""
    folder = Path(folder)
    config, tensors = read_adapter(folder)
    record = read_record(folder)
    if record is not None:
        _check_record(record, backbone, folder)
    kind = config.get("peft_type")
    if kind not in _IMPORTERS:
        raise DataError(f"peft_type {kind!r}: taskspace imports {' and '.join(_IMPORTERS)}", folder / CONFIG)
    method, theta = _IMPORTERS[kind](config, tensors, backbone, folder)
    return method, theta.to(backbone.device), config


def import_peft_run(folder: str | Path, config: "TuneConfig", run_dir: str | Path, *,
                    backbone: Backbone | None = None, overwrite: bool = False,
                    keep_options: bool = False, task: "Task | None" = None) -> dict[str, Any]:
    """Import the adapter in ``folder`` as a finished run in ``run_dir``, scored on ``config``'s task like a tune
    run (dev, and the same capped test subset), so that ``evaluate``, ``predict``, ``export`` and ``--init-from``
    read it. ``config.method`` and ``config.method_options`` are replaced by what the adapter holds; the training
    settings are recorded but were not used (``scores.json`` says ``steps: 0`` and where the theta came from), but
    ``config.train.progress``, which shows the scoring's progress.

    ``keep_options``: the config's method options must be the adapter's already (a bank entry: the bank's options
    for the method), else the import is refused; the entry's ``theta_init`` is then the method's initialisation
    with the config's seed, as a tuned entry's is, so that the bank's solutions share one anchor. ``task``: the task
    ``config`` names, when the caller has loaded it already (else it is loaded here)."""
    from ..backbones import load_backbone
    from ..evaluation import capped_test_split
    from ..runs import check_run_dir, finish_run, is_finished, split_digests, write_run_config
    from ..store import exclusive
    from ..tasks import load_task_as

    run_dir = Path(run_dir)
    task = task if task is not None else load_task_as(config)
    test = capped_test_split(task, config.max_test_examples, config.test_sample_seed)
    if backbone is None:
        backbone = load_backbone(config.backbone, **config.backbone_options)
    method, theta, adapter = import_peft(folder, backbone)
    if method.name != config.method:
        raise ConfigError(f"the adapter in {folder} is {method.name}, the config names {config.method}")
    backbone.check_task(task.info.has_options, task.name)
    theta_init = None
    if keep_options:
        wanted = build_method(config.method, backbone, config.method_options)
        if wanted.describe() != method.describe():
            raise ConfigError(f"the adapter in {folder} is a {method.name} with {method.config.to_dict()}; the bank's "
                              f"{config.method} has {wanted.config.to_dict()}: only an adapter of the bank's form "
                              "can join it")
        theta_init = wanted.init(torch.Generator(device="cpu").manual_seed(config.seed)).to(theta.device)
    else:
        config = config.replace(method_options=method.config.to_dict())
    record = {"run": config.identity(), "imported": {"from": str(Path(folder).resolve()),
                                                     "peft_type": adapter.get("peft_type")}}
    check_run_dir(run_dir, record, overwrite=overwrite, backbone=backbone, data={task.name: split_digests(task, test)})
    with exclusive(run_dir):
        if is_finished(run_dir):
            return read_json(run_dir / "scores.json")
        write_run_config(run_dir, record, backbone, method, task, test)
        return finish_run(run_dir, task, test, method, theta, theta_init, config.eval_batch_size,
                          {"best_step": None, "steps": 0, "imported_from": record["imported"]["from"]},
                          progress=config.train.progress)
