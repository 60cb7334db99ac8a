"""``pool_test``: a task without a test file scored on its held-out pool (the other seeds' train and dev examples
that are not in its own train or dev), from ``load_task`` through tune, bank and subspace-tune to the recipe runner,
whose unseen tasks all get a test score."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskspace.errors import ConfigError
from taskspace.subspace import BankSpec, SubspaceTuneConfig
from taskspace.tasks import load_task, pool_examples
from taskspace.tasks.sampling import example_key
from taskspace.tuning import MultiTuneConfig, TuneConfig

ROOT = Path(__file__).resolve().parents[1]
NO_TEST = "glue-qqp"  # a catalog task whose shared data hold no test file
TRAIN_NO_TEST = "yelp_polarity"  # another, trained on (a challenge task: no frozen or IST test score, no crash)


def keys(examples) -> set:
    return {example_key(e) for e in examples}


def test_a_task_without_a_test_file_is_tested_on_its_held_out_pool(data_dir: Path) -> None:
    plain = load_task(NO_TEST, data_dir)
    assert plain.test == [] and not plain.test_held_out
    task = load_task(NO_TEST, data_dir, pool_test=True)
    pool = pool_examples(data_dir, NO_TEST)
    # the pool less this train and dev, in the pool's order: held out from them, and nothing else left out
    assert keys(task.train) | keys(task.dev) <= keys(pool)
    assert [example_key(e) for e in task.test] == [example_key(e) for e in pool
                                                    if example_key(e) not in keys(task.train + task.dev)]
    assert len(task.test) == len(pool) - len(task.train) - len(task.dev) > 0
    assert (task.train, task.dev) == (plain.train, plain.dev)
    assert task.test_held_out and task.sources["test"].startswith("held out, as there is no test file: the ")
    assert "not its test set" in task.sources["test"]
    # another data seed holds out another pool: its own train and dev are left out
    other = load_task(NO_TEST, data_dir, seed=13, pool_test=True)
    assert not keys(other.test) & keys(other.train + other.dev) and keys(other.test) != keys(task.test)


def test_multiple_choice_inputs_are_compared_before_their_choices_are_written(data_dir: Path) -> None:
    """quail's inputs get their answer choices appended when loaded; the pool is compared before that, so its own
    train and dev are left out of the held-out pool (after, nothing would match and all 159 would stay)."""
    task = load_task("quail", data_dir, pool_test=True)
    pool = pool_examples(data_dir, "quail")
    assert len(task.test) == len(pool) - 32
    assert all(" (A) " in e.input for e in task.test + task.train)  # every split written in CrossFit's form
    assert not {e.input for e in task.test} & {e.input for e in task.train + task.dev}


def test_a_task_with_a_test_file_keeps_it_and_resampling_holds_out_its_own_draw(data_dir: Path) -> None:
    plain, pooled = load_task("glue-sst2", data_dir), load_task("glue-sst2", data_dir, pool_test=True)
    assert pooled.test == plain.test and pooled.sources == plain.sources and not pooled.test_held_out
    drawn = load_task(NO_TEST, data_dir, seed=7, resample=True, resample_k=4, pool_test=True)
    assert len(drawn.train) == len(drawn.dev) == 8  # 4 per label
    assert len(drawn.test) == len(pool_examples(data_dir, NO_TEST)) - 16
    assert not keys(drawn.test) & keys(drawn.train + drawn.dev)


def test_your_own_data_is_refused(tmp_path: Path) -> None:
    own = tmp_path / "reviews"
    own.mkdir()
    for split in ("train", "dev"):
        (own / f"{split}.csv").write_text("input,output\ngood,positive\nbad,negative\n")
    with pytest.raises(ConfigError, match="--pool-test: task 'reviews' is your own data"):
        load_task("reviews", tmp_path, pool_test=True)


def test_runs_made_without_it_keep_their_identity() -> None:
    """The option at its default is left out of a run's identity (runs made before it keep their names and are
    found again); set, it is part of it."""
    for config in (TuneConfig(task="t", method="prompt", data_dir="d"),
                   SubspaceTuneConfig(task="t", method="prompt", data_dir="d"),
                   BankSpec(tasks=["t"], methods={"prompt": {}}, data_dir="d"),
                   MultiTuneConfig(tasks=["t"], method="prompt", data_dir="d")):
        assert "pool_test" not in config.identity()
        assert config.replace(pool_test=True).identity()["pool_test"] is True


@pytest.mark.slow
def test_tune_bank_and_subspace_tune_score_the_held_out_pool(tmp_path, shared_dir, data_dir, capsys):
    from taskspace.cli import main

    llama = f"{shared_dir}/models/stories260K"
    common = ["--backbone", llama, "--decode", "rank", "--data-dir", str(data_dir), "--steps", "2",
              "--eval-every", "2", "--max-test-examples", "5", "--no-progress"]
    runs = tmp_path / "runs"
    assert main(["tune", "--task", NO_TEST, "--method", "prompt", "--out", str(runs), "--run-name", "none",
                 *common]) == 0
    assert main(["tune", "--task", NO_TEST, "--method", "prompt", "--out", str(runs), "--run-name", "pooled",
                 "--pool-test", *common]) == 0
    out = capsys.readouterr().out.split("task glue-qqp | ")
    assert "no test file: scored on dev only (--pool-test scores the held-out pool" in out[1]
    assert "test examples: 5 of 128 of the held-out pool (no test file)" in out[2]
    none, pooled = (json.loads((runs / name / "scores.json").read_text()) for name in ("none", "pooled"))
    assert none["test"] is None and none["n_test"] == 0
    assert pooled["test"] is not None and pooled["n_test"] == 5
    config = json.loads((runs / "pooled" / "config.json").read_text())
    assert config["run"]["pool_test"] is True and "pool_test" not in json.loads(
        (runs / "none" / "config.json").read_text())["run"]
    # re-evaluating the finished run scores the same held-out examples
    assert main(["evaluate", str(runs / "pooled"), "--data-dir", str(data_dir)]) == 0  # exit 1 if scores differ

    bank = tmp_path / "bank"
    assert main(["bank", "--out", str(bank), "--methods", "prompt", "--tasks", "glue-sst2", NO_TEST,
                 "--pool-test", *common]) == 0
    entry = bank / NO_TEST / "prompt" / "s0"
    assert json.loads((entry / "scores.json").read_text())["n_test"] == 5
    assert json.loads((entry / "config.json").read_text())["run"]["pool_test"] is True

    space = tmp_path / "space"
    assert main(["fit-subspace", "--recipe", "random-ae", "--d", "2", "--backbone", llama, "--decode", "rank",
                 "--out", str(space)]) == 0
    assert main(["subspace-tune", "--subspace", str(space), "--task", NO_TEST, "--out", str(tmp_path / "ist"),
                 "--pool-test", *common[4:]]) == 0
    assert json.loads((tmp_path / "ist" / "scores.json").read_text())["n_test"] == 5

    # one theta on several tasks: the task without a test file is scored on its held-out pool too
    assert main(["multitask", "--tasks", "glue-sst2", NO_TEST, "--method", "prompt", "--out",
                 str(tmp_path / "multi"), "--pool-test", *common]) == 0
    multi = json.loads((tmp_path / "multi" / "scores.json").read_text())["tasks"]
    assert multi[NO_TEST]["n_test"] == 5 and multi[NO_TEST]["test"] is not None
    assert json.loads((tmp_path / "multi" / "config.json").read_text())["data"][NO_TEST]["sources"]["test"].startswith(
        "held out")


TINY = """
backbone: {llama}
decode: rank
data_seed: 100
max_test_examples: 4
pool_test: {pool}
seeds: [0, 1]
other_data_seed: 13
train_tasks: [{train_no_test}, glue-sst2, ag_news]
unseen_tasks: [{no_test}, rotten_tomatoes]
bank:
  methods: {{prompt: {{n_tokens: 2}}}}
  train: {{steps: 1, batch_size: 2, eval_every: 1}}
ipt:
  method: prompt
  dims: [2]
  random_ae: false
  challenge_tasks: 1
  msf: {{hidden: 4, train: {{steps: 1, batch_size: 2, eval_every: 1}}}}
ist:
  train: {{steps: 1, batch_size: 2, lr: 0.1, eval_every: 1}}
"""


@pytest.mark.slow
def test_the_recipe_scores_every_unseen_task(tmp_path, shared_dir, data_dir):
    """With ``pool_test: true`` the unseen task without a test file gets a test score from the reference, the frozen
    backbone and IST alike, on the same examples; the report marks it; the training tasks' runs are as before."""
    config, out = tmp_path / "tiny.yaml", tmp_path / "out"
    config.write_text(TINY.format(llama=f"{shared_dir}/models/stories260K", pool="true", no_test=NO_TEST,
                                  train_no_test=TRAIN_NO_TEST))
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "smol.py"), str(config), "--out", str(out),
                           "--report", str(out / "report.md"), "--data-dir", str(data_dir), "--no-png"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    scores = results["scores"]
    ist = out / "ipt-d2" / "runs" / f"{NO_TEST}-d100-prompt-s1"
    reference = out / "reference" / NO_TEST / "prompt" / "s1"
    for key, run in (("reference/prompt", reference), ("ipt/d2", ist)):
        recorded = json.loads((run / "scores.json").read_text())
        assert scores[key][NO_TEST]["1"] == recorded["test"] is not None and recorded["n_test"] == 4
        config_json = json.loads((run / "config.json").read_text())
        assert config_json["run"]["pool_test"] is True
    # the reference and IST were scored on the same held-out examples
    assert (json.loads((reference / "config.json").read_text())["data_digest"][NO_TEST]["test"]
            == json.loads((ist / "config.json").read_text())["data_digest"][NO_TEST]["test"])
    assert results["frozen"][NO_TEST] is not None
    # a challenge task without a test file: its runs score dev only, and the frozen model is not scored on nothing
    assert TRAIN_NO_TEST not in results["frozen"] and "glue-sst2" not in results["frozen"]
    assert {label: scores[f"ipt/d2/{label}"][TRAIN_NO_TEST]["0"] for label in ("same", "other")} == {
        "same": None, "other": None}
    assert results["setting"]["pool_tested"] == [NO_TEST]
    bank_entry = json.loads((out / "bank" / "glue-sst2" / "prompt" / "s0" / "config.json").read_text())
    assert "pool_test" not in bank_entry["run"]
    report = (out / "report.md").read_text()
    assert f"| {NO_TEST} † |" in report and "† No test file in the data: scored on its held-out pool" in report
    assert "| rotten_tomatoes |" in report
    # the card of a subspace shipped from the run marks it too
    import yaml

    from test_recipes import _recipes

    card = "\n".join(_recipes("ship_card").unseen_lines(yaml.safe_load(config.read_text()), results, "ipt/d2",
                                                         "prompt", 2, 2))
    assert f"| {NO_TEST} † |" in card and "| rotten_tomatoes |" in card and "† No test file in the data" in card

    # a recipe whose pool_test is not true or false is refused in one line
    config.write_text(TINY.format(llama="x", pool="yes please", no_test=NO_TEST,
                                  train_no_test=TRAIN_NO_TEST))
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "smol.py"), str(config), "--out",
                           str(tmp_path / "bad"), "--report", str(tmp_path / "bad.md"), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "pool_test: 'yes please': expected true or false" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_tasks_names_the_tasks_without_a_test_file(data_dir: Path, capsys) -> None:
    from taskspace.cli import main
    from taskspace.tasks import CATALOG
    from taskspace.tasks.files import find_test_file

    assert main(["tasks", "--data-dir", str(data_dir)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    expected = sorted(t for t in CATALOG if find_test_file(data_dir, t, 16, 100) is None)
    assert NO_TEST in expected and last == (
        f"{len(expected)} without a test file (a run scores dev only; --pool-test scores the held-out pool of the "
        f"other seeds' files): {', '.join(expected)}")
    # only the tasks listed
    assert main(["tasks", "--data-dir", str(data_dir), "--type", "sentiment"]) == 0
    sentiment = [t for t in expected if CATALOG[t].type == "sentiment"]
    assert sentiment and capsys.readouterr().out.strip().splitlines()[-1].endswith(": " + ", ".join(sentiment))
    assert main(["tasks", "--data-dir", str(data_dir), "--type", "NLI"]) == 0
    assert "without a test file" not in capsys.readouterr().out
