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
- ``parts`` (instead of all of the above): named recipes of this form, run one after the other into
  ``OUT/<name>``, with one report (recipes/full-scale.yaml: IPT and UDT, each with its paper's preset).

Every stage resumes: run the same command again after an interruption and finished work is verified and reused.
``results.json`` (every test score, by stage, task and seed) is written after each stage; ``--report-only``
writes the report again from it.
"""

from __future__ import annotations

import copy
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from taskspace import __version__
from taskspace.analysis import gain_kept, mean, mean_interval, ratio
from taskspace.backbones import load_backbone
from taskspace.evaluation import evaluate
from taskspace.presets import preset_values
from taskspace.store import read_json, write_json, write_text
from taskspace.subspace import (BankSpec, FastfoodConfig, FitData, MSFConfig, RandomAEConfig, Subspace,
                                SubspaceTuneConfig, UnifiedConfig, build_bank, subspace_tune, transfer)
from taskspace.tasks import CATALOG

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared module, also when imported
from recipe_common import (Stages, fit_saved, read_recipe, recipe_arguments, require, run_main,  # noqa: E402
                           stage_config, train_config)

#: The papers' headline numbers (%), printed beside ours.
PAPER = {"ipt_seen_other_d250": 97.0, "ipt_unseen_d250": 83.0, "udt_optimisation": 88.7, "udt_transfer": 84.7}

#: A task counts in "gain kept" when its reference beats the frozen model by at least this much.
GAIN_MARGIN = 0.05

RESULTS, STAGES = "results.json", "stages.json"


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
    def __init__(self, cfg: dict, out: Path, data_dir: str):
        require(cfg, ("data_seed", "max_test_examples", "seeds", "train_tasks", "unseen_tasks", "bank"), str(out))
        require(cfg["bank"], ("methods", "train"), f"{out}: bank")
        if "ipt" in cfg:
            require(cfg, ("ist",), str(out))
            require(cfg["ipt"], ("dims", "msf"), f"{out}: ipt")
        if "udt" in cfg:
            require(cfg["udt"], ("fit", "subspace_train"), f"{out}: udt")
        self.cfg, self.out, self.data_dir = cfg, out, data_dir
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

    def save(self) -> None:
        write_json(self.out / RESULTS, self.results)

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
        self.bank = self.stages.run("bank: training tasks", build_bank, self.out / "bank", self.bank_spec,
                                    self.backbone, report=self._report_entry)
        self.reference = self.stages.run("bank: unseen tasks, every seed (the reference)", build_bank,
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
        self.stages.run("frozen backbone", self.frozen)
        self.save()
        if "ipt" in cfg:
            self.ipt()
        if "fastfood" in cfg:
            self.fastfood()
        if "udt" in cfg:
            self.udt()

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
                z_std: float = 0.02) -> None:
        """Subspace tuning of ``method`` on every task and seed, recorded under ``key``."""
        data_seed = self.cfg["data_seed"] if data_seed is None else data_seed
        for task in tasks:
            for seed in seeds or self.seeds:
                config = SubspaceTuneConfig(task=task, method=method, data_dir=self.data_dir, data_seed=data_seed,
                                            seed=seed, z_init=z_init, z_std=z_std, train=train_config(train),
                                            max_test_examples=self.cfg["max_test_examples"])
                scores = subspace_tune(space, folder, config,
                                       folder / "runs" / f"{task}-d{data_seed}-{method}-s{seed}")
                self.record(key, task, seed, scores)
                print(f"    {task:34s} {method:8s} s{seed} test {_fmt(scores['test'])}", flush=True)
        self.save()

    def ipt(self) -> None:
        i, ist = self.cfg["ipt"], self.cfg["ist"]
        method = i.get("method", "prompt")
        for d in i["dims"]:
            folder = self.out / f"ipt-d{d}"
            msf = stage_config(MSFConfig, i["msf"], method=method, d=d)
            space = self.stages.run(f"IPT MSF d={d}", fit_saved, "ipt", msf,
                                    FitData.from_bank(self.bank, self.train_tasks), folder)
            self.stages.run(f"IPT IST d={d}, unseen tasks", self.tune_in, f"ipt/d{d}", space, folder, self.unseen,
                            method, ist["train"], z_std=ist.get("z_std", 0.02))
            if i.get("random_ae", True):
                rfolder = self.out / f"random-ae-d{d}"
                rspace = fit_saved("random-ae", RandomAEConfig(method=method, d=d, hidden=msf.hidden, seed=17),
                                   FitData.from_bank(self.bank, []), rfolder)
                self.stages.run(f"random auto-encoder d={d}, unseen tasks", self.tune_in, f"random-ae/d{d}", rspace,
                                rfolder, self.unseen, method, ist["train"], z_std=ist.get("z_std", 0.02))
        seen = self.train_tasks[: i.get("challenge_tasks", 0)]
        if seen:
            d = max(i["dims"])
            folder = self.out / f"ipt-d{d}"
            space = Subspace.load(folder, self.backbone)
            for label, data_seed in (("same", self.cfg["data_seed"]), ("other", self.cfg["other_data_seed"])):
                self.stages.run(f"IPT IST d={d}, training tasks, {label} data", self.tune_in, f"ipt/d{d}/{label}",
                                space, folder, seen, method, ist["train"], seeds=self.seeds[:1], data_seed=data_seed,
                                z_std=ist.get("z_std", 0.02))

    def fastfood(self) -> None:
        f = self.cfg["fastfood"]
        for d in f["dims"]:
            folder = self.out / f"fastfood-d{d}"
            space = fit_saved("fastfood", FastfoodConfig(d=d, seed=23), FitData(self.backbone, []), folder)
            self.stages.run(f"Fastfood (DID) d={d}, unseen tasks", self.tune_in, f"fastfood/d{d}", space, folder,
                            list(f.get("tasks", self.unseen)), "finetune", f["train"], seeds=f.get("seeds"),
                            z_init="zeros")

    def udt(self) -> None:
        u = self.cfg["udt"]
        folder = self.out / "udt"
        fit = stage_config(UnifiedConfig, u["fit"])
        space = self.stages.run("UDT subspace approximation", fit_saved, "unified", fit,
                                FitData.from_bank(self.bank, self.train_tasks), folder)
        for m in fit.methods:
            self.stages.run(f"UDT subspace optimisation, {m}", self.tune_in, f"udt/{m}", space, folder, self.unseen,
                            m, u["subspace_train"], z_init=u.get("z_init", "normal"), z_std=u.get("z_std", 0.02))

        def run_transfer():
            for m in fit.methods:
                for t in self.unseen:
                    for s in self.seeds:
                        run = folder / "runs" / f"{t}-d{self.cfg['data_seed']}-{m}-s{s}"
                        for target, sc in transfer(space, folder, run).items():
                            self.record(f"transfer/{m}/{target}", t, s, sc)
            self.save()

        self.stages.run("UDT transfer", run_transfer)


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

    def reference(self, method: str, tasks: list[str]) -> dict[str, float | None]:
        """Each task's reference score: the mean over seeds of ``method`` in its original space."""
        by_task = self.scores.get(f"reference/{method}", {})
        return {t: mean(list(by_task.get(t, {}).values())) for t in tasks}

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
    keys = [k for k in num.scores if not k.startswith(("bank/", "transfer/")) and "/same" not in k
            and "/other" not in k]
    header = ["task", "category", "frozen"] + keys
    lines += ["## Unseen tasks: test scores (%)", "", "| " + " | ".join(header) + " |",
              "| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |"]
    for t in unseen:
        row = [t, CATALOG[t].category if t in CATALOG else "–", _fmt(num.frozen.get(t))]
        row += [_ci(*num.absolute(k, t)[:2]) for k in keys]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    # relative performance --------------------------------------------------------------------------------------
    rows = []
    ipt_method = cfg.get("ipt", {}).get("method", "prompt")

    def add(label, key, method, tasks, paper=None):
        refs = num.reference(method, tasks)
        low = [t for t in tasks if refs[t] is not None and num.frozen.get(t, 1.0) < 0.5 * refs[t]]
        rel = num.relative(key, tasks, refs)
        rows.append([label, _ci(*rel[:2]), _ci(*num.relative(key, tasks, refs, gain=True)[:2]),
                     _ci(*num.relative(key, low, refs)[:2]) + f" ({len(low)})" if low else "–",
                     str(rel[2]), "–" if paper is None else f"{paper:.1f}"])

    for d in cfg.get("ipt", {}).get("dims", []):
        add(f"IPT, IST, unseen tasks, d = {d}", f"ipt/d{d}", ipt_method, unseen,
            PAPER["ipt_unseen_d250"] if d == max(cfg["ipt"]["dims"]) else None)
        if cfg["ipt"].get("random_ae", True):
            add(f"random auto-encoder, unseen tasks, d = {d}", f"random-ae/d{d}", ipt_method, unseen)
    for d in cfg.get("fastfood", {}).get("dims", []):
        add(f"Fastfood (DID, all weights), d = {d}", f"fastfood/d{d}", ipt_method,
            list(cfg["fastfood"].get("tasks", unseen)))
    if "udt" in cfg:
        for m in cfg["udt"]["fit"]["methods"]:
            add(f"UDT subspace optimisation, {m}", f"udt/{m}", m, unseen)
    for m in methods:  # the frozen model as a "run" of every seed: where the subspaces start from
        refs = num.reference(m, unseen)
        rows.append([f"frozen backbone (vs {m})", _fmt(mean([ratio(num.frozen.get(t), refs[t]) for t in unseen])),
                     "0.0", "–", "–", "–"])
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
            bank_refs = {t: mean(list(num.scores.get(f"bank/{ipt_method}", {}).get(t, {}).values())) for t in seen}
            lines += [f"## IST on {n} training tasks, d = {d} (first seed; reference: their bank entries)", "",
                      "| data | E_rel % | paper |", "| --- | ---: | ---: |"]
            for label, paper in (("same", None), ("other", PAPER["ipt_seen_other_d250"])):
                got = {t: mean(list(num.scores.get(f"ipt/d{d}/{label}", {}).get(t, {}).values())) for t in seen}
                value = mean([ratio(got[t], bank_refs[t]) for t in seen])
                lines.append(f"| {label} | {_fmt(value)} | {'–' if paper is None else paper} |")
            lines.append("")

    # transfer ----------------------------------------------------------------------------------------------------
    if "udt" in cfg:
        ms = list(cfg["udt"]["fit"]["methods"])
        lines += ["## UDT transfer (E_rel % against the target method in its original space, unseen tasks)", "",
                  "| source \\ target | " + " | ".join(ms) + " |", "| --- |" + " ---: |" * len(ms)]
        off = []
        for src in ms:
            cells = []
            for tgt in ms:
                refs = num.reference(tgt, unseen)
                rel = num.relative(f"transfer/{src}/{tgt}", unseen, refs)
                cells.append(_ci(*rel[:2]))
                if src != tgt and rel[0] is not None:
                    off.append(rel[0])
            lines.append(f"| {src} | " + " | ".join(cells) + " |")
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


def write_report(path: Path, cfg: dict, args) -> None:
    lines = [f"# {Path(args.config).stem}", "", f"Command (from the repository root, {time.strftime('%Y-%m-%d')}):",
             "", "```bash", f"python recipes/smol.py {args.config} --out {args.out} --report {args.report}", "```", ""]
    for name, part, out in parts_of(cfg, Path(args.out)):
        if not (out / RESULTS).is_file():
            lines += [f"## {name}: no results yet", ""]
            continue
        stages = read_json(out / STAGES) if (out / STAGES).is_file() else {}
        body = report_lines(part, args, read_json(out / RESULTS), stages, f"## {name}" if name else "## Setting")
        # a part's sections go one level down
        lines += [("#" + line) if name and line.startswith("## ") and line != body[0] else line for line in body]
    write_text(path, "\n".join(lines) + "\n")
    print(f"report: {path}")


def main() -> None:
    args = recipe_arguments(__doc__.split("\n\n")[0])
    cfg = read_recipe(args.config)
    out = Path(args.out)
    if not args.report_only:
        for name, part, folder in parts_of(cfg, out):
            if name:
                print(f"== {name}", flush=True)
            Runner(part, folder, args.data_dir).run()
    if not any((folder / RESULTS).is_file() for _, _, folder in parts_of(cfg, out)):
        raise SystemExit(f"{out}: no results yet (run without --report-only first)")
    write_report(Path(args.report), cfg, args)


if __name__ == "__main__":
    run_main(main)
