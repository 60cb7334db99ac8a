"""A recipe file of recipes/smol.py: its parts, each with its preset applied, the run folder's record files, and the
checks of the sections that are more than a library config (the analyses, UDT's landscape)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from taskspace.errors import ConfigError
from taskspace.presets import preset_values
from taskspace.tasks import CATALOG
from taskspace.tasks.formats import read_split_file

from recipe_common import refuse_unknown, require, train_config

#: A run folder's records: every test score by stage, task and seed; the minutes of each stage.
RESULTS, STAGES = "results.json", "stages.json"
#: Where a recipe's ``split`` file is looked for when its path is relative: the recipes folder.
RECIPES = Path(__file__).resolve().parent


def _merged(base: dict, over: dict) -> dict:
    """``over`` laid over ``base``, nested dicts merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def with_preset(cfg: dict) -> dict:
    """The recipe with its ``preset``'s values under the file's own (which win)."""
    name = cfg.get("preset")
    if name is None:
        return cfg
    cfg = copy.deepcopy(cfg)
    tuning = preset_values(name, "tuning")
    bank = cfg.setdefault("bank", {})
    methods = bank.get("methods") or dict.fromkeys(tuning.get("methods", {}), {})
    bank["methods"] = {m: _merged(tuning.get("methods", {}).get(m, {}), opts or {}) for m, opts in methods.items()}
    bank["lr"] = {**tuning.get("lr", {}), **bank.get("lr", {})}
    bank["train"] = _merged(tuning.get("train", {}), bank.get("train", {}))
    tune = preset_values(name, "subspace-tune")
    if "ipt" in cfg:
        cfg["ipt"]["msf"] = _merged(preset_values(name, "fit-subspace", "ipt"), cfg["ipt"].get("msf", {}))
        cfg["ist"] = _merged(tune, cfg.get("ist", {}))
    if "udt" in cfg:
        cfg["udt"]["fit"] = _merged(preset_values(name, "fit-subspace", "unified"), cfg["udt"].get("fit", {}))
        cfg["udt"]["subspace_train"] = _merged(tune.get("train", {}), cfg["udt"].get("subspace_train", {}))
    return cfg


def with_split(cfg: dict) -> dict:
    """The recipe with its ``split`` file (a path relative to recipes/, or absolute) read into ``train_tasks`` (its
    'train' list) and ``unseen_tasks`` (its 'test' list); a recipe that also lists either is refused."""
    if "split" not in cfg:
        return cfg
    listed = [key for key in ("train_tasks", "unseen_tasks") if key in cfg]
    if listed:
        raise ConfigError(f"split: {cfg['split']} gives the tasks; the recipe lists {listed[0]} too")
    path = Path(cfg["split"])
    split = read_split_file(path if path.is_absolute() else RECIPES / path)
    missing = [part for part in ("train", "test") if part not in split]
    if missing:
        raise ConfigError(f"split: {cfg['split']} has no {missing[0]!r} list")
    out = {key: value for key, value in cfg.items() if key != "split"}
    return {**out, "train_tasks": split["train"], "unseen_tasks": split["test"]}


def parts_of(cfg: dict, out: Path) -> list[tuple[str, dict, Path]]:
    """(name, recipe with its split read and its preset applied, output folder) of each part of a recipe file."""
    if "parts" in cfg:
        return [(name, with_preset(with_split(part)), out / name) for name, part in cfg["parts"].items()]
    return [("", with_preset(with_split(cfg)), out)]


def random_dims(ipt: dict) -> list[int]:
    """The IPT dims at which the random auto-encoder runs beside MSF: ``ipt.random_ae`` true (the default) every
    one, false none, or a list of some of them."""
    value = ipt.get("random_ae", True)
    if isinstance(value, bool):
        return list(ipt["dims"]) if value else []
    if not (isinstance(value, list) and value and all(x in ipt["dims"] for x in value)
            and len(set(value)) == len(value)):
        raise ConfigError(f"ipt.random_ae: {value!r}; expected true, false or a list of some of the IPT dims "
                          f"{ipt['dims']}, each once")
    return list(value)


def linear_dims(cfg: dict) -> list[int]:
    """The dims of the linear subspace (``ipt.linear``: the bank's principal directions around its mean; none by
    default), checked against the number of training tasks: n solutions span at most n - 1 directions."""
    value = cfg["ipt"].get("linear", [])
    if not isinstance(value, list):
        raise ConfigError(f"ipt.linear: expected a list of dims, got {value!r}")
    n = len(cfg["train_tasks"]) if value else 0
    for x in value:
        if not (isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= n - 1) or value.count(x) > 1:
            raise ConfigError(f"ipt.linear: {x!r} is not a whole number from 1 to {n - 1}, listed once (the bank's "
                              f"{n} training tasks span at most {n - 1} directions around their mean)")
    return list(value)


def analyses_settings(cfg: dict) -> dict:
    """The ``analyses`` section with its intrinsic dimension filled in, checked against the recipe: it needs
    ``ipt``, its d among the IPT dims, its tasks among the unseen tasks, and each excluded type among the unseen
    tasks' types."""
    a = dict(cfg["analyses"] or {})
    if "ipt" not in cfg:
        raise ConfigError("analyses: the analyses are IPT's and need the recipe's 'ipt' section")
    refuse_unknown(a, ("d", "d_sweep", "pca", "stability", "multitask", "task_fractions", "subset_seed",
                       "exclude_types", "data_scale"), "analyses")
    dims = list(cfg["ipt"]["dims"])
    a.setdefault("d", min(dims))
    if a["d"] not in dims:
        raise ConfigError(f"analyses: d = {a['d']} is not among the IPT dims {dims}: the analyses read those runs")
    sweep = a.get("d_sweep")
    if sweep is not None:
        _listing(sweep, "analyses.d_sweep", "dims", {"tasks": cfg["unseen_tasks"]}, optional=("challenge_tasks",))
        n = sweep.get("challenge_tasks", 0)
        if not (isinstance(n, int) and 0 <= n <= len(cfg["train_tasks"])):
            raise ConfigError(f"analyses.d_sweep.challenge_tasks: {n!r}; expected a whole number of training tasks "
                              f"from 0 to {len(cfg['train_tasks'])}")
        if n and "other_data_seed" not in cfg:
            raise ConfigError("analyses.d_sweep.challenge_tasks: the other-data challenge needs the recipe's "
                              "'other_data_seed'")
        for x in sweep["dims"]:
            if x in dims:
                raise ConfigError(f"analyses.d_sweep.dims: {x!r} is not a positive whole number outside the IPT "
                                  f"dims {dims} (those are the headline's runs already), listed once")
    if a.get("data_scale") is not None:
        scale = a["data_scale"] = {"train_tasks": list(cfg["train_tasks"]), **_mapping(a["data_scale"],
                                                                                       "analyses.data_scale")}
        _listing(scale, "analyses.data_scale", "k", {"train_tasks": cfg["train_tasks"], "tasks": cfg["unseen_tasks"]})
    s = a.get("stability")
    if s is not None:
        refuse_unknown(s, ("tasks", "finetune", "from_ist"), "analyses.stability")
        outside = sorted(set(s.get("tasks", [])) - set(cfg["unseen_tasks"]))
        if outside:
            raise ConfigError(f"analyses.stability.tasks: {outside[0]} is not an unseen task of the recipe")
        if "finetune" in s:
            train_config({**cfg["bank"]["train"], **s["finetune"]})
    if "multitask" in a:
        require(a["multitask"], ("train",), "analyses.multitask")
        train_config(a["multitask"]["train"])
    for f in a.get("task_fractions", []):
        if not (isinstance(f, (int, float)) and 0 < f < 1):
            raise ConfigError(f"analyses.task_fractions: {f!r} is not a fraction between 0 and 1 (the whole set of "
                              "training tasks is the headline's subspace)")
    for kind in a.get("exclude_types", []):
        if not any(t in CATALOG and CATALOG[t].type == kind for t in cfg["unseen_tasks"]):
            raise ConfigError(f"analyses.exclude_types: no unseen task has type {kind!r}")
        if all(t in CATALOG and CATALOG[t].type == kind for t in cfg["train_tasks"]):
            raise ConfigError(f"analyses.exclude_types: every training task has type {kind!r}")
    return a


def _mapping(section: Any, where: str) -> dict:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping, got {section!r}")
    return section


def _listing(section: Any, where: str, numbers: str, among: dict[str, list[str]], optional=()) -> None:
    """A section of one list of positive whole numbers (``numbers``, each listed once) and lists of tasks, each
    key of ``among`` naming the recipe's tasks it must come from (and ``optional`` keys, checked by the caller)."""
    keys = (numbers, *among)
    refuse_unknown(_mapping(section, where), (*keys, *optional), where)
    require(section, keys, where)
    for key in keys:
        if not (isinstance(section[key], list) and section[key]):
            raise ConfigError(f"{where}.{key}: expected a list, got {section[key]!r}")
    for x in section[numbers]:
        if not (isinstance(x, int) and x >= 1) or section[numbers].count(x) > 1:
            raise ConfigError(f"{where}.{numbers}: {x!r} is not a positive whole number, listed once")
    for key, tasks in among.items():
        twice = sorted({t for t in section[key] if section[key].count(t) > 1})
        if twice:
            raise ConfigError(f"{where}.{key}: {twice[0]} is listed twice")
        outside = sorted(set(section[key]) - set(tasks))
        if outside:
            kind = "an unseen" if key == "tasks" else "a training"
            raise ConfigError(f"{where}.{key}: {outside[0]} is not {kind} task of the recipe")


def landscape_settings(cfg: dict) -> dict:
    """``udt.landscape`` with its defaults filled in (the first seed, dev, span 4, step 0.4), checked against the
    recipe: its task among the unseen tasks, its seed among the seeds, three methods to span the plane."""
    land = dict(cfg["udt"]["landscape"] or {})
    require(land, ("task",), "udt.landscape")
    refuse_unknown(land, ("task", "seed", "split", "span", "step"), "udt.landscape")
    land = {"seed": cfg["seeds"][0], "split": "dev", "span": 4.0, "step": 0.4, **land}
    if land["task"] not in cfg["unseen_tasks"]:
        raise ConfigError(f"udt.landscape.task: {land['task']} is not an unseen task of the recipe")
    if land["seed"] not in cfg["seeds"]:
        raise ConfigError(f"udt.landscape.seed: {land['seed']} is not among the recipe's seeds {cfg['seeds']}")
    if land["split"] not in ("dev", "test"):
        raise ConfigError(f"udt.landscape.split: {land['split']!r}; expected dev or test")
    if len(cfg["udt"]["fit"].get("methods", ())) < 3:
        raise ConfigError("udt.landscape: the plane needs three methods in udt.fit.methods")
    return land
