"""One index of the two papers: every table and figure, the command or recipe stage that produces it in
taskspace, the scale it has been run at here, and where its result is (``taskspace reproduce --list``;
``docs/papers.md`` holds the same index, kept equal to :func:`papers_markdown` by a test).

Statuses: ``run`` (the code exists and a result is in the repository), ``code`` (the code exists, no result is
kept yet), ``missing`` (no code yet; the entry says what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("run", "code", "missing")


@dataclass(frozen=True)
class Entry:
    paper: str  # "IPT" or "UDT"
    item: str  # "Fig. 3", "Table 1"
    shows: str
    how: str  # the command or recipe stage
    status: str
    scale: str = ""  # the scale it was run at here
    where: str = ""  # where the result is

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"{self.paper} {self.item}: status {self.status!r}, expected one of {STATUSES}")


_CPU = "MiniLM, 40 training + 12 unseen tasks, 16-shot, CPU"
_REPORT = "reports/cpu-scale.md"
_SMOL = "SmolLM2, 16 training + 4 unseen tasks, 3 seeds, generate protocol, CPU"
_SMOL_REPORT = "reports/smol-scale.md"
_SMOL_UDT = "SmolLM2, 8 training + 2 unseen tasks, 3 seeds, generate protocol, CPU"
_SMOL_IPT = "reports/smol-ipt.md"

ENTRIES: tuple[Entry, ...] = (
    # ---------------------------------------------------------------- IPT
    Entry("IPT", "Table II", "the 120 tasks and the random / non-cls / cls splits",
          "`taskspace tasks --category cls|non-cls`; split files in recipes/splits", "run",
          "101 CrossFit tasks of the shared data", "docs/tasks.md, recipes/splits"),
    Entry("IPT", "Fig. 3", "IST at d in {5, 10, 50, 100, 250} for the three challenges, E_rel to PT and FT",
          "recipes/cpu_scale.py (bank, fit-subspace --recipe ipt, subspace-tune per d); recipes/smol.py "
          "recipes/smol-ipt.yaml (d = 10, 100; the other d: its `analyses.d_sweep`; E_rel to FT: its "
          "`analyses.stability` with fine-tuning); the whole sweep in one sitting: recipes/smol-ipt-sweep.yaml",
          "run", f"d = 10 and 100, against PT only; {_CPU}; {_SMOL}; d = 5, 10, 50, 100, 250, the three challenges "
          "(one training task for the two seen-task ones), E_rel to PT and FT: SmolLM2, 6 training + 2 unseen "
          "tasks, first seed, generate protocol, CPU",
          f"{_REPORT}, {_SMOL_REPORT}, reports/smol-ipt-sweep.md"),
    Entry("IPT", "Fig. 9, 10", "Fig. 3 on the non-cls and cls splits against FT; with BART-large",
          "the Fig. 3 stages with the cls / non-cls split files; --backbone for BART-large", "code"),
    Entry("IPT", "Fig. 3 (in / out of category)", "MSF on cls (non-cls) training tasks, IST on unseen tasks of "
          "either category", "recipes/cpu_scale.py (its per-category IPT stages)", "run", f"d = 100; {_CPU}",
          _REPORT),
    Entry("IPT", "Fig. 4", "E_rel per fine-grained task type, the type excluded from MSF vs included",
          "fit-subspace --exclude-type TYPE, subspace-tune on that type's tasks through it and through the subspace "
          "of all training tasks, then `taskspace task-types --runs IST_RUN... --references PT_RUN...` "
          "(task_types.csv, task_types.png); recipe stage: `analyses.exclude_types` of recipes/smol-ipt.yaml",
          "run", f"sentiment excluded (14 of 16 training tasks), IST on glue-sst2, d = 10; {_SMOL}", _SMOL_IPT),
    Entry("IPT", "Fig. 5", "IPT (Prompt), IPT (Adapter), Random_prompt, Random_all-param (DID)",
          "fit-subspace --recipe ipt --method prompt|adapter; --recipe random-ae; --recipe fastfood", "run",
          f"prompt and the two random baselines, d = 10 / 100; {_CPU}; prompt and the random auto-encoder at "
          f"d = 10 / 100, DID at d = 10: {_SMOL}", f"{_REPORT}, {_SMOL_REPORT}"),
    Entry("IPT", "Fig. 6", "data scale K = 16 / 32 / 64",
          "bank, fit-subspace and subspace-tune with --resample --resample-k K (K per label from the pooled files "
          "of the five seeds; a task whose pool is too small is refused, naming the K that fits); recipe stage: "
          "`analyses.data_scale` of recipes/smol-ipt.yaml and recipes/smol-ipt-scale.yaml", "run",
          "K = 16 and 32 resampled, beside the 16-shot files; SmolLM2, 4 training + 2 unseen tasks, first seed, "
          "generate protocol, CPU (K = 64 fits only tasks without fixed labels here: not run)",
          "reports/smol-ipt-scale.md"),
    Entry("IPT", "Fig. 7", "number of training tasks, 20 ... 100 %",
          "fit-subspace --task-fraction F --subset-seed S (nested seeded subsets), then subspace-tune; recipe "
          "stage: `analyses.task_fractions` of recipes/smol-ipt.yaml", "run",
          f"50 and 100 % of the training tasks, d = 10, first seed; {_SMOL}", _SMOL_IPT),
    Entry("IPT", "Fig. 8", "PCA of the intrinsic vectors (IST solutions and training tasks' codes)",
          "`taskspace pca --runs IST_RUN... [--bank BANK]` (pca.csv, pca.png); recipe stage: `analyses.pca` of "
          "recipes/smol-ipt.yaml", "run", f"d = 10, 16 training codes and 4 unseen tasks x 3 seeds; {_SMOL}",
          _SMOL_IPT),
    Entry("IPT", "Table III", "std of test scores over seeds: FT, PT, IST (d = 10); PT initialised from IST",
          "`taskspace stability --runs RUN...` over runs of several seeds; `tune --init-from IST_RUN/theta`; "
          "recipe stage: `analyses.stability` of recipes/smol-ipt.yaml", "run",
          f"glue-sst2 and lama-trex, 3 seeds, FT 60 steps; {_SMOL}", _SMOL_IPT),
    Entry("IPT", "Table IV", "multi-task PT / FT over all training tasks as a baseline",
          "`taskspace multitask --split FILE --method prompt|finetune` (one theta, per-task scores); recipe "
          "stage: `analyses.multitask` of recipes/smol-ipt.yaml", "run",
          f"one prompt on the 16 training tasks, 240 steps; {_SMOL}", _SMOL_IPT),
    Entry("IPT", "Tables V-VIII", "absolute scores behind the relative ones",
          "the bank and subspace-tune tables of recipes/cpu_scale.py", "run", _CPU, _REPORT),
    Entry("IPT", "MSF reconstruction", "the auto-encoder's reconstructed prompts on the training tasks",
          "fit-subspace --recipe ipt (reconstruction tables)", "run", _CPU, _REPORT),
    Entry("IPT", "planted subspace", "(not in the paper) MSF and IST recover a known 2-d manifold; the random "
          "auto-encoder does not", "tests/test_planted.py", "run", "260K-parameter Llama, 12 + 2 tasks",
          "tests/test_planted.py"),
    # ---------------------------------------------------------------- UDT
    Entry("UDT", "Tables 1, 3", "subspace optimisation, single- and multi-task, relative to the original space",
          "bank; fit-subspace --recipe unified; subspace-tune --bank; recipes/smol.py recipes/smol-udt.yaml", "run",
          f"multi-task, adapter / prefix / LoRA; {_CPU}; {_SMOL_UDT}", f"{_REPORT}, {_SMOL_REPORT}"),
    Entry("UDT", "Tables 2, 4", "subspace solution transfer between methods (and its heat map)",
          "transfer --subspace --runs --bank (transfer.csv, transfer.png); recipes/smol.py recipes/smol-udt.yaml",
          "run", f"multi-task; {_CPU}; {_SMOL_UDT}", f"{_REPORT}, {_SMOL_REPORT}"),
    Entry("UDT", "Table 5", "fine-tuning joined through a trainable Fastfood projection",
          "fit-subspace --recipe fastfood, subspace-tune --method finetune", "code"),
    Entry("UDT", "Tables 6-9", "the simplified variant: one shared vector per task (constructed subspace)",
          "fit-subspace --recipe shared", "code"),
    Entry("UDT", "Tables 10, 11", "absolute scores of every method, single- and multi-task",
          "bank (bank tables); subspace-tune", "run", _CPU, _REPORT),
    Entry("UDT", "Fig. 2", "2-d performance landscape spanned by the three methods' intrinsic vectors",
          "`taskspace landscape --subspace DIR --runs ADAPTER PREFIX LORA --bank BANK` (landscape.png); recipe "
          "stage: `udt.landscape` of recipes/smol-udt.yaml", "run", f"glue-sst2, dev, a 9 x 9 grid; {_SMOL_UDT}",
          _SMOL_REPORT),
    Entry("UDT", "planted subspace", "(not in the paper) the unified fit recovers a known 2-d manifold shared by "
          "prompt and LoRA solutions, in shared coordinates; the untrained projections do not hold it",
          "tests/test_planted.py", "run", "260K-parameter Llama, 12 tasks, 20 unseen points", "tests/test_planted.py"),
    Entry("UDT", "single-task setting", "y = 4 per task; the preliminary y in {4, 8, 16}",
          "recipes/smol-udt-single.yaml (python recipes/smol.py: the paper's pairs at y = 4, and one pair at y = 8 "
          "and 16); or fit-subspace --recipe unified --tasks T --d 4", "code"),
    # ---------------------------------------------------------------- Both
    Entry("both", "backbone", "a backbone on which tuning matters: frozen vs each method",
          "python recipes/backbones.py", "run", "SmolLM2 and MiniLM, up to 12 tasks, 16-shot",
          "docs/backbones.md"),
)


def papers_rows(status: str | None = None) -> list[Entry]:
    return [e for e in ENTRIES if status is None or e.status == status]


def papers_markdown() -> str:
    lines = ["| paper | item | what it shows | how | status | scale here | result |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    def cell(text: str) -> str:
        return (text or "-").replace("|", "\\|")  # a bar inside a cell would end it

    for e in ENTRIES:
        lines.append("| " + " | ".join(cell(c) for c in (e.paper, e.item, e.shows, e.how, e.status, e.scale,
                                                          e.where)) + " |")
    return "\n".join(lines) + "\n"


def papers_text(status: str | None = None) -> str:
    out = []
    for e in papers_rows(status):
        out.append(f"{e.paper} {e.item} [{e.status}]: {e.shows}")
        out.append(f"    how: {e.how}")
        if e.scale:
            out.append(f"    run at: {e.scale}")
        if e.where:
            out.append(f"    result: {e.where}")
    counts = {s: sum(e.status == s for e in ENTRIES) for s in STATUSES}
    out.append(f"{len(ENTRIES)} entries: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(out) + "\n"
