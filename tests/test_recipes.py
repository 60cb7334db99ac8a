"""recipes/smol.py, the runner of the SmolLM2-scale reproduction, end to end on a tiny setting: every stage runs,
every number in the report comes from the recorded runs, and a second invocation reuses everything."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskspace.analysis import mean, mean_interval

ROOT = Path(__file__).resolve().parents[1]

TINY = """
backbone: {llama}
decode: rank
data_seed: 100
other_data_seed: 13
max_test_examples: 6
seeds: [0, 1]
train_tasks: [glue-sst2, ag_news]
unseen_tasks: [superglue-cb, rotten_tomatoes]
bank:
  methods: {{prompt: {{n_tokens: 2}}, adapter: {{r: 2}}, lora: {{r: 2}}}}
  train: {{steps: 2, batch_size: 2, eval_every: 2}}
ipt:
  method: prompt
  dims: [2, 3]
  msf: {{hidden: 4, train: {{steps: 2, batch_size: 2, eval_every: 2}}}}
  challenge_tasks: 1
  linear: [1]
ist:
  train: {{steps: 2, batch_size: 2, lr: 0.1, eval_every: 2}}
fastfood:
  dims: [2]
  seeds: [0]
  tasks: [rotten_tomatoes]
  train: {{steps: 2, batch_size: 2, lr: 0.1, eval_every: 2}}
udt:
  fit: {{methods: [adapter, lora, prompt], d: 3, train: {{steps: 2, batch_size: 2, eval_every: 2}}}}
  subspace_train: {{steps: 2, batch_size: 2, lr: 0.05, eval_every: 2}}
  landscape: {{task: rotten_tomatoes, seed: 1, span: 1, step: 1}}
analyses:
  d: 2
  d_sweep: {{dims: [4], tasks: [rotten_tomatoes], challenge_tasks: 1}}
  stability: {{tasks: [rotten_tomatoes], finetune: {{steps: 2}}}}
  multitask: {{train: {{steps: 2, batch_size: 2, eval_every: 2}}}}
  task_fractions: [0.5]
  exclude_types: [sentiment]
  data_scale: {{k: [4], tasks: [rotten_tomatoes], train_tasks: [glue-sst2, ag_news]}}
"""


def _run(config: Path, out: Path, data_dir: Path, *extra: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "smol.py"), str(config), "--out", str(out),
                           "--report", str(out / "report.md"), "--data-dir", str(data_dir), *extra],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_smol_runner_end_to_end(tmp_path, shared_dir, data_dir):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(llama=f"{shared_dir}/models/stories260K"))
    out = tmp_path / "out"
    _run(config, out, data_dir)
    results = json.loads((out / "results.json").read_text())
    scores = results["scores"]
    # every recorded score is the run's own
    run = out / "ipt-d2" / "runs" / "rotten_tomatoes-d100-prompt-s1"
    assert scores["ipt/d2"]["rotten_tomatoes"]["1"] == json.loads((run / "scores.json").read_text())["test"]
    assert set(scores["fastfood/d2"]) == {"rotten_tomatoes"} and set(scores["fastfood/d2"]["rotten_tomatoes"]) == {"0"}
    assert set(scores["ipt/d3/other"]) == {"glue-sst2"}
    udt = ("adapter", "lora", "prompt")
    assert {k for k in scores if k.startswith("transfer/")} == {f"transfer/{a}/{b}" for a in udt for b in udt}
    assert all(scores[f"transfer/{m}/{m}"] == scores[f"udt/{m}"] for m in udt)  # the diagonal: each run's own
    # the landscape's origin is the adapter's own solution: its score there is that run's dev score
    land = results["landscape"]
    assert land["axis"] == [-1.0, 0.0, 1.0] and land["order"] == list(udt)
    run = out / "udt" / "runs" / "rotten_tomatoes-d100-adapter-s1"
    assert land["origin_score"]["adapter"] == pytest.approx(json.loads((run / "scores.json").read_text())["dev"])
    # the headline's stages (the first d, its random baseline, the linear subspace) before the other d
    order = list(json.loads((out / "stages.json").read_text()))
    assert (order.index("IPT IST d=2, unseen tasks") < order.index("random auto-encoder d=2, unseen tasks")
            < order.index("linear subspace d=1, unseen tasks") < order.index("IPT IST d=3, unseen tasks"))
    report = (out / "report.md").read_text()
    for heading in ("## Relative performance on the unseen tasks", "## Learnt vs random subspace",
                    "## UDT transfer", "## Stage times", "IPT IST d=3, training tasks, other data"):
        assert heading in report
    # the report's E_rel of UDT's LoRA optimisation: per seed, the mean over tasks of score / mean reference
    refs = {t: mean(list(scores["reference/lora"][t].values())) for t in ("superglue-cb", "rotten_tomatoes")}
    per_seed = [mean([scores["udt/lora"][t][s] / refs[t] for t in refs if refs[t] > 0]) for s in ("0", "1")]
    centre, half, _ = mean_interval(per_seed)
    cell = f"{100 * centre:.1f}" + ("" if half is None else f" ± {100 * half:.1f}")
    assert f"| UDT subspace optimisation, lora | {cell} |" in report
    # the same numbers as a CSV, and the figures beside the report
    table = {row["key"]: row for row in csv.DictReader((out / "report.csv").open())}
    assert float(table["udt/lora"]["e_rel"]) == pytest.approx(centre, abs=1e-12)
    assert set(table) >= {"ipt/d2", "ipt/d3", "random-ae/d2", "random-ae/d3", "fastfood/d2", "linear/d1", "frozen",
                          "reference/prompt"}
    # the seeds' spread: the mean over tasks of each task's standard deviation over the seeds; the reference's own too
    for key in ("ipt/d2", "reference/prompt"):
        spread = mean([statistics.stdev(scores[key][t].values()) for t in refs])
        assert float(table[key]["spread"]) == pytest.approx(spread, abs=1e-12)
    assert float(table["reference/prompt"]["e_rel"]) == pytest.approx(1.0)  # its seeds against their own mean
    # the linear subspace of the same bank (two solutions: one direction), IST through it on the unseen tasks, set
    # beside IST at the nearest IPT d
    assert json.loads((out / "linear-d1" / "subspace.json").read_text())["info"]["tasks"] == ["glue-sst2", "ag_news"]
    run = out / "linear-d1" / "runs" / "superglue-cb-d100-prompt-s0"
    assert scores["linear/d1"]["superglue-cb"]["0"] == json.loads((run / "scores.json").read_text())["test"]
    versus = report.split("## Learnt (MSF's auto-encoder) vs linear subspace")[1].split("\n\n")[1].splitlines()
    assert versus[0].startswith("| IPT d | linear d | IPT E_rel % | linear E_rel % |")
    assert versus[2].startswith("| 2 | 1 | ")  # IPT's d nearest to the linear d = 1
    for figure in ("report-d.png", "report-transfer.png", "report-landscape.png"):
        assert (out / figure).stat().st_size > 1000 and f"![{figure}]({figure})" in report

    # IPT's analyses over the same runs
    analyses = results["analyses"]
    # Fig. 3's d sweep: MSF at d = 4 in the headline's folder layout, IST on the chosen task, first seed only
    run = out / "ipt-d4" / "runs" / "rotten_tomatoes-d100-prompt-s0"
    assert scores["sweep/d4"] == {"rotten_tomatoes": {"0": json.loads((run / "scores.json").read_text())["test"]}}
    assert json.loads((out / "ipt-d4" / "subspace.json").read_text())["d"] == 4
    ref = mean(list(scores["reference/prompt"]["rotten_tomatoes"].values()))
    assert f"| 4 | {100 * scores['sweep/d4']['rotten_tomatoes']['0'] / ref:.1f} |" in report
    # ... and the seen-task challenges at every d, the headline's smaller d included (its own ran at d = 3 only)
    for key in ("sweep/d4", "ipt/d2", "ipt/d3"):
        assert set(scores[f"{key}/same"]) == set(scores[f"{key}/other"]) == {"glue-sst2"}
    other = out / "ipt-d2" / "runs" / "glue-sst2-d13-prompt-s0"
    assert scores["ipt/d2/other"]["glue-sst2"]["0"] == json.loads((other / "scores.json").read_text())["test"]
    fig3 = report.split("**Intrinsic dimension (Fig. 3)**")[1].split("\n\n")[1]  # its table
    assert fig3.splitlines()[0].endswith("| training tasks, other data, E_rel to prompt tuning |")
    sweep_row = next(line for line in fig3.splitlines() if line.startswith("| 2 | "))
    bank = scores["bank/prompt"]["glue-sst2"]["0"]
    cell = "–" if not bank > 0 else f"{100 * scores['ipt/d2/other']['glue-sst2']['0'] / bank:.1f}"
    assert sweep_row.split(" | ")[-1].rstrip(" |") == cell  # the last column: other data, E_rel to the bank
    assert "sweep/d4" not in {row["key"] for row in csv.DictReader((out / "report.csv").open())}
    assert analyses["pca"]["points"] == 2 + 2 * 2  # two training codes, two unseen tasks x two seeds
    kinds = {row[0] for row in analyses["stability"]["summary"]}
    assert kinds == {"prompt", "finetune", "ipt d=2 (prompt)", "prompt (initialised from ipt d=2 (prompt))"}
    for seed in ("0", "1"):
        run = out / "analyses" / "from-ist" / f"rotten_tomatoes-s{seed}"
        assert json.loads((run / "config.json").read_text())["run"]["init_from"] == str(
            out / "ipt-d2" / "runs" / f"rotten_tomatoes-d100-prompt-s{seed}" / "theta")
        test = json.loads((run / "scores.json").read_text())["test"]
        assert scores["from-ist/prompt"]["rotten_tomatoes"][seed] == test
    # fine-tuning of the stability runs is the reference of Fig. 3b / 9: E_rel of IST against it, per seed
    ft = {seed: json.loads((out / "analyses" / "finetune" / "rotten_tomatoes" / "finetune" / f"s{seed}" /
                            "scores.json").read_text())["test"] for seed in ("0", "1")}
    assert scores["stability/finetune"]["rotten_tomatoes"] == ft
    centre, half, _ = mean_interval([scores["ipt/d2"]["rotten_tomatoes"][s] / mean(list(ft.values()))
                                     for s in ("0", "1")])
    cell = f"{100 * centre:.1f}" + ("" if half is None else f" ± {100 * half:.1f}")
    assert f"| IPT, d = 2 | {cell} |" in report
    assert "**Against fine-tuning (Fig. 3b, 9)**" in report
    assert set(scores["multitask/prompt"]) == {"glue-sst2", "ag_news"}
    assert analyses["task_fractions"] == {"0.5": ["ag_news"]} or analyses["task_fractions"] == {"0.5": ["glue-sst2"]}
    assert set(scores["excluded/sentiment/d2"]) == {"rotten_tomatoes"}  # the only sentiment task left unseen
    without = json.loads((out / "analyses" / "without-sentiment" / "subspace.json").read_text())
    assert without["info"]["tasks"] == ["ag_news"]
    assert "## IPT's analyses at d = 2" in report
    # Fig. 6's data scale: train and dev resampled at K = 4 per label from the pooled files, for a bank, a
    # reference, MSF and IST of their own
    run = out / "analyses" / "k4" / "ipt-d2" / "runs" / "rotten_tomatoes-d100-prompt-s0"
    ist = json.loads((run / "config.json").read_text())
    assert ist["run"]["resample"] is True and ist["run"]["resample_k"] == 4
    assert ist["data"]["train"] == ist["data"]["dev"] == 8  # 4 per label, two labels
    assert scores["scale/k4/ipt"] == {"rotten_tomatoes": {"0": json.loads((run / "scores.json").read_text())["test"]}}
    ref = json.loads((out / "analyses" / "k4" / "reference" / "rotten_tomatoes" / "prompt" / "s0" /
                      "scores.json").read_text())["test"]
    assert scores["scale/k4/prompt"] == {"rotten_tomatoes": {"0": ref}}
    entry = json.loads((out / "analyses" / "k4" / "bank" / "ag_news" / "prompt" / "s0" / "config.json").read_text())
    assert entry["run"]["resample_k"] == 4 and entry["data"]["train"] == 4 * 4  # ag_news: four labels
    fitted = json.loads((out / "analyses" / "k4" / "ipt-d2" / "subspace.json").read_text())
    assert fitted["info"]["tasks"] == ["glue-sst2", "ag_news"]
    ist_score = scores["scale/k4/ipt"]["rotten_tomatoes"]["0"]
    rel = "–" if not ref > 0 else f"{100 * ist_score / ref:.1f}"
    assert f"| 4 | {100 * ref:.1f} | {100 * ist_score:.1f} | {rel} |" in report
    # the main stages are the files' own 16-shot split over the same training tasks: their row heads the table
    ref16, ist16 = scores["reference/prompt"]["rotten_tomatoes"]["0"], scores["ipt/d2"]["rotten_tomatoes"]["0"]
    rel16 = "–" if not ref16 > 0 else f"{100 * ist16 / ref16:.1f}"
    assert f"| 16, the files of data seed 100 | {100 * ref16:.1f} | {100 * ist16:.1f} | {rel16} |" in report
    for figure in ("report-pca.png", "report-task-types.png", "report-task-fraction.png", "report-d-sweep.png",
                   "report-data-scale.png"):
        assert (out / figure).stat().st_size > 1000 and f"![{figure}]({figure})" in report

    # a second invocation trains nothing: every finished piece is verified and reused
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("scores.json")}
    _run(config, out, data_dir)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("scores.json")} == stamps
    assert json.loads((out / "results.json").read_text())["scores"] == scores
    for written in ("report.md", "report-d.png", "report-transfer.png"):
        (out / written).unlink()
    then = time.mktime((2001, 2, 3, 12, 0, 0, 0, 0, -1))  # a report written again keeps the results' date
    os.utime(out / "results.json", (then, then))
    _run(config, out, data_dir, "--report-only", "--no-png")
    assert "Command (from the repository root, 2001-02-03):" in (out / "report.md").read_text()
    assert not (out / "report-d.png").exists() and ".png" not in (out / "report.md").read_text()
    body = (out / "report.md").read_text().split("## Unseen tasks")[1].split("## Stage times")[0]
    assert body == report.split("## Unseen tasks")[1].split("## Stage times")[0]  # stage times add up

    # the same results as one part of a two-part recipe (the other not run yet): its sections one level down
    import argparse

    import yaml

    parts = tmp_path / "parts.yaml"
    part = yaml.safe_load(config.read_text())
    parts.write_text(yaml.safe_dump({"parts": {"out": part, "later": part}}))
    args = argparse.Namespace(config=str(parts), out=str(tmp_path), report=str(tmp_path / "parts.md"),
                              data_dir=str(data_dir))
    _runner().write_report(tmp_path / "parts.md", yaml.safe_load(parts.read_text()), args)
    text = (tmp_path / "parts.md").read_text()
    assert "## out: " in text and "### Relative performance on the unseen tasks" in text
    assert "## later: no results yet" in text
    assert (tmp_path / "parts-out.csv").is_file() and not (tmp_path / "parts-later.csv").exists()


def _runner():
    import importlib.util

    spec = importlib.util.spec_from_file_location("smol_recipe", ROOT / "recipes" / "smol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recipes(name: str):
    """A module of the runner's stages or report (``smol_report.figures``, ...), imported as recipes/smol.py imports
    it (recipes/ on the path)."""
    import importlib

    if str(ROOT / "recipes") not in sys.path:
        sys.path.insert(0, str(ROOT / "recipes"))
    return importlib.import_module(name)


def _refused(argv: list[str], capsys) -> str:
    """What recipes/smol.py prints on stderr for ``argv``, run in this process as its command line runs it (through
    ``run_main``), after checking that it exits with status 2."""
    import signal

    runner = _runner()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGTSTP, signal.SIGCONT)}
    saved = sys.argv
    sys.argv = [str(ROOT / "recipes" / "smol.py"), *argv]
    try:
        with pytest.raises(SystemExit) as stop:
            _recipes("recipe_common").run_main(runner.main)
    finally:
        sys.argv = saved
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.slow
def test_a_bad_recipe_is_refused_in_one_line(tmp_path, data_dir, capsys):
    """A misspelt or missing key, a missing file: one line, exit status 2, nothing written. The first case runs as
    a command (its own process), the others in this process through the same entry point."""
    bad = tmp_path / "bad.yaml"
    good = TINY.format(llama="x")
    for number, (text, expected) in enumerate((("seeds: [0]\n", "the recipe has no 'data_seed'"),
                           (good.replace("hidden: 4", "hiden: 4"), "'hiden'] for MSFConfig; did you mean hidden?"),
                           (good.replace("exclude_types: [sentiment]", "exclude_types: [topic]"),
                            "no unseen task has type 'topic'"),
                           (good.replace("task_fractions: [0.5]", "task_fractions: [50]"),
                            "analyses.task_fractions: 50"),
                           (good.replace("dims: [4]", "dims: [3]"), "analyses.d_sweep.dims: 3 is not a positive"),
                           (good.replace("challenge_tasks: 1", "challenge_tasks: 3"),
                            "analyses.d_sweep.challenge_tasks: 3; expected a whole number of training tasks from 0"),
                           (good.replace("tasks: [rotten_tomatoes], challenge", "tasks: [ag_news], challenge"),
                            "analyses.d_sweep.tasks: ag_news is not an unseen task"),
                           (good.replace("k: [4]", "k: [64]"), "analyses.data_scale.k: 64: task 'glue-sst2'"),
                           (good.replace("tasks: [rotten_tomatoes], train", "tasks: [ag_news], train"),
                            "analyses.data_scale.tasks: ag_news is not an unseen task"),
                           (good.replace("train_tasks: [glue-sst2, ag_news]}", "train_tasks: [glue-sst2, glue-sst2]}"),
                            "analyses.data_scale.train_tasks: glue-sst2 is listed twice"),
                           (good.replace("linear: [1]", "linear: [2]"),
                            "ipt.linear: 2 is not a whole number from 1 to 1, listed once (the bank's 2 training"),
                           (good.replace("linear: [1]", "random_ae: [4]"),
                            "ipt.random_ae: [4]; expected true, false or a list of some of the IPT dims [2, 3]"),
                           (good.replace("seed: 1, span: 1", "seed: 7, span: 1"),
                            "udt.landscape.seed: 7 is not among the recipe's seeds"),
                           (good.replace("seed: 1, span: 1", "seed: 1, spam: 1"), "udt.landscape: unknown key 'spam'; did you mean span?"),
                           ("[1, 2]\n", "expected a mapping of settings"),
                           (None, "cannot read the recipe"))):
        if text is not None:
            bad.write_text(text)
        else:
            bad.unlink()
        argv = [str(bad), "--out", str(tmp_path / "out"), "--report", str(tmp_path / "r.md"), "--data-dir",
                str(data_dir)]
        if number == 0:
            done = subprocess.run([sys.executable, str(ROOT / "recipes" / "smol.py"), *argv], capture_output=True,
                                  text=True, cwd=ROOT)
            assert done.returncode == 2
            err = done.stderr
        else:
            err = _refused(argv, capsys)
        assert expected in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("smol.py: error: ")
        assert not (tmp_path / "out").exists()


def test_a_stage_writes_the_results_it_recorded_even_when_interrupted(tmp_path, shared_dir, data_dir):
    """What a stage recorded is written to results.json when it ends, an interrupted one too (a report written
    from it then shows every finished analysis)."""
    import yaml

    cfg = yaml.safe_load(TINY.format(llama=f"{shared_dir}/models/stories260K"))
    runner = _runner().Runner(cfg, tmp_path, str(data_dir), png=False)

    def analysis():
        runner.results.setdefault("analyses", {})["pca"] = {"points": 3}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.stage("an analysis", analysis)
    assert json.loads((tmp_path / "results.json").read_text())["analyses"] == {"pca": {"points": 3}}
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"an analysis"}


@pytest.mark.slow
def test_one_part_of_a_file_with_parts(tmp_path, shared_dir, data_dir):
    """``--part NAME`` runs that part alone; every part's settings are checked before any trains; an unknown part
    is refused in one line."""
    part = """
    backbone: {llama}
    decode: rank
    data_seed: 100
    max_test_examples: 4
    seeds: [0]
    train_tasks: [glue-sst2]
    unseen_tasks: [rotten_tomatoes]
    bank:
      methods: {{prompt: {{n_tokens: 2}}}}
      train: {{steps: 1, batch_size: 2, eval_every: 1}}
"""
    indented = part.format(llama=f"{shared_dir}/models/stories260K")
    config, out = tmp_path / "parts.yaml", tmp_path / "out"

    def run(text: str, *extra: str):
        config.write_text("parts:\n  a:" + indented + "  b:" + text)
        return subprocess.run([sys.executable, str(ROOT / "recipes" / "smol.py"), str(config), "--out", str(out),
                               "--report", str(tmp_path / "report.md"), "--data-dir", str(data_dir), *extra],
                              capture_output=True, text=True, cwd=ROOT)

    for text, extra, expected in ((indented, ("--part", "c"), "--part c: "),
                                  (indented.replace("eval_every", "eval_evry"), ("--part", "a"), "eval_evry")):
        done = run(text, *extra)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()
    assert "its parts: a, b" in run(indented, "--part", "c").stderr
    done = run(indented, "--part", "a")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "a" / "results.json").is_file() and not (out / "b").exists()
    assert "## b: no results yet" in (tmp_path / "report.md").read_text()


def test_the_templates_recipe_documents_what_it_finished(tmp_path, monkeypatch):
    """recipes/templates.py --report-only trains nothing and writes a table of every (task, method, template), the
    unfinished ones as dashes, then a finished run's test score beside its frozen score."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("templates_recipe", ROOT / "recipes" / "templates.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    doc = tmp_path / "templates.md"
    argv = ["templates.py", "--out", str(tmp_path / "runs"), "--doc", str(doc), "--report-only"]
    monkeypatch.setattr(sys, "argv", argv)
    recipe.main()
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| glue-sst2 | lora |")]
    assert rows == ["| glue-sst2 | lora | – | – | – |"] and "0 runs finished" in doc.read_text()
    finished = tmp_path / "runs" / "glue-sst2" / "lora" / "chat"
    finished.mkdir(parents=True)
    (finished / "scores.json").write_text(json.dumps({"test": 0.82, "zero_shot": {"frozen": {"test": 0.1}}}))
    (finished / "timing.json").write_text(json.dumps({"seconds": 90.0}))
    recipe.main()
    text = doc.read_text()
    assert "| glue-sst2 | lora | – | – | 82.0 (10.0) |" in text and "1 runs finished, 1.5 minutes" in text

