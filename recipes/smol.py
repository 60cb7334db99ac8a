"""IPT and UDT at CPU scale on the default backbone, with seeds and intervals: one runner for recipes/smol-ipt.yaml
and recipes/smol-udt.yaml (and any file of the same form).

    python recipes/smol.py recipes/smol-ipt.yaml --out runs/smol-ipt --report reports/smol-ipt.md
    python recipes/smol.py recipes/smol-udt.yaml --out runs/smol-udt --report reports/smol-udt.md

What a file holds (every stage's settings are the fields of its library config, read with ``from_dict``, so a
misspelt key is refused by name):

- ``backbone``, ``backbone_options``, ``decode``; ``data_seed`` (the few-shot files), ``other_data_seed`` (IPT's
  other-data challenge), ``max_test_examples``; ``seeds``: the seeds of every unseen-task run (the reference
  tuning and every subspace run), over which each mean gets its 95 % interval; ``train_tasks``, ``unseen_tasks``.
- ``bank``: the original-space tuning (``BankSpec`` fields: ``methods``, ``lr``, ``train``). It tunes the training
  tasks once (the first seed: the solutions a subspace is fitted to) and the unseen tasks with every seed (the
  reference each ratio divides by).
- ``ipt`` (optional): ``method``, ``dims``, ``msf`` (``MSFConfig``), ``random_ae`` (the random auto-encoder
  baseline at the same d), ``challenge_tasks`` (IST on that many training tasks with the same and with other
  data, at the largest d, first seed); ``ist``: ``train`` and ``z_std`` of intrinsic subspace tuning.
- ``fastfood`` (optional): the random subspace of all weights (DID) at ``dims``, ``train``, and optionally its
  own ``seeds`` and ``tasks`` (a full-model projection is the slowest stage).
- ``udt`` (optional): ``fit`` (``UnifiedConfig``), ``subspace_train`` (subspace optimisation of each method on
  the unseen tasks, every seed), then the transfer matrix (the paper's selection).
- ``preset`` (optional): ``ipt-paper`` or ``udt-paper`` (``taskspace.presets``) under the file's own settings:
  the bank's methods, rates and training, MSF / UDT's fit, and IST / subspace optimisation.
- ``udt.landscape`` (optional, UDT's Fig. 2): ``task`` (an unseen task), ``seed``, ``split``, ``span``, ``step``:
  the plane through the three methods' subspace solutions of that task and seed.
- ``analyses`` (optional, IPT's remaining experiments over the bank and the runs at ``d``, one of ``ipt.dims``):
  ``d_sweep`` (``dims``, ``tasks``, ``challenge_tasks``: MSF at other d, IST on those unseen tasks and on that
  many training tasks with the same and other data, first seed; Fig. 3, against fine-tuning too), ``pca``
  (Fig. 8), ``stability`` (``tasks``, ``finetune``, ``from_ist``: Table III, and E_rel against fine-tuning),
  ``multitask`` (``train``: Table IV), ``task_fractions`` and ``subset_seed`` (Fig. 7), ``exclude_types``
  (Fig. 4), ``data_scale`` (``k``, ``train_tasks``, ``tasks``: every split resampled at K per label, a bank,
  reference, MSF and IST of their own per K, first seed; Fig. 6).
- ``parts`` (instead of all of the above): named recipes of this form, run one after the other into
  ``OUT/<name>``, with one report (recipes/full-scale.yaml: IPT and UDT, each with its paper's preset);
  ``--part NAME`` runs only that part.

Every stage resumes: run the same command again after an interruption and finished work is verified and reused.
``results.json`` (every test score, by stage, task and seed) is written after each stage; ``--report-only``
writes the report again from it.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from taskspace import __version__
from taskspace.analysis import gain_kept, mean, mean_interval, ratio
from taskspace.analysis.landscape import landscape, plot_landscape
from taskspace.analysis.pca import points_of_runs, training_codes, write_pca
from taskspace.analysis.plots import heatmap, interval_lines
from taskspace.analysis.stability import stability_table
from taskspace.analysis.task_types import plot_types, type_table
from taskspace.backbones import load_backbone
from taskspace.deltas import default_lr
from taskspace.errors import ConfigError, DataError
from taskspace.evaluation import evaluate
from taskspace.presets import preset_values
from taskspace.store import read_json, write_json, write_text
from taskspace.subspace import (BankSpec, FastfoodConfig, FitData, MSFConfig, RandomAEConfig, Subspace,
                                SubspaceTuneConfig, UnifiedConfig, build_bank, load_z, subspace_tune, transfer)
from taskspace.subspace.bank import entry_dir
from taskspace.tasks import CATALOG, exclude_types, load_task, task_subset
from taskspace.tuning import MultiTuneConfig, multitask_tune, tune

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared module, also when imported
from recipe_common import (Stages, fit_saved, read_recipe, recipe_arguments, refuse_unknown, require,  # noqa: E402
                           run_main, stage_config, train_config)

#: The papers' headline numbers (%), printed beside ours.
PAPER = {"ipt_seen_other_d250": 97.0, "ipt_unseen_d250": 83.0, "udt_optimisation": 88.7, "udt_transfer": 84.7}

#: A task counts in "gain kept" when its reference beats the frozen model by at least this much.
GAIN_MARGIN = 0.05

RESULTS, STAGES = "results.json", "stages.json"

#: Score keys of the analyses (reported in their own sections, not among the unseen tasks' main columns).
ANALYSIS_KEYS = ("multitask/", "fraction/", "excluded/", "from-ist/", "stability/", "sweep/", "scale/")


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


class Runner:
    def __init__(self, cfg: dict, out: Path, data_dir: str, *, png: bool = True):
        require(cfg, ("data_seed", "max_test_examples", "seeds", "train_tasks", "unseen_tasks", "bank"), str(out))
        require(cfg["bank"], ("methods", "train"), f"{out}: bank")
        if "ipt" in cfg:
            require(cfg, ("ist",), str(out))
            require(cfg["ipt"], ("dims", "msf"), f"{out}: ipt")
        if "udt" in cfg:
            require(cfg["udt"], ("fit", "subspace_train"), f"{out}: udt")
        self.cfg, self.out, self.data_dir, self.png = cfg, out, data_dir, png
        self._check_settings()
        self.seeds: list[int] = list(cfg["seeds"])
        self.train_tasks, self.unseen = list(cfg["train_tasks"]), list(cfg["unseen_tasks"])
        self.results: dict[str, Any] = read_json(out / RESULTS) if (out / RESULTS).is_file() else {}
        self.stages = Stages(out / STAGES)

    def _check_settings(self) -> None:
        """Every stage's settings read into their library configs now, so that a misspelt key is refused before
        hours of training rather than after them."""
        cfg = self.cfg
        b = cfg["bank"]
        BankSpec.from_dict({**b, "train": train_config(b["train"])}, tasks=list(cfg["train_tasks"]),
                           data_dir=self.data_dir)
        if "ipt" in cfg:
            stage_config(MSFConfig, cfg["ipt"]["msf"], method=cfg["ipt"].get("method", "prompt"), d=1)
            require(cfg["ist"], ("train",), "ist")
            train_config(cfg["ist"]["train"])
        if "fastfood" in cfg:
            require(cfg["fastfood"], ("dims", "train"), "fastfood")
            train_config(cfg["fastfood"]["train"])
        if "udt" in cfg:
            stage_config(UnifiedConfig, cfg["udt"]["fit"])
            train_config(cfg["udt"]["subspace_train"])
        if "analyses" in cfg:
            scale = analyses_settings(cfg).get("data_scale")
            for k in scale["k"] if scale else ():
                for t in scale["train_tasks"] + scale["tasks"]:
                    try:  # each pool holds K train + K dev examples (per label): refused now, not hours later
                        load_task(t, self.data_dir, seed=cfg["data_seed"], resample=True, resample_k=k)
                    except DataError as e:
                        raise ConfigError(f"analyses.data_scale.k: {k}: {e}") from None
        if "landscape" in cfg.get("udt", {}):
            landscape_settings(cfg)

    def save(self) -> None:
        write_json(self.out / RESULTS, self.results)

    def stage(self, name: str, fn, *args, **kwargs):
        """One stage, timed; ``results.json`` is written after it, an interrupted one included (what it recorded
        are finished runs)."""
        try:
            return self.stages.run(name, fn, *args, **kwargs)
        finally:
            self.save()

    def record(self, key: str, task: str, seed: int, scores: dict) -> None:
        self.results.setdefault("scores", {}).setdefault(key, {}).setdefault(task, {})[str(seed)] = scores["test"]

    # -- stages ------------------------------------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        self.backbone = load_backbone(cfg.get("backbone", "smollm2"), decode=cfg.get("decode", "generate"),
                                      **cfg.get("backbone_options", {}))
        b = cfg["bank"]
        common = dict(methods=b["methods"], lr=b.get("lr", {}), train=train_config(b["train"]), data_dir=self.data_dir,
                      data_seed=cfg["data_seed"], max_test_examples=cfg["max_test_examples"], zero_shot=False)
        self.bank_spec = BankSpec.from_dict(common, tasks=self.train_tasks, seeds=self.seeds[:1])
        self.reference_spec = BankSpec.from_dict(common, tasks=self.unseen, seeds=self.seeds)
        self.bank = self.stage("bank: training tasks", build_bank, self.out / "bank", self.bank_spec,
                               self.backbone, report=self._report_entry)
        self.reference = self.stage("bank: unseen tasks, every seed (the reference)", build_bank,
                                    self.out / "reference", self.reference_spec, self.backbone,
                                    report=self._report_entry)
        for m in b["methods"]:
            for t in self.unseen:
                for s in self.seeds:
                    self.record(f"reference/{m}", t, s, {"test": self.reference.score(t, m, seed=s)})
            for t in self.train_tasks:
                self.record(f"bank/{m}", t, self.seeds[0], {"test": self.bank.score(t, m)})
        self.results["setting"] = {
            "backbone": self.backbone.name, "fingerprint": self.backbone.fingerprint(),
            "describe": self.backbone.describe(), "threads": torch.get_num_threads(),
            "sizes": {m: self.bank.method(m).size for m in b["methods"]}}
        self.stage("frozen backbone", self.frozen)
        self.save()
        if "ipt" in cfg:
            self.ipt()
        if "fastfood" in cfg:
            self.fastfood()
        if "udt" in cfg:
            self.udt()
        if "analyses" in cfg:
            self.analyses()

    def _report_entry(self, task, method, seed, scores) -> None:
        print(f"    {task:34s} {method:8s} s{seed} test {_fmt(scores['test'])}", flush=True)

    def frozen(self) -> None:
        """The frozen backbone on the test examples every run of a task is scored on."""
        done = self.results.setdefault("frozen", {})
        challenge = self.train_tasks[: self.cfg.get("ipt", {}).get("challenge_tasks", 0)]
        for spec, tasks in ((self.reference_spec, self.unseen), (self.bank_spec, challenge)):
            for t in tasks:
                if t not in done:
                    task, test = spec.test_split(t)
                    done[t] = evaluate(self.backbone, test, task.metric)[0]
                    print(f"    {t:34s} frozen   test {_fmt(done[t])}", flush=True)
                    self.save()

    def tune_in(self, key: str, space: Subspace, folder: Path, tasks: list[str], method: str, train: dict, *,
                seeds: list[int] | None = None, data_seed: int | None = None, z_init: str = "normal",
                z_std: float = 0.02, resample_k: int | None = None) -> None:
        """Subspace tuning of ``method`` on every task and seed, recorded under ``key`` (with ``resample_k``, on
        train / dev resampled at that K from the pooled files)."""
        data_seed = self.cfg["data_seed"] if data_seed is None else data_seed
        for task in tasks:
            for seed in seeds or self.seeds:
                config = SubspaceTuneConfig(task=task, method=method, data_dir=self.data_dir, data_seed=data_seed,
                                            seed=seed, z_init=z_init, z_std=z_std, train=train_config(train),
                                            max_test_examples=self.cfg["max_test_examples"],
                                            resample=resample_k is not None, resample_k=resample_k)
                scores = subspace_tune(space, folder, config,
                                       folder / "runs" / f"{task}-d{data_seed}-{method}-s{seed}")
                self.record(key, task, seed, scores)
                print(f"    {task:34s} {method:8s} s{seed} test {_fmt(scores['test'])}", flush=True)
        self.save()

    def msf(self, d: int) -> tuple[Subspace, MSFConfig, Path]:
        """IPT's MSF at ``d`` on every training task, in ``ipt-d<d>`` (a stage: fitted once, then loaded)."""
        i = self.cfg["ipt"]
        folder = self.out / f"ipt-d{d}"
        msf = stage_config(MSFConfig, i["msf"], method=i.get("method", "prompt"), d=d)
        space = self.stage(f"IPT MSF d={d}", fit_saved, "ipt", msf,
                           FitData.from_bank(self.bank, self.train_tasks), folder)
        return space, msf, folder

    def ipt(self) -> None:
        i, ist = self.cfg["ipt"], self.cfg["ist"]
        method = i.get("method", "prompt")
        for d in i["dims"]:
            space, msf, folder = self.msf(d)
            self.stage(f"IPT IST d={d}, unseen tasks", self.tune_in, f"ipt/d{d}", space, folder, self.unseen,
                       method, ist["train"], z_std=ist.get("z_std", 0.02))
            if i.get("random_ae", True):
                rfolder = self.out / f"random-ae-d{d}"
                rspace = fit_saved("random-ae", RandomAEConfig(method=method, d=d, hidden=msf.hidden, seed=17),
                                   FitData.from_bank(self.bank, []), rfolder)
                self.stage(f"random auto-encoder d={d}, unseen tasks", self.tune_in, f"random-ae/d{d}", rspace,
                           rfolder, self.unseen, method, ist["train"], z_std=ist.get("z_std", 0.02))
        seen = self.train_tasks[: i.get("challenge_tasks", 0)]
        if seen:
            d = max(i["dims"])
            folder = self.out / f"ipt-d{d}"
            self.challenges(f"ipt/d{d}", f"IPT IST d={d}", Subspace.load(folder, self.backbone), folder, seen)

    def challenges(self, key: str, name: str, space: Subspace, folder: Path, tasks: list[str]) -> None:
        """IPT's seen-task challenges: IST on training ``tasks`` with the bank's data and with another seed's files,
        first seed, recorded under ``key/same`` and ``key/other``."""
        ist, method = self.cfg["ist"], self.cfg["ipt"].get("method", "prompt")
        for label, data_seed in (("same", self.cfg["data_seed"]), ("other", self.cfg["other_data_seed"])):
            self.stage(f"{name}, training tasks, {label} data", self.tune_in, f"{key}/{label}", space, folder,
                       tasks, method, ist["train"], seeds=self.seeds[:1], data_seed=data_seed,
                       z_std=ist.get("z_std", 0.02))

    def fastfood(self) -> None:
        f = self.cfg["fastfood"]
        for d in f["dims"]:
            folder = self.out / f"fastfood-d{d}"
            space = fit_saved("fastfood", FastfoodConfig(d=d, seed=23), FitData(self.backbone, []), folder)
            self.stage(f"Fastfood (DID) d={d}, unseen tasks", self.tune_in, f"fastfood/d{d}", space, folder,
                       list(f.get("tasks", self.unseen)), "finetune", f["train"], seeds=f.get("seeds"),
                       z_init="zeros")

    def udt(self) -> None:
        u = self.cfg["udt"]
        folder = self.out / "udt"
        fit = stage_config(UnifiedConfig, u["fit"])
        space = self.stage("UDT subspace approximation", fit_saved, "unified", fit,
                           FitData.from_bank(self.bank, self.train_tasks), folder)
        for m in fit.methods:
            self.stage(f"UDT subspace optimisation, {m}", self.tune_in, f"udt/{m}", space, folder, self.unseen,
                       m, u["subspace_train"], z_init=u.get("z_init", "normal"), z_std=u.get("z_std", 0.02))

        def run_transfer():
            for m in fit.methods:
                for t in self.unseen:
                    for s in self.seeds:
                        run = folder / "runs" / f"{t}-d{self.cfg['data_seed']}-{m}-s{s}"
                        for target, sc in transfer(space, folder, run).items():
                            self.record(f"transfer/{m}/{target}", t, s, sc)
            self.save()

        self.stage("UDT transfer", run_transfer)
        if "landscape" in u:
            self.stage("UDT landscape (UDT Fig. 2)", self.landscape, space, fit, landscape_settings(self.cfg),
                       folder)

    def landscape(self, space: Subspace, fit: UnifiedConfig, settings: dict, folder: Path) -> None:
        """The plane through the first three methods' subspace solutions of one unseen task and seed (origin: the
        first, u toward the second, v toward the third), each grid point scored by every method's up-projection
        relative to that method's original-space score on the same split."""
        task, seed, split, order = settings["task"], settings["seed"], settings["split"], list(fit.methods)[:3]
        runs = {m: load_z(folder / "runs" / f"{task}-d{self.cfg['data_seed']}-{m}-s{seed}")[0] for m in order}
        loaded, test = self.reference_spec.test_split(task)
        examples = loaded.dev if split == "dev" else test
        references = {m: self.reference.score(task, m, split, seed=seed) for m in order}
        out = self.out / "landscape"
        result = landscape(space, runs, order, examples, loaded.metric, references, out,
                           span=settings["span"], step=settings["step"])
        write_json(out / "landscape.json", {"task": task, "split": split, "seed": seed, **result,
                                            "marks": {m: list(v) for m, v in result["marks"].items()}})
        self.results["landscape"] = {"task": task, "split": split, "seed": seed, "axis": result["axis"],
                                     "order": order, "origin_score": result["origin_score"],
                                     "mean_at_marks": landscape_at_marks(result)}
        if self.png:
            plot_landscape(result, out / "landscape.png", f"{task}, {split}: unified d={space.d}")
        self.save()

    # -- IPT's analyses (issue 12) -------------------------------------------------------------------------------

    def ist_runs(self, folder: Path, tasks: list[str], method: str, seeds: list[int] | None = None) -> list[Path]:
        """The run folders ``tune_in`` wrote for ``tasks`` and ``seeds`` through the subspace in ``folder``."""
        return [folder / "runs" / f"{t}-d{self.cfg['data_seed']}-{method}-s{s}" for t in tasks
                for s in (seeds or self.seeds)]

    def analyses(self) -> None:
        a = analyses_settings(self.cfg)
        i, ist = self.cfg["ipt"], self.cfg["ist"]
        method, d = i.get("method", "prompt"), a["d"]
        main = self.out / f"ipt-d{d}"
        space = Subspace.load(main, self.backbone)
        folder = self.out / "analyses"
        done = self.results.setdefault("analyses", {})
        sweep = a.get("d_sweep")
        if sweep:
            seen = self.train_tasks[: sweep.get("challenge_tasks", 0)]
            for x in sweep["dims"]:
                # the headline's MSF stage, so that a d added to ipt.dims later reuses its fit and runs
                space_x, _, sub = self.msf(x)
                self.stage(f"analysis: IST d={x} on {len(sweep['tasks'])} unseen tasks (IPT Fig. 3)",
                           self.tune_in, f"sweep/d{x}", space_x, sub, list(sweep["tasks"]), method,
                           ist["train"], seeds=self.seeds[:1], z_std=ist.get("z_std", 0.02))
                if seen:
                    self.challenges(f"sweep/d{x}", f"analysis: IST d={x}", space_x, sub, seen)
            for x in i["dims"] if seen else ():  # the headline's d too (its challenges ran at the largest only)
                space_x, _, sub = self.msf(x)
                self.challenges(f"ipt/d{x}", f"IPT IST d={x}", space_x, sub, seen)
        if a.get("pca", True):
            self.stage("analysis: PCA of the intrinsic vectors (IPT Fig. 8)", self.pca, space, method,
                       self.ist_runs(main, self.unseen, method), folder / "pca")
        if "stability" in a:
            self.stage("analysis: stability over seeds (IPT Table III)", self.stability, a["stability"], method,
                       main, folder)
        if "multitask" in a:
            self.stage("analysis: multi-task prompt tuning (IPT Table IV)", self.multitask, a["multitask"],
                       method, folder / "multitask")
        msf = stage_config(MSFConfig, i["msf"], method=method, d=d)
        z_std = ist.get("z_std", 0.02)
        for f in a.get("task_fractions", []):
            tasks = task_subset(self.train_tasks, f, a.get("subset_seed", 0), "analyses.task_fractions")
            done.setdefault("task_fractions", {})[str(f)] = tasks
            sub = folder / f"tasks-{f:g}"
            space_f = self.stage(f"analysis: MSF d={d} on {len(tasks)} training tasks ({100 * f:g} %)",
                                 fit_saved, "ipt", msf, FitData.from_bank(self.bank, tasks), sub)
            self.stage(f"analysis: IST d={d} through it, unseen tasks (IPT Fig. 7)", self.tune_in,
                       f"fraction/{f:g}/d{d}", space_f, sub, self.unseen, method, ist["train"],
                       seeds=self.seeds[:1], z_std=z_std)
        for kind in a.get("exclude_types", []):
            tasks = exclude_types(self.train_tasks, [kind], "analyses.exclude_types")
            targets = [t for t in self.unseen if t in CATALOG and CATALOG[t].type == kind]
            sub = folder / f"without-{kind.replace(' ', '_')}"
            space_t = self.stage(f"analysis: MSF d={d} without type {kind!r} ({len(tasks)} training tasks)",
                                 fit_saved, "ipt", msf, FitData.from_bank(self.bank, tasks), sub)
            self.stage(f"analysis: IST d={d} on {kind!r} unseen tasks through it (IPT Fig. 4)", self.tune_in,
                       f"excluded/{kind}/d{d}", space_t, sub, targets, method, ist["train"], z_std=z_std)
        if a.get("exclude_types"):
            self.stage("analysis: task types, included vs excluded (IPT Fig. 4)", self.task_types, a, method,
                       main, folder / "task-types")
        scale = a.get("data_scale")
        for k in scale["k"] if scale else ():
            self.stage(f"analysis: K = {k}: bank of {len(scale['train_tasks'])} training tasks, {method} tuning "
                       f"and IST d={d} on {len(scale['tasks'])} unseen tasks (IPT Fig. 6)", self.data_scale, k,
                       scale, method, msf, folder / f"k{k}")
        self.save()

    def pca(self, space: Subspace, method: str, runs: list[Path], out: Path) -> None:
        points = training_codes(space, self.bank, method) + points_of_runs(runs)[0]
        self.results["analyses"]["pca"] = write_pca(points, out, png=self.png)

    def stability(self, s: dict, method: str, main: Path, folder: Path) -> None:
        """Std over the seeds of the reference (prompt tuning), of IST at d and of fine-tuning on ``s['tasks']``;
        and prompt tuning initialised from each IST solution (IPT §V-E)."""
        tasks = list(s.get("tasks", self.unseen))
        reference = [entry_dir(self.out / "reference", t, method, seed) for t in tasks for seed in self.seeds]
        ist = self.ist_runs(main, tasks, method)
        runs = reference + ist
        if "finetune" in s:
            spec = BankSpec.from_dict({**self.reference_spec.to_dict(), "methods": {"finetune": {}},
                                       "lr": {"finetune": s["finetune"].get("lr", default_lr("finetune"))},
                                       "train": train_config({**self.cfg["bank"]["train"], **s["finetune"],
                                                              "lr": None})}, tasks=tasks)
            finetuned = build_bank(folder / "finetune", spec, self.backbone, report=self._report_entry)
            for t in tasks:
                for seed in self.seeds:  # the reference of IPT's Fig. 3b / 9 (E_rel against fine-tuning)
                    self.record("stability/finetune", t, seed, {"test": finetuned.score(t, "finetune", seed=seed)})
            runs += [entry_dir(folder / "finetune", t, "finetune", seed) for t in tasks for seed in self.seeds]
        if s.get("from_ist", True):
            for t in tasks:
                for seed in self.seeds:
                    source = self.ist_runs(main, [t], method, [seed])[0] / "theta"
                    config = self.reference_spec.tune_config(t, method, seed, self.backbone)
                    run = folder / "from-ist" / f"{t}-s{seed}"
                    scores = tune(config.replace(init_from=str(source)), run, backbone=self.backbone).scores
                    self.record(f"from-ist/{method}", t, seed, scores)
                    print(f"    {t:34s} {method:8s} s{seed} from IST, test {_fmt(scores['test'])}", flush=True)
                    runs.append(run)
        summary, detail = stability_table(runs)
        self.results["analyses"]["stability"] = {"summary": summary.rows, "header": summary.header,
                                                 "tasks": tasks}
        summary.write(folder / "stability")
        detail.write(folder / "stability_tasks")

    def multitask(self, m: dict, method: str, out: Path) -> None:
        """One ``method`` theta tuned on the pooled training tasks, against each task's own (the bank's)."""
        b = self.cfg["bank"]
        lr = b.get("lr", {}).get(method, default_lr(method))
        config = MultiTuneConfig(tasks=self.train_tasks, method=method, data_dir=self.data_dir,
                                 method_options=dict(b["methods"][method]), backbone=self.backbone.name,
                                 backbone_options=dict(self.cfg.get("backbone_options", {})),
                                 data_seed=self.cfg["data_seed"], train=train_config({"lr": lr, **m["train"]}),
                                 max_test_examples=self.cfg["max_test_examples"])
        scores = multitask_tune(config, out, backbone=self.backbone)
        for t, v in scores["tasks"].items():
            self.record(f"multitask/{method}", t, self.seeds[0], v)

    def data_scale(self, k: int, s: dict, method: str, msf: MSFConfig, folder: Path) -> None:
        """IPT's Fig. 6 at K examples per label (per task without fixed labels): train and dev of every task drawn
        CrossFit-style from the pooled files of the five seeds, then the bank's settings on ``s['train_tasks']``
        and the reference on ``s['tasks']`` (first seed), MSF at d on that bank and IST through it."""
        spec = {**self.reference_spec.to_dict(), "methods": {method: self.cfg["bank"]["methods"][method]},
                "lr": {method: self.reference_spec.lr[method]}, "resample": True, "resample_k": k}
        train, tasks = list(s["train_tasks"]), list(s["tasks"])
        bank = build_bank(folder / "bank", BankSpec.from_dict(spec, tasks=train, seeds=self.seeds[:1]),
                          self.backbone, report=self._report_entry)
        reference = build_bank(folder / "reference", BankSpec.from_dict(spec, tasks=tasks, seeds=self.seeds[:1]),
                               self.backbone, report=self._report_entry)
        for t in tasks:
            self.record(f"scale/k{k}/{method}", t, self.seeds[0], {"test": reference.score(t, method)})
        sub = folder / f"ipt-d{msf.d}"
        space = fit_saved("ipt", msf, FitData.from_bank(bank, train), sub)
        ist = self.cfg["ist"]
        self.tune_in(f"scale/k{k}/ipt", space, sub, tasks, method, ist["train"], seeds=self.seeds[:1],
                     z_std=ist.get("z_std", 0.02), resample_k=k)

    def task_types(self, a: dict, method: str, main: Path, out: Path) -> None:
        d = a["d"]
        runs, refs = [], []
        for kind in a["exclude_types"]:
            targets = [t for t in self.unseen if t in CATALOG and CATALOG[t].type == kind]
            runs += self.ist_runs(self.out / "analyses" / f"without-{kind.replace(' ', '_')}", targets, method)
            runs += self.ist_runs(main, targets, method)
            refs += [entry_dir(self.out / "reference", t, method, seed) for t in targets for seed in self.seeds]
        summary, detail = type_table(runs, refs)
        summary.write(out / "task_types")
        detail.write(out / "task_types_tasks")
        self.results["analyses"]["task_types"] = {"summary": summary.rows, "header": summary.header, "d": d}
        if self.png:
            plot_types(summary, out / "task_types.png")


def landscape_at_marks(result: dict) -> dict[str, float]:
    """The mean (over methods) relative performance at the grid point nearest each method's own solution."""
    axis = result["axis"]

    def nearest(x: float) -> int:
        return min(range(len(axis)), key=lambda i: abs(axis[i] - x))

    return {m: result["mean"][nearest(b)][nearest(a)] for m, (a, b) in result["marks"].items()}


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


# ----------------------------------------------------------------------------------------------------------------
# The report


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(centre: float | None, half: float | None, scale: float = 100.0) -> str:
    if centre is None:
        return "–"
    return f"{scale * centre:.1f}" + ("" if half is None else f" ± {scale * half:.1f}")


class Numbers:
    """Ratios and intervals over the recorded scores."""

    def __init__(self, results: dict, seeds: list[int]):
        self.scores: dict[str, dict[str, dict[str, float | None]]] = results.get("scores", {})
        self.frozen: dict[str, float] = results.get("frozen", {})
        self.seeds = [str(s) for s in seeds]

    def means(self, key: str, tasks: list[str]) -> dict[str, float | None]:
        """Each task's mean score over the seeds recorded under ``key``."""
        by_task = self.scores.get(key, {})
        return {t: mean(list(by_task.get(t, {}).values())) for t in tasks}

    def reference(self, method: str, tasks: list[str]) -> dict[str, float | None]:
        """Each task's reference score: the mean over seeds of ``method`` in its original space."""
        return self.means(f"reference/{method}", tasks)

    def per_seed(self, key: str, tasks: list[str], refs: dict[str, float | None], *, gain: bool = False) -> list:
        """Per seed: the mean over tasks of score / reference (``gain``: the share of the reference's gain over
        the frozen model that the score keeps, over the tasks where the reference gains >= 5 points)."""
        by_task = self.scores.get(key, {})
        values = []
        for s in self.seeds:
            got = {t: by_task.get(t, {}).get(s) for t in tasks}
            if any(v is None for v in got.values()):
                continue  # a seed that did not run on every task (a stage with fewer seeds)
            if gain:
                values.append(gain_kept(got, {t: refs[t] for t in tasks},
                                        {t: self.frozen.get(t, 0.0) for t in tasks}, GAIN_MARGIN)[1])
            else:
                values.append(mean([ratio(got[t], refs[t]) for t in tasks]))
        return values

    def relative(self, key: str, tasks: list[str], refs: dict, **kw) -> tuple[float | None, float | None, int]:
        return mean_interval(self.per_seed(key, tasks, refs, **kw))

    def absolute(self, key: str, task: str) -> tuple[float | None, float | None, int]:
        return mean_interval(list(self.scores.get(key, {}).get(task, {}).values()))


#: The columns of the relative-performance CSV (one row per kind of run; fractions, not percentages).
RELATIVE_COLUMNS = ("what", "key", "method", "d", "e_rel", "e_rel_half", "gain_kept", "gain_kept_half", "low_e_rel",
                    "low_e_rel_half", "low_tasks", "seeds", "paper")


def relative_records(cfg: dict, results: dict) -> list[dict[str, Any]]:
    """One record per kind of unseen-task run: E_rel and gain kept with their 95 % intervals over the seeds, E_rel
    over the tasks where the frozen model scores under half the reference, and the paper's number where it gives
    one; then the frozen backbone against each original-space method (where every subspace starts from)."""
    unseen, seeds = list(cfg["unseen_tasks"]), list(cfg["seeds"])
    num = Numbers(results, seeds)
    ipt_method = cfg.get("ipt", {}).get("method", "prompt")
    records: list[dict[str, Any]] = []

    def add(label, key, method, tasks, d=None, paper=None):
        refs = num.reference(method, tasks)
        low = [t for t in tasks if refs[t] is not None and num.frozen.get(t, 1.0) < 0.5 * refs[t]]
        rel, kept = num.relative(key, tasks, refs), num.relative(key, tasks, refs, gain=True)
        low_rel = num.relative(key, low, refs) if low else (None, None, 0)
        records.append({"what": label, "key": key, "method": method, "d": d, "e_rel": rel[0], "e_rel_half": rel[1],
                        "gain_kept": kept[0], "gain_kept_half": kept[1], "low_e_rel": low_rel[0],
                        "low_e_rel_half": low_rel[1], "low_tasks": len(low) if low else None, "seeds": rel[2],
                        "paper": paper})

    for d in cfg.get("ipt", {}).get("dims", []):
        add(f"IPT, IST, unseen tasks, d = {d}", f"ipt/d{d}", ipt_method, unseen, d,
            PAPER["ipt_unseen_d250"] if d == max(cfg["ipt"]["dims"]) else None)
        if cfg["ipt"].get("random_ae", True):
            add(f"random auto-encoder, unseen tasks, d = {d}", f"random-ae/d{d}", ipt_method, unseen, d)
    for d in cfg.get("fastfood", {}).get("dims", []):
        add(f"Fastfood (DID, all weights), d = {d}", f"fastfood/d{d}", ipt_method,
            list(cfg["fastfood"].get("tasks", unseen)), d)
    if "udt" in cfg:
        for m in cfg["udt"]["fit"]["methods"]:
            add(f"UDT subspace optimisation, {m}", f"udt/{m}", m, unseen, cfg["udt"]["fit"].get("d"),
                PAPER["udt_optimisation"])
    for m in cfg["bank"]["methods"]:
        refs = num.reference(m, unseen)
        records.append({**dict.fromkeys(RELATIVE_COLUMNS), "what": f"frozen backbone (vs {m})", "key": "frozen",
                        "method": m, "e_rel": mean([ratio(num.frozen.get(t), refs[t]) for t in unseen]),
                        "gain_kept": 0.0})
    return records


def transfer_cells(cfg: dict, results: dict) -> tuple[list[str], dict[str, dict[str, tuple]]]:
    """UDT's transfer matrix: the methods, and per source and target method the E_rel of the transferred vectors
    on the unseen tasks against the target in its original space (centre and 95 % half-width over the seeds)."""
    ms, unseen = list(cfg["udt"]["fit"]["methods"]), list(cfg["unseen_tasks"])
    num = Numbers(results, list(cfg["seeds"]))
    return ms, {src: {tgt: num.relative(f"transfer/{src}/{tgt}", unseen, num.reference(tgt, unseen))[:2]
                      for tgt in ms} for src in ms}


def report_lines(cfg: dict, args, results: dict, stages: dict[str, float], title: str) -> list[str]:
    unseen, train_tasks = list(cfg["unseen_tasks"]), list(cfg["train_tasks"])
    seeds = list(cfg["seeds"])
    num = Numbers(results, seeds)
    setting = results.get("setting", {})
    methods = list(cfg["bank"]["methods"])
    lines = [f"{title}: {setting.get('backbone', cfg.get('backbone'))}", ""]
    total = sum(stages.values())
    describe = setting.get("describe", {})
    lines += [
        f"taskspace {__version__}, {setting.get('backbone')} (weights sha256 {str(setting.get('fingerprint'))[:16]}..., "
        f"{describe.get('dtype')}, decode={describe.get('decode')}), {setting.get('threads')} CPU threads, Python "
        f"{platform.python_version()}, torch {torch.__version__}. Wall time of all stages: **{total / 60:.1f} "
        "minutes** (summed over the invocations that ran them).", "",
        f"Setting: {len(train_tasks)} training tasks and {len(unseen)} unseen tasks from "
        f"{os.path.relpath(args.data_dir)} (16-shot files of seed {cfg['data_seed']}; lists in {args.config}); test "
        f"scores on a fixed random subset of at most {cfg['max_test_examples']} test examples per task. Seeds "
        f"{seeds} for every unseen-task run; each mean is given with its 95 % interval over the seeds (Student's t). "
        "E_rel: the mean over tasks of score / reference, the reference being the same task tuned in the original "
        "space (mean over its seeds). Gain kept: the share of the reference's gain over the frozen model that a "
        f"score keeps, over the tasks where that gain is at least {100 * GAIN_MARGIN:.0f} points (0 = no better than "
        "the frozen model).", ""]
    sizes = setting.get("sizes", {})
    lines += ["Original-space tuning: " + "; ".join(f"{m} {cfg['bank']['methods'][m]} (D = {sizes.get(m, 0):,})"
                                                    for m in methods)
              + f", {cfg['bank']['train']}.", ""]

    # absolute scores of the unseen tasks -----------------------------------------------------------------------
    keys = [k for k in num.scores if not k.startswith(("bank/", "transfer/") + ANALYSIS_KEYS) and "/same" not in k
            and "/other" not in k]
    header = ["task", "category", "frozen"] + keys
    lines += ["## Unseen tasks: test scores (%)", "", "| " + " | ".join(header) + " |",
              "| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |"]
    for t in unseen:
        row = [t, CATALOG[t].category if t in CATALOG else "–", _fmt(num.frozen.get(t))]
        row += [_ci(*num.absolute(k, t)[:2]) for k in keys]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    ipt_method = cfg.get("ipt", {}).get("method", "prompt")

    # relative performance --------------------------------------------------------------------------------------
    rows = [[r["what"], _ci(r["e_rel"], r["e_rel_half"]), _ci(r["gain_kept"], r["gain_kept_half"]),
             "–" if r["low_tasks"] is None else _ci(r["low_e_rel"], r["low_e_rel_half"]) + f" ({r['low_tasks']})",
             "–" if r["seeds"] is None else str(r["seeds"]), _paper_cell(r)]
            for r in relative_records(cfg, results)]
    lines += ["## Relative performance on the unseen tasks", "",
              "| what | E_rel % | gain kept % | E_rel % where frozen < half the reference (tasks) | seeds | paper |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")

    # the headline: learnt vs random ------------------------------------------------------------------------------
    if "ipt" in cfg and cfg["ipt"].get("random_ae", True):
        refs = num.reference(ipt_method, unseen)
        lines += ["## Learnt vs random subspace (unseen tasks)", "",
                  "| d | IPT E_rel % | random E_rel % | difference (paired by seed) | gain kept: IPT | random |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for d in cfg["ipt"]["dims"]:
            a = num.per_seed(f"ipt/d{d}", unseen, refs)
            b = num.per_seed(f"random-ae/d{d}", unseen, refs)
            diff = [x - y for x, y in zip(a, b) if x is not None and y is not None]
            lines.append(f"| {d} | {_ci(*mean_interval(a)[:2])} | {_ci(*mean_interval(b)[:2])} | "
                         f"{_ci(*mean_interval(diff)[:2])} | "
                         f"{_ci(*num.relative(f'ipt/d{d}', unseen, refs, gain=True)[:2])} | "
                         f"{_ci(*num.relative(f'random-ae/d{d}', unseen, refs, gain=True)[:2])} |")
        lines.append("")
        n = cfg["ipt"].get("challenge_tasks", 0)
        if n:
            d = max(cfg["ipt"]["dims"])
            seen = train_tasks[:n]
            bank_refs = num.means(f"bank/{ipt_method}", seen)
            lines += [f"## IST on {n} training tasks, d = {d} (first seed; reference: their bank entries)", "",
                      "| data | E_rel % | paper |", "| --- | ---: | ---: |"]
            for label, paper in (("same", None), ("other", PAPER["ipt_seen_other_d250"])):
                got = num.means(f"ipt/d{d}/{label}", seen)
                value = mean([ratio(got[t], bank_refs[t]) for t in seen])
                lines.append(f"| {label} | {_fmt(value)} | {'–' if paper is None else paper} |")
            lines.append("")

    # transfer ----------------------------------------------------------------------------------------------------
    if "udt" in cfg:
        ms, cells = transfer_cells(cfg, results)
        lines += ["## UDT transfer (E_rel % against the target method in its original space, unseen tasks)", "",
                  "| source \\ target | " + " | ".join(ms) + " |", "| --- |" + " ---: |" * len(ms)]
        lines += [f"| {src} | " + " | ".join(_ci(*cells[src][tgt]) for tgt in ms) + " |" for src in ms]
        off = [cells[a][b][0] for a in ms for b in ms if a != b and cells[a][b][0] is not None]
        lines += ["", f"Mean of the off-diagonal cells: {_fmt(mean(off))} % (paper: {PAPER['udt_transfer']} %). "
                  "Each z is decoded by the target's up-projection at the evaluation step whose transferred result "
                  "is best on dev (the paper's selection).", ""]

    lines += ["## Stage times", "", "| stage | minutes |", "| --- | ---: |"]
    lines += [f"| {name} | {sec / 60:.1f} |" for name, sec in stages.items()]
    return lines + [""]


def parts_of(cfg: dict, out: Path) -> list[tuple[str, dict, Path]]:
    """(name, recipe with its preset applied, output folder) of each part of a recipe file."""
    if "parts" in cfg:
        return [(name, with_preset(part), out / name) for name, part in cfg["parts"].items()]
    return [("", with_preset(cfg), out)]


def _table_lines(header: list[str], rows: list[list], digits: int = 1) -> list[str]:
    def cell(v) -> str:
        return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))

    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def analyses_lines(cfg: dict, results: dict, out: Path, stem: Path, *, png: bool = True) -> tuple[list[str],
                                                                                                list[Path]]:
    """The report's section on IPT's analyses, and the files it copies next to the report (their CSVs and
    figures, ``<stem>-<analysis>.<ext>``)."""
    a, done = analyses_settings(cfg), results.get("analyses", {})
    d, seeds, unseen = a["d"], list(cfg["seeds"]), list(cfg["unseen_tasks"])
    method = cfg["ipt"].get("method", "prompt")
    num = Numbers(results, seeds)
    lines = [f"## IPT's analyses at d = {d} (issue 12)", ""]
    files: list[Path] = []

    def copy(source: Path, name: str) -> None:
        files.extend(copy_beside(source, stem, name, png=png))

    sweep = a.get("d_sweep")
    if sweep and any(f"sweep/d{x}" in num.scores for x in sweep["dims"]):
        lines += _sweep_lines(cfg, sweep, num, Numbers(results, seeds[:1]), method, stem, files, png=png)
    if "pca" in done:
        ev = done["pca"]["explained_variance"]
        lines += [f"**PCA of the intrinsic vectors (Fig. 8)**: {done['pca']['points']} vectors (the training tasks' "
                  f"MSF codes and the unseen tasks' IST solutions, every seed); explained variance PC1 "
                  f"{100 * ev[0]:.1f} %, PC2 {100 * ev[1]:.1f} %.", ""]
        copy(out / "analyses" / "pca" / "pca.csv", "pca.csv")
        copy(out / "analyses" / "pca" / "pca.png", "pca.png")
    if "stability" in done:
        st = done["stability"]
        lines += [f"**Stability over seeds (Table III)** on {', '.join(st['tasks'])} ({_seeds(len(seeds))}; "
                  "mean over tasks of the std of the test scores, in points; paper, unseen tasks: fine-tuning 2.40, "
                  "prompt tuning 4.19, IPT 0.73, prompt tuning from IST 1.65):", ""]
        spread = st["header"].index("tasks")  # tasks with two runs or more of a kind
        if any(row[spread] for row in st["summary"]):
            lines += _table_lines(st["header"], st["summary"], digits=2)
        else:
            lines += ["One run per task and kind here: no spread to measure (the fine-tuning runs serve as the "
                      "reference of E_rel against fine-tuning below).", ""]
        refs = num.reference(method, st["tasks"])
        rel = num.relative(f"from-ist/{method}", st["tasks"], refs)
        if rel[0] is not None:
            lines += [f"Prompt tuning initialised from the IST solutions: E_rel {_ci(*rel[:2])} % of prompt tuning "
                      f"from its own initialisation (paper: 103.4 %).", ""]
        copy(out / "analyses" / "stability.csv", "stability.csv")
    finetuned = num.scores.get("stability/finetune", {})
    if finetuned:
        tasks = sorted(finetuned)
        refs = num.means("stability/finetune", tasks)
        rows = [[f"{method} tuning", *num.relative(f"reference/{method}", tasks, refs)[:2]]]
        for x in cfg["ipt"]["dims"]:
            rows.append([f"IPT, d = {x}", *num.relative(f"ipt/d{x}", tasks, refs)[:2]])
            if cfg["ipt"].get("random_ae", True):
                rows.append([f"random auto-encoder, d = {x}", *num.relative(f"random-ae/d{x}", tasks, refs)[:2]])
        lines += [f"**Against fine-tuning (Fig. 3b, 9)**: E_rel % to fine-tuning (the stability runs: "
                  f"{', '.join(tasks)}, {_seeds(len(seeds))}; mean over seeds of the mean over tasks, 95 % "
                  "interval):",
                  ""]
        lines += _table_lines(["run", "E_rel % to fine-tuning"], [[r[0], _ci(r[1], r[2])] for r in rows])
    multi = num.scores.get(f"multitask/{method}", {})
    if multi:
        first = str(seeds[0])
        rows = [[t, 100 * v[first] if v.get(first) is not None else None,
                 100 * num.scores[f"bank/{method}"][t][first]] for t, v in multi.items()]
        rows.append(["mean", mean([r[1] for r in rows]), mean([r[2] for r in rows])])
        lines += [f"**Multi-task {method} tuning (Table IV)**: one {method} on the pooled training tasks against "
                  f"each task's own (the bank), test % (paper, training tasks: 33.4 all vs 32.6 individual):", ""]
        lines += _table_lines(["training task", "all tasks", "individual"], rows)
    fractions = done.get("task_fractions", {})
    if fractions:
        refs = num.reference(method, unseen)
        full = num.per_seed(f"ipt/d{d}", unseen, refs)[:1]  # the subspace of every training task, first seed
        rows = [[100 * float(f), len(tasks), num.relative(f"fraction/{float(f):g}/d{d}", unseen, refs)[0]]
                for f, tasks in fractions.items()] + [[100.0, len(cfg["train_tasks"]), full[0] if full else None]]
        lines += [f"**Number of training tasks (Fig. 7)**: MSF at d = {d} on seeded subsets of the training tasks, IST "
                  f"on the unseen tasks (first seed), E_rel % to {method} tuning:", ""]
        lines += _table_lines(["training tasks %", "tasks", "E_rel %"],
                              [[f"{p:g}", n, None if v is None else 100 * v] for p, n, v in rows])
        if png and all(v is not None for *_, v in rows):
            files.append(interval_lines(f"IST at d = {d} on {len(unseen)} unseen tasks (first seed)",
                                        {"IPT": [(p, 100 * v, None) for p, _, v in rows]},
                                        stem.parent / f"{stem.name}-task-fraction.png",
                                        xlabel="training tasks of the subspace (%)", ylabel=f"E_rel to {method} (%)",
                                        log_x=False))
    if "task_types" in done:
        tt = done["task_types"]
        lines += [f"**Task types, included in / excluded from MSF (Fig. 4)**: IST at d = {d} on the unseen tasks of "
                  "each type, through the subspace of all training tasks and through one fitted without that type:",
                  ""]
        lines += _table_lines(tt["header"], tt["summary"])
        copy(out / "analyses" / "task-types" / "task_types.csv", "task-types.csv")
        copy(out / "analyses" / "task-types" / "task_types.png", "task-types.png")
    scale = a.get("data_scale")
    if scale and any(f"scale/k{k}/ipt" in num.scores for k in scale["k"]):
        tasks, first = list(scale["tasks"]), Numbers(results, seeds[:1])

        def scale_row(label, ref_key: str, ist_key: str) -> list:  # first seed only
            refs = first.means(ref_key, tasks)
            return [label, _mean_pct(list(refs.values())), _mean_pct(list(first.means(ist_key, tasks).values())),
                    first.relative(ist_key, tasks, refs)[0]]

        rows = [scale_row(k, f"scale/k{k}/{method}", f"scale/k{k}/ipt") for k in scale["k"]]
        # the main stages on the files' own 16-shot split, when their MSF saw the same tasks
        files_row = ([scale_row(f"16, the files of data seed {cfg['data_seed']}", f"reference/{method}", f"ipt/d{d}")]
                     if list(scale["train_tasks"]) == list(cfg["train_tasks"]) and f"ipt/d{d}" in num.scores else [])
        lines += [f"**Data scale (Fig. 6)**: every task's train and dev resampled at K per label (K in all for tasks "
                  f"without fixed labels) from the pooled files of the five seeds; {method} tuning and MSF at d = {d} "
                  f"on {len(scale['train_tasks'])} training tasks ({', '.join(scale['train_tasks'])}), IST on "
                  f"{', '.join(tasks)} (first seed); test % (mean over tasks) and E_rel % to {method} tuning at the "
                  "same K:", ""]
        lines += _table_lines(["K", f"{method} tuning", "IST", "E_rel %"],
                              [[k, p, i, None if v is None else 100 * v] for k, p, i, v in files_row + rows])
        if png and all(r[1] is not None and r[2] is not None for r in rows):
            files.append(interval_lines(f"{len(tasks)} unseen tasks (first seed), MSF on "
                                        f"{len(scale['train_tasks'])} training tasks at the same K",
                                        {f"{method} tuning": [(k, p, None) for k, p, *_ in rows],
                                         f"IST, d = {d}": [(k, i, None) for k, _, i, _ in rows]},
                                        stem.parent / f"{stem.name}-data-scale.png",
                                        xlabel="K (examples per label)", ylabel="test score (%)"))
    return lines, files


def _sweep_lines(cfg: dict, sweep: dict, num: Numbers, first: Numbers, method: str, stem: Path, files: list[Path],
                 *, png: bool) -> list[str]:
    """IPT's Fig. 3 from the d sweep and the headline's runs: per d, E_rel of IST on the sweep's unseen tasks to
    ``method`` tuning and (with the stability stage's fine-tuning runs of the same tasks) to fine-tuning, and on
    the challenge tasks with the same and with other data to their bank entries; first seed throughout."""
    tasks, seen = list(sweep["tasks"]), list(cfg["train_tasks"])[: sweep.get("challenge_tasks", 0)]
    keys = sorted([(x, f"sweep/d{x}") for x in sweep["dims"]] + [(x, f"ipt/d{x}") for x in cfg["ipt"]["dims"]])
    finetuned = num.scores.get("stability/finetune", {})
    refs = {f"{method} tuning": num.reference(method, tasks)}
    if all(t in finetuned for t in tasks):
        refs["fine-tuning"] = num.means("stability/finetune", tasks)
    bank = num.means(f"bank/{method}", seen)
    series: dict[str, list[tuple]] = {}
    for x, key in keys:
        for name, r in refs.items():
            series.setdefault(f"unseen tasks, E_rel to {name}", []).append((x, first.relative(key, tasks, r)[0]))
        for label in ("same", "other") if seen else ():
            series.setdefault(f"training tasks, {label} data, E_rel to {method} tuning", []).append(
                (x, first.relative(f"{key}/{label}", seen, bank)[0]))
    lines = [f"**Intrinsic dimension (Fig. 3)**: IST through MSF subspaces of every d (first seed), E_rel % on the "
             f"unseen tasks {', '.join(tasks)} to {' and to '.join(refs)} (mean of their {_seeds(len(cfg['seeds']))})"
             + (f", and on the training tasks {', '.join(seen)} with the bank's data and with seed "
                f"{cfg['other_data_seed']}'s files, to their bank entries" if seen else "") + ":", ""]
    lines += _table_lines(["d", *series], [[x, *(None if s[j][1] is None else 100 * s[j][1]
                                                 for s in series.values())] for j, (x, _) in enumerate(keys)])
    drawn = {name: [(x, 100 * v, None) for x, v in s if v is not None] for name, s in series.items()}
    drawn = {name: points for name, points in drawn.items() if points}
    if png and drawn:
        files.append(interval_lines("IST, first seed", drawn,
                                    stem.parent / f"{stem.name}-d-sweep.png", xlabel="intrinsic dimension d",
                                    ylabel="E_rel (%)", lines={"the reference": 100.0}))
    return lines


def _paper_cell(record: dict) -> str:
    """The paper's number for a relative-performance row; IPT's is at d = 250, said so beside another d."""
    if record["paper"] is None:
        return "–"
    at = " (d = 250)" if record["key"].startswith("ipt/") and record["d"] != 250 else ""
    return f"{record['paper']:.1f}{at}"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _mean_pct(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else 100 * mean(values)


def write_figures(stem: Path, cfg: dict, results: dict, *, png: bool = True) -> list[Path]:
    """Next to the report: ``<stem>.csv`` (the relative-performance records), and with ``png`` the intrinsic
    dimension plot (``<stem>-d.png``: E_rel against d, learnt vs random, with the intervals; IPT's Fig. 3 and 5;
    only when the runs have two d or more)
    and the transfer heat map (``<stem>-transfer.png``: UDT's Table 4). Returns the files written."""
    records = relative_records(cfg, results)
    written = [stem.with_suffix(".csv")]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(RELATIVE_COLUMNS)
    writer.writerows([["" if r[c] is None else r[c] for c in RELATIVE_COLUMNS] for r in records])
    write_text(written[0], table.getvalue())
    if not png:
        return written
    series: dict[str, list[tuple]] = {}
    for r in records:
        if r["d"] is not None and r["e_rel"] is not None and not r["key"].startswith("udt/"):
            label = {"ipt": "IPT (learnt auto-encoder)", "random-ae": "random auto-encoder",
                     "fastfood": "Fastfood (DID, all weights)"}[r["key"].split("/")[0]]
            series.setdefault(label, []).append((r["d"], 100 * r["e_rel"], None if r["e_rel_half"] is None
                                                 else 100 * r["e_rel_half"]))
    if len({x for points in series.values() for x, _, _ in points}) > 1:  # a line needs two d: none for one
        method = cfg.get("ipt", {}).get("method", "prompt")
        frozen = next((r["e_rel"] for r in records if r["key"] == "frozen" and r["method"] == method), None)
        lines = {f"{method} tuning (the reference)": 100.0}
        if frozen is not None:
            lines["frozen backbone"] = 100 * frozen
        written.append(interval_lines(
            f"unseen tasks ({len(cfg['unseen_tasks'])}), {_seeds(len(cfg['seeds']))}, 95 % intervals", series,
            stem.parent / f"{stem.name}-d.png", xlabel="intrinsic dimension d", ylabel=f"E_rel to {method} (%)",
            lines=lines))
    if "udt" in cfg and any(k.startswith("transfer/") for k in results.get("scores", {})):
        ms, cells = transfer_cells(cfg, results)
        values = [[None if cells[a][b][0] is None else 100 * cells[a][b][0] for b in ms] for a in ms]
        written.append(heatmap("UDT transfer: E_rel (%) of the source's vectors decoded by the target",
                               [f"from {m}" for m in ms], [f"to {m}" for m in ms], values,
                               stem.parent / f"{stem.name}-transfer.png"))
    return written


def copy_beside(source: Path, stem: Path, name: str, *, png: bool = True) -> list[Path]:
    """``source`` copied next to the report as ``<stem>-<name>`` (a figure only with ``png``); the copies made."""
    import shutil

    if not source.is_file() or (source.suffix == ".png" and not png):
        return []
    target = stem.parent / f"{stem.name}-{name}"
    shutil.copyfile(source, target)
    return [target]


def landscape_lines(land: dict, out: Path, stem: Path, *, png: bool = True) -> tuple[list[str], list[Path]]:
    """The report's section on UDT's landscape, and its figure copied next to the report."""
    lines = [f"## UDT landscape (Fig. 2) on {land['task']} ({land['split']}, seed {land['seed']})", "",
             f"The plane through the subspace solutions of {', '.join(land['order'])} (origin, u, v), a grid from "
             f"{land['axis'][0]:g} to {land['axis'][-1]:g}; each point scored by every method's up-projection, "
             "relative to its original-space score. At the origin: "
             + ", ".join(f"{m} {_fmt(v)}" for m, v in land["origin_score"].items())
             + " (absolute %). Mean relative performance (%) at the grid point nearest each method's solution: "
             + ", ".join(f"{m} {v:.1f}" for m, v in land["mean_at_marks"].items()) + ".", ""]
    return lines, copy_beside(out / "landscape" / "landscape.png", stem, "landscape.png", png=png)


def write_report(path: Path, cfg: dict, args) -> None:
    # the date of the newest results (a report written again with --report-only keeps the run's date)
    recorded = [out / RESULTS for _, _, out in parts_of(cfg, Path(args.out)) if (out / RESULTS).is_file()]
    when = time.strftime("%Y-%m-%d", time.localtime(max((f.stat().st_mtime for f in recorded), default=time.time())))
    lines = [f"# {Path(args.config).stem}", "", f"Command (from the repository root, {when}):", "", "```bash",
             f"python recipes/smol.py {args.config} --out {args.out} --report {args.report}", "```", ""]
    png = not getattr(args, "no_png", False)
    for name, part, out in parts_of(cfg, Path(args.out)):
        if not (out / RESULTS).is_file():
            lines += [f"## {name}: no results yet", ""]
            continue
        stages = read_json(out / STAGES) if (out / STAGES).is_file() else {}
        results = read_json(out / RESULTS)
        body = report_lines(part, args, results, stages, f"## {name}" if name else "## Setting")
        # a part's sections go one level down
        lines += [("#" + line) if name and line.startswith("## ") and line != body[0] else line for line in body]
        stem = path.parent / (f"{path.stem}-{name}" if name else path.stem)
        files = write_figures(stem, part, results, png=png)
        more: list[str] = []
        if "analyses" in part and "analyses" in results:
            text, copied = analyses_lines(part, results, out, stem, png=png)
            more += text
            files += copied
        if "landscape" in results:
            text, copied = landscape_lines(results["landscape"], out, stem, png=png)
            more += text
            files += copied
        lines += [("#" + line) if name and line.startswith("## ") else line for line in more]
        lines += ["Files: " + ", ".join(f"[{f.name}]({f.name})" for f in files) + ".", ""]
        lines += [f"![{f.name}]({f.name})" for f in files if f.suffix == ".png"] + [""]
    write_text(path, "\n".join(lines) + "\n")
    print(f"report: {path}")


def main() -> None:
    args = recipe_arguments(__doc__.split("\n\n")[0], figures=True, parts=True)
    cfg = read_recipe(args.config)
    out = Path(args.out)
    names = [name for name, _, _ in parts_of(cfg, out)]
    for name in args.part or []:
        if name not in names:
            raise ConfigError(f"--part {name}: {args.config} has " + (
                f"no such part (its parts: {', '.join(names)})" if any(names) else "no 'parts'"))
    if not args.report_only:
        # every part's settings are checked before any part trains
        runners = [(name, Runner(part, folder, args.data_dir, png=not args.no_png))
                   for name, part, folder in parts_of(cfg, out)]
        for name, runner in runners:
            if args.part and name not in args.part:
                continue
            if name:
                print(f"== {name}", flush=True)
            runner.run()
    if not any((folder / RESULTS).is_file() for _, _, folder in parts_of(cfg, out)):
        raise SystemExit(f"{out}: no results yet (run without --report-only first)")
    write_report(Path(args.report), cfg, args)


if __name__ == "__main__":
    run_main(main)
