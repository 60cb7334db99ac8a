"""IPT and UDT at CPU scale on the default backbone, with seeds and intervals: one runner for recipes/smol-ipt.yaml
and recipes/smol-udt.yaml (and any file of the same form).

    python recipes/smol.py recipes/smol-ipt.yaml --out runs/smol-ipt --report reports/smol-ipt.md
    python recipes/smol.py recipes/smol-udt.yaml --out runs/smol-udt --report reports/smol-udt.md
    python recipes/smol.py recipes/smol-catalog.yaml --out runs/smol-catalog --report reports/smol-catalog.md
    python recipes/smol.py recipes/smol-udt-catalog.yaml --out runs/smol-udt-catalog \\
        --report reports/smol-udt-catalog.md

What a file holds (every stage's settings are the fields of its library config, read with ``from_dict``, so a
misspelt key is refused by name):

- ``backbone``, ``backbone_options``, ``decode``; ``data_seed`` (the few-shot files), ``other_data_seed`` (IPT's
  other-data challenge), ``max_test_examples``; ``seeds``: the seeds of every unseen-task run (the reference
  tuning and every subspace run), over which each mean gets its 95 % interval; ``train_tasks``, ``unseen_tasks``.
- ``bank``: the original-space tuning (``BankSpec`` fields: ``methods``, ``lr``, ``train``). It tunes the training
  tasks once (the first seed: the solutions a subspace is fitted to) and the unseen tasks with every seed (the
  reference each ratio divides by).
- ``ipt`` (optional): ``method``, ``dims``, ``msf`` (``MSFConfig``), ``random_ae`` (the random auto-encoder
  baseline at the same d: true, false, or a list of some of the dims), ``linear`` (a list of dims: IST in the
  linear subspace of the same bank, its principal directions around their mean; each d at most the number of
  training tasks - 1), ``challenge_tasks`` (IST on that many training tasks with the same and with other data, at
  the largest d, first seed); ``ist``: ``train`` and ``z_std`` of intrinsic subspace tuning.
- ``fastfood`` (optional): the random subspace of all weights (DID) at ``dims``, ``train``, and optionally its
  own ``seeds`` and ``tasks`` (a full-model projection is the slowest stage).
- ``udt`` (optional): ``fit`` (``UnifiedConfig``), ``subspace_train`` (subspace optimisation of each method on
  the unseen tasks, every seed), then the transfer matrix (the paper's selection).
- ``pool_test`` (optional, default false): every run on an unseen task (the reference, the frozen backbone, every
  subspace run) that has no test file is scored on its held-out pool instead (``load_task``'s ``pool_test``: the
  other seeds' train and dev examples that are not in its own), so that no unseen task is left without a test
  score; the training tasks' runs (the bank, IPT's challenges) are scored as their files are.
- ``preset`` (optional): ``ipt-paper``, ``udt-paper`` or ``udt-paper-single`` (``taskspace.presets``) under the
  file's own settings: the bank's methods, rates and training, MSF / UDT's fit, and IST / subspace optimisation.
- ``udt.landscape`` (optional, UDT's Fig. 2): ``task`` (an unseen task), ``seed``, ``split``, ``span``, ``step``:
  the plane through the three methods' subspace solutions of that task and seed.
- ``analyses`` (optional, IPT's remaining experiments over the bank and the runs at ``d``, one of ``ipt.dims``):
  ``d_sweep`` (``dims``, ``tasks``, ``challenge_tasks``: MSF at other d, IST on those unseen tasks and on that
  many training tasks with the same and other data, first seed; Fig. 3, against fine-tuning too), ``pca``
  (Fig. 8), ``stability`` (``tasks``, ``finetune``, ``from_ist``: Table III, and E_rel against fine-tuning),
  ``multitask`` (``train``: Table IV), ``task_fractions`` and ``subset_seed`` (Fig. 7), ``exclude_types``
  (Fig. 4), ``data_scale`` (``k``, ``train_tasks``, ``tasks``: every split resampled at K per label, a bank,
  reference, MSF and IST of their own per K, first seed; Fig. 6).
- ``split`` (optional, instead of ``train_tasks`` and ``unseen_tasks``): a split file (a path relative to
  recipes/), its 'train' list the training tasks and its 'test' list the unseen tasks.
- ``parts`` (instead of all of the above): named recipes of this form, run one after the other into
  ``OUT/<name>``, with one report (recipes/full-scale.yaml: IPT and UDT, each with its paper's preset, on SmolLM2
  and on the papers' backbones); ``--part NAME`` runs only that part, and ``--backbone PATH`` replaces the backbone
  of the parts that run (a local copy of the model a part names).

Every stage resumes: run the same command again after an interruption and finished work is verified and reused.
``results.json`` (every test score, by stage, task and seed) is written after each stage; ``--report-only``
writes the report again from it.

This file is the runner: it reads the recipe (``smol_settings``), checks every setting before anything trains, and
orders, times and resumes the stages, each a unit of ``smol_stages/``; ``smol_report/`` writes the report from
``results.json`` and ``stages.json`` (and the training files of the tasks its failure analysis names) alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from taskspace.backbones import load_backbone
from taskspace.errors import ConfigError, DataError
from taskspace.store import read_json, write_json
from taskspace.subspace import BankSpec, MSFConfig, Subspace, UnifiedConfig, build_bank
from taskspace.tasks import load_task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules, also when imported
from recipe_common import (Stages, read_recipe, recipe_arguments, require, run_main, stage_config,  # noqa: E402
                           train_config)
from smol_report.write import write_report  # noqa: E402
from smol_settings import (RESULTS, STAGES, analyses_settings, landscape_settings, linear_dims,  # noqa: E402
                           parts_of, random_dims)
from smol_stages.baselines import fastfood_space, random_ae_space  # noqa: E402
from smol_stages.d_sweep import d_sweep  # noqa: E402
from smol_stages.data_scale import data_scale  # noqa: E402
from smol_stages.ipt import challenges, linear, msf  # noqa: E402
from smol_stages.landscape import landscape  # noqa: E402
from smol_stages.multitask import multitask  # noqa: E402
from smol_stages.original import bank_specs, frozen, record_banks, report_entry  # noqa: E402
from smol_stages.pca import pca  # noqa: E402
from smol_stages.stability import stability  # noqa: E402
from smol_stages.task_fractions import task_fraction  # noqa: E402
from smol_stages.task_types import task_types, without_type  # noqa: E402
from smol_stages.tuning import ist_runs, tune_in  # noqa: E402
from smol_stages.udt import transfer_matrix, unified  # noqa: E402


class Runner:
    """One recipe (or part) run into ``out``: its settings checked at construction, its stages (``smol_stages``)
    run in order by :meth:`run`, each timed in ``stages.json`` and followed by ``results.json``."""

    def __init__(self, cfg: dict, out: Path, data_dir: str, *, png: bool = True):
        require(cfg, ("data_seed", "max_test_examples", "seeds", "train_tasks", "unseen_tasks", "bank"), str(out))
        if not isinstance(cfg.get("pool_test", False), bool):
            raise ConfigError(f"{out}: pool_test: {cfg['pool_test']!r}: expected true or false")
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
            random_dims(cfg["ipt"])
            linear_dims(cfg)
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
    # -- the order of the stages ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Every stage of the recipe: the bank and the reference, the frozen backbone, then IPT, Fastfood, UDT and
        IPT's analyses, each where the recipe has its section."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        self.backbone = load_backbone(cfg.get("backbone", "smollm2"), decode=cfg.get("decode", "generate"),
                                      **cfg.get("backbone_options", {}))
        self.bank_spec, self.reference_spec = bank_specs(self)
        self.bank = self.stage("bank: training tasks", build_bank, self.out / "bank", self.bank_spec,
                               self.backbone, report=report_entry)
        self.reference = self.stage("bank: unseen tasks, every seed (the reference)", build_bank,
                                    self.out / "reference", self.reference_spec, self.backbone,
                                    report=report_entry)
        record_banks(self)
        self.stage("frozen backbone", frozen, self)
        self.save()
        if "ipt" in cfg:
            self.ipt()
        if "fastfood" in cfg:
            self.fastfood()
        if "udt" in cfg:
            self.udt()
        if "analyses" in cfg:
            self.analyses()

    def ipt(self) -> None:
        """At each d, MSF, IST on the unseen tasks and the random auto-encoder at the same d (at the dims it is
        asked for); IST in the linear subspace at its dims right after the first d (the headline: learnt against
        random and linear, before the other dims, which a recipe cuts first); the seen-task challenges at the
        largest d last."""
        i, ist = self.cfg["ipt"], self.cfg["ist"]
        method = i.get("method", "prompt")
        for n, d in enumerate(i["dims"]):
            space, config, folder = msf(self, d)
            self.stage(f"IPT IST d={d}, unseen tasks", tune_in, self, f"ipt/d{d}", space, folder, self.unseen,
                       method, ist["train"], z_std=ist.get("z_std", 0.02))
            if d in random_dims(i):
                rspace, rfolder = random_ae_space(self, d, config)
                self.stage(f"random auto-encoder d={d}, unseen tasks", tune_in, self, f"random-ae/d{d}", rspace,
                           rfolder, self.unseen, method, ist["train"], z_std=ist.get("z_std", 0.02))
            if n == 0:
                for dl in linear_dims(self.cfg):
                    lspace, lfolder = linear(self, dl)
                    self.stage(f"linear subspace d={dl}, unseen tasks", tune_in, self, f"linear/d{dl}", lspace,
                               lfolder, self.unseen, method, ist["train"], z_std=ist.get("z_std", 0.02))
        seen = self.train_tasks[: i.get("challenge_tasks", 0)]
        if seen:
            d = max(i["dims"])
            folder = self.out / f"ipt-d{d}"
            challenges(self, f"ipt/d{d}", f"IPT IST d={d}", Subspace.load(folder, self.backbone), folder, seen)

    def fastfood(self) -> None:
        """Tuning in the Fastfood projection of all weights at each d."""
        f = self.cfg["fastfood"]
        for d in f["dims"]:
            space, folder = fastfood_space(self, d)
            self.stage(f"Fastfood (DID) d={d}, unseen tasks", tune_in, self, f"fastfood/d{d}", space, folder,
                       list(f.get("tasks", self.unseen)), "finetune", f["train"], seeds=f.get("seeds"),
                       z_init="zeros")

    def udt(self) -> None:
        """The unified subspace, each method's subspace optimisation on the unseen tasks, the transfer matrix, and
        with ``udt.landscape`` the landscape."""
        u = self.cfg["udt"]
        space, fit, folder = unified(self)
        for m in fit.methods:
            self.stage(f"UDT subspace optimisation, {m}", tune_in, self, f"udt/{m}", space, folder, self.unseen,
                       m, u["subspace_train"], z_init=u.get("z_init", "normal"), z_std=u.get("z_std", 0.02))
        self.stage("UDT transfer", transfer_matrix, self, space, fit, folder)
        if "landscape" in u:
            self.stage("UDT landscape (UDT Fig. 2)", landscape, self, space, fit, landscape_settings(self.cfg),
                       folder)

    def analyses(self) -> None:
        """IPT's analyses (issue 12) over the bank and the runs at the analyses' d, in ``analyses/``."""
        a = analyses_settings(self.cfg)
        i = self.cfg["ipt"]
        method, d = i.get("method", "prompt"), a["d"]
        main = self.out / f"ipt-d{d}"
        space = Subspace.load(main, self.backbone)
        folder = self.out / "analyses"
        self.results.setdefault("analyses", {})  # what the analyses record beside their scores
        sweep = a.get("d_sweep")
        if sweep:
            d_sweep(self, sweep, method)
        if a.get("pca", True):
            self.stage("analysis: PCA of the intrinsic vectors (IPT Fig. 8)", pca, self, space, method,
                       ist_runs(self, main, self.unseen, method), folder / "pca")
        if "stability" in a:
            self.stage("analysis: stability over seeds (IPT Table III)", stability, self, a["stability"], method,
                       main, folder)
        if "multitask" in a:
            self.stage("analysis: multi-task prompt tuning (IPT Table IV)", multitask, self, a["multitask"],
                       method, folder / "multitask")
        config = stage_config(MSFConfig, i["msf"], method=method, d=d)
        for f in a.get("task_fractions", []):
            task_fraction(self, f, a.get("subset_seed", 0), config, method, folder)
        for kind in a.get("exclude_types", []):
            without_type(self, kind, config, method)
        if a.get("exclude_types"):
            self.stage("analysis: task types, included vs excluded (IPT Fig. 4)", task_types, self, a, method,
                       main, folder / "task-types")
        scale = a.get("data_scale")
        for k in scale["k"] if scale else ():
            self.stage(f"analysis: K = {k}: bank of {len(scale['train_tasks'])} training tasks, {method} tuning "
                       f"and IST d={d} on {len(scale['tasks'])} unseen tasks (IPT Fig. 6)", data_scale, self, k,
                       scale, method, config, folder / f"k{k}")
        self.save()


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
        runs = [not args.part or name in args.part for name, _, _ in parts_of(cfg, out)]
        runners = [(name, Runner({**part, "backbone": args.backbone} if args.backbone and chosen else part, folder,
                                 args.data_dir, png=not args.no_png))
                   for (name, part, folder), chosen in zip(parts_of(cfg, out), runs)]
        for (name, runner), chosen in zip(runners, runs):
            if not chosen:
                continue
            if name:
                print(f"== {name}", flush=True)
            runner.run()
    if not any((folder / RESULTS).is_file() for _, _, folder in parts_of(cfg, out)):
        raise SystemExit(f"{out}: no results yet (run without --report-only first)")
    write_report(Path(args.report), cfg, args)


if __name__ == "__main__":
    run_main(main)
