"""Solution banks: tuned theta for many (task, method, seed), with their dev/test scores.

A bank is a folder:

    bank.json                      what the bank holds: backbone, methods and options, tasks, seeds, settings,
                                   and the digest of each task's splits (their content) the entries are made on
    <task>/<method>/s<seed>/       one ordinary run directory (``taskspace tune``) per entry

Building is resumable: every entry is a resumable run, and a finished entry is *verified* (its theta is read and
checked against the backbone and method), never assumed from a file's existence. Reading a bank fails with a
message naming the entry when one is missing, unfinished or does not match; it never substitutes anything.
A bank's entries are all made on one version of its tasks' data: building it again after a task's files changed
is refused (naming the task and split), and so is combining its solutions with other data (a subspace fit on the
tasks' training data, an imported entry); a moved data folder is the same data. A bank made before the digests
were recorded cannot be checked on content: it resumes, as then, only from the data folder it recorded.
All entries of one method share their initialisation seed, so they share theta_init: subspaces are fitted to
``theta - theta_init`` (UDT) and decode around that common anchor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from .. import __version__
from ..backbones import Backbone, recorded_settings, scoring_settings
from ..config import Config, at_least, option, positive_count
from ..deltas import METHODS, DeltaMethod, build_method, default_lr
from ..errors import ConfigError, DataError
from ..evaluation import capped_test_split
from ..runs import check_same_data, compared, split_digests
from ..store import exclusive, load_delta, read_json, write_json
from ..tasks import Example, Task, load_task_as
from ..train import TrainConfig
from ..tuning import POOL_TEST_HELP, TuneConfig, tune, tune_together, tune_training

BANK_FILE = "bank.json"


@dataclass
class BankSpec(Config):
    """What a bank holds. ``methods`` maps a method name to its options. Every entry trains with ``train``'s
    settings except the learning rate, which is ``lr[method]``: given, or the method's default (``train.lr`` is
    not used, and recorded as none)."""

    tasks: list[str] = option(help="the tasks", cli=False)
    methods: dict[str, dict[str, Any]] = option(help="method name -> its options", cli=False)
    data_dir: str = option(help="folder of task folders", cli=False)
    seeds: list[int] = option(help="initialisation / data-order seeds", factory=lambda: [0], cli=False)
    data_seed: int = option(100, "which few-shot files (100, 13, 21, 42, 87)")
    k: int = option(16, "shots in the file names", check=positive_count)
    resample: bool = option(False, "resample train/dev CrossFit-style from the pooled examples with the data seed",
                            since="0.2")
    resample_k: int | None = option(None, "with --resample: examples per label (per task without fixed labels) "
                                          "to draw (none: --k)", check=positive_count, since="0.2")
    pool_test: bool = option(False, POOL_TEST_HELP, since="0.2")
    train: TrainConfig = option(help="training settings (but the learning rate)",
                                factory=tune_training)
    lr: dict[str, float] = option(help="learning rate per method (default: the method's)", factory=dict, cli=False)
    max_test_examples: int | None = option(500, "evaluate on a seeded random subset of at most N test examples "
                                                "(none: all)", check=positive_count, nullable=True)
    eval_batch_size: int = option(32, "examples per evaluation batch", check=positive_count)
    zero_shot: bool = option(False, "also score the frozen backbone and the initial theta per entry (off: the "
                                    "same for every method)", cli=False)
    batched: int = option(1, "train up to N tasks of one method and seed in one pass, one forward pass for all "
                             "their batches (each task its own theta, optimiser, selection and early stopping: the "
                             "same entries as one at a time); fine-tuning runs one at a time", check=at_least(1),
                          runtime=True)

    def check(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; expected one of {', '.join(METHODS)}")
        unknown = sorted(set(self.lr) - set(self.methods))
        if unknown:
            raise ConfigError(f"--lr {unknown[0]}=...: {unknown[0]} is not among the bank's methods "
                              f"({', '.join(self.methods)})")
        if self.train.lr is not None:  # not used: every entry trains at its method's rate
            self.train = self.train.replace(lr=None)
        self.lr = {m: float(self.lr.get(m, default_lr(m))) for m in self.methods}
        for method, lr in self.lr.items():
            if not (lr > 0 and math.isfinite(lr)):
                raise ConfigError(f"--lr {method}={lr}: expected a positive, finite learning rate")
            self.train.replace(lr=lr)  # every entry's settings are checked before any is trained

    def tune_config(self, task: str, method: str, seed: int, backbone: Backbone) -> TuneConfig:
        train = self.train.replace(seed=seed, lr=self.lr[method])
        return TuneConfig(
            task=task, method=method, data_dir=self.data_dir, method_options=dict(self.methods[method]),
            backbone=backbone.name, k=self.k, data_seed=self.data_seed, resample=self.resample,
            resample_k=self.resample_k, pool_test=self.pool_test, seed=seed, train=train,
            eval_batch_size=self.eval_batch_size, max_test_examples=self.max_test_examples, zero_shot=self.zero_shot,
        )

    def test_split(self, task: str) -> tuple[Task, list[Example]]:
        """A task and the test examples its entries are scored on."""
        loaded = load_task_as(self, name=task)
        return loaded, capped_test_split(loaded, self.max_test_examples, TuneConfig.test_sample_seed)


@dataclass
class BankEntry:
    task: str
    method: str
    seed: int
    theta: torch.Tensor
    theta_init: torch.Tensor
    scores: dict[str, Any]
    run_dir: Path

    @property
    def delta(self) -> torch.Tensor:
        """What training changed: ``theta - theta_init`` (the vector subspaces are fitted to)."""
        return self.theta - self.theta_init


#: What to do when a bank's data changed since its entries were made (a bank never mixes two versions of a task).
_OTHER_DATA = "build a bank of the current data in another folder, or use the data the bank was built on"


def entry_dir(root: Path, task: str, method: str, seed: int) -> Path:
    return root / task / method / f"s{seed}"


def shard() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed's when it is initialised, else what a launcher
    (torchrun, accelerate) put in ``RANK`` / ``WORLD_SIZE``, else (0, 1)."""
    from ..parallel import group, launched_world

    rank, world = group()
    return (rank, world) if world > 1 else launched_world()


def passes(entries: Sequence[tuple[str, str, int]], k: int) -> list[list[tuple[str, str, int]]]:
    """The entries in groups trained in one pass: up to ``k`` tasks of one method and seed (in the entries'
    order); methods without per-example theta (fine-tuning) one entry at a time."""
    groups: dict[tuple[str, int], list[tuple[str, str, int]]] = {}
    for entry in entries:
        groups.setdefault((entry[1], entry[2]), []).append(entry)
    out = []
    for (method, _), members in groups.items():
        size = k if METHODS[method].supports_per_example else 1
        out += [members[i:i + size] for i in range(0, len(members), size)]
    return out


def _barrier(world: int) -> None:
    """Wait for every rank (a gloo group is started from the launcher's environment when none is running)."""
    import torch.distributed as dist

    if world == 1:
        return
    started = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        started = True
    try:
        dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()


def build_bank(
    root: str | Path,
    spec: BankSpec,
    backbone: Backbone,
    *,
    report: Callable[[str, str, int, dict], None] | None = None,
    rank: int | None = None,
    world: int | None = None,
) -> "Bank":
    """Tune every (task, method, seed) of ``spec`` into ``root`` (resuming and verifying finished entries).

    One process: it holds the bank's lock, so a second process on the same bank is refused at once. Several
    processes (``torchrun --nproc-per-node N -m taskspace bank ...``; ``rank`` and ``world`` default to the
    launcher's): entry i of the list in (task, method, seed) order goes to rank ``i % world``; each rank writes its
    own entries (each under its own entry lock), then every rank waits for the others and rank 0 reads and checks
    the whole bank. A rank that dies leaves only finished entries (and resumable unfinished ones): running the same
    command again completes the rest."""
    root = Path(root)
    if rank is None or world is None:
        rank, world = shard()
    record = {"format": "taskspace.bank/1", "taskspace_version": __version__, "spec": spec.identity(),
              "backbone": {"name": backbone.name, "fingerprint": backbone.fingerprint(),
                           "settings": scoring_settings(backbone)},
              "data": {task: split_digests(*spec.test_split(task)) for task in spec.tasks}}
    if (root / BANK_FILE).is_file():
        saved = read_json(root / BANK_FILE)
        mine = dict(record["backbone"])
        if "settings" not in saved.get("backbone", {}):  # a bank written before the settings were recorded
            mine.pop("settings")
        else:  # a bank written before templates was tuned on the plain form; before truncation: not compared
            saved["backbone"]["settings"].setdefault("template", "plain")
            saved["backbone"]["settings"].setdefault("truncation", mine["settings"]["truncation"])
        by_content = "data" in saved  # else a bank written before digests: its data folder is compared
        if (compared(saved.get("spec"), by_content) != compared(record["spec"], by_content)
                or saved.get("backbone") != mine):
            raise ConfigError(
                f"{root / BANK_FILE} describes another bank (different tasks, methods, settings, backbone or "
                "backbone options such as --decode); use another folder"
            )
        if by_content:
            check_same_data(saved["data"], record["data"], root, what="entries", fix=_OTHER_DATA)
    from contextlib import nullcontext

    from tqdm.auto import tqdm

    entries = [(task, method, seed) for task in spec.tasks for method in spec.methods for seed in spec.seeds]
    mine = entries[rank::world]
    # one process: the bank's lock; several: each entry's own lock (tune takes it), the bank file written
    # atomically by whichever rank comes first (its content is the same for all)
    with exclusive(root) if world == 1 else nullcontext():
        root.mkdir(parents=True, exist_ok=True)
        if not (root / BANK_FILE).is_file():
            write_json(root / BANK_FILE, record)
        # entries done / left and the time per entry (finished entries are only verified, and count as done)
        desc = "bank" if world == 1 else f"bank (rank {rank}/{world})"
        with tqdm(total=len(mine), desc=desc, unit="entry", disable=not spec.train.progress) as bar:
            for group in passes(mine, spec.batched):
                bar.set_postfix_str(", ".join(f"{t} {m} s{s}" for t, m, s in group))
                configs = [spec.tune_config(t, m, s, backbone) for t, m, s in group]
                dirs = [entry_dir(root, t, m, s) for t, m, s in group]
                results = (tune_together(configs, dirs, backbone=backbone) if len(group) > 1 else
                           [tune(configs[0], dirs[0], backbone=backbone)])
                for (task, method, seed), result in zip(group, results):
                    bar.update()
                    if report is not None:
                        report(task, method, seed, result.scores)
    _barrier(world)
    bank = Bank(root, backbone)
    if rank == 0 and world > 1:  # every entry, whichever rank wrote it, read and checked against the spec
        for task, method, seed in entries:
            bank.entry(task, method, seed)
    return bank


class Bank:
    """A finished bank, read and checked against ``backbone``."""

    def __init__(self, root: str | Path, backbone: Backbone):
        self.root = Path(root)
        meta = read_json(self.root / BANK_FILE)
        self.spec = BankSpec.from_dict(meta["spec"])
        fingerprint = meta["backbone"]["fingerprint"]
        if fingerprint != backbone.fingerprint():
            raise ConfigError(
                f"{self.root}: the bank was tuned on backbone {meta['backbone']['name']!r} (weights sha256 "
                f"{fingerprint[:12]}...), not on {backbone.name!r} ({backbone.fingerprint()[:12]}...)"
            )
        template = recorded_settings(meta["backbone"])["template"]
        if template != backbone.template:
            raise ConfigError(f"{self.root}: the bank was tuned with the {template} input template; this backbone "
                              f"uses {backbone.template} (load it with --backbone-opt template={template})")
        self.backbone = backbone
        #: ``{task: {split: digest}}`` of the data the entries were made on; None for a bank made before they were
        #: recorded.
        self.data: dict[str, dict[str, str]] | None = meta.get("data")
        self._methods: dict[str, DeltaMethod] = {}

    def check_data(self, now: dict[str, dict[str, str]]) -> None:
        """Refuse to combine the bank's entries with data other than they were made on (``now``: ``{task: {split:
        digest}}`` as :func:`taskspace.runs.split_digests`; only the splits given are compared). A bank made before
        the digests were recorded cannot be checked."""
        if self.data is not None:
            check_same_data(self.data, now, self.root, what="entries", fix=_OTHER_DATA)

    def method(self, name: str) -> DeltaMethod:
        if name not in self.spec.methods:
            raise ConfigError(f"{self.root}: the bank has no method {name!r}; it has {list(self.spec.methods)}")
        if name not in self._methods:
            self._methods[name] = build_method(name, self.backbone, self.spec.methods[name])
        return self._methods[name]

    def _finished(self, task: str, method: str, seed: int | None) -> tuple[int, Path]:
        """The seed and run folder of a finished entry; an error naming it when it is unknown or unfinished."""
        seed = self.spec.seeds[0] if seed is None else seed
        if task not in self.spec.tasks or seed not in self.spec.seeds:
            raise ConfigError(f"{self.root}: the bank has no entry for task {task!r}, seed {seed}")
        self.method(method)  # an unknown method is refused here
        run = entry_dir(self.root, task, method, seed)
        if not (run / "scores.json").is_file():
            raise DataError(
                f"bank entry ({task}, {method}, seed {seed}) is missing or unfinished; run `taskspace bank` with "
                "the same settings again to complete it", run,
            )
        return seed, run

    def entry(self, task: str, method: str, seed: int | None = None) -> BankEntry:
        seed, run = self._finished(task, method, seed)
        theta, theta_init, _ = load_delta(run / "theta", self.method(method))
        return BankEntry(task, method, seed, theta, theta_init, read_json(run / "scores.json"), run)

    def entries(self, tasks: Iterable[str], method: str, seed: int | None = None) -> list[BankEntry]:
        return [self.entry(t, method, seed) for t in tasks]

    def stacked(self, tasks: Sequence[str], method: str, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(``theta`` rows ``[T, D]`` of ``tasks``, their common ``theta_init`` ``[D]``).

        All entries of a method must share theta_init (they are tuned from the same initialisation seed);
        otherwise there is no common anchor and this raises.
        """
        entries = self.entries(tasks, method, seed)
        if not entries:
            raise ConfigError(f"{self.root}: no tasks named, so there are no {method} solutions to stack")
        init = entries[0].theta_init
        for e in entries[1:]:
            if not torch.equal(e.theta_init, init):
                raise DataError(
                    f"bank entries of {method} for {entries[0].task!r} and {e.task!r} start from different "
                    "initialisations, so they have no common anchor", self.root,
                )
        return torch.stack([e.theta for e in entries]), init

    def score(self, task: str, method: str, split: str = "test", seed: int | None = None) -> float | None:
        """An entry's saved score (its theta is not read: the bank verified it when the entry was built)."""
        return read_json(self._finished(task, method, seed)[1] / "scores.json").get(split)
