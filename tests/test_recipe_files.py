"""The shipped recipe files of recipes/smol.py and the report's parts, checked without training: every file's settings
are the library's, the catalog recipe holds the split its rule gives, and the report's tables and figures follow
the recorded scores."""

from __future__ import annotations

import csv
import shutil
from types import SimpleNamespace

import pytest

from test_recipes import ROOT, _recipes, _runner


ONE_SEED = ("smol-ipt-scale.yaml", "smol-ipt-sweep.yaml")


@pytest.mark.parametrize("name", ["smol-ipt.yaml", "smol-udt.yaml", "smol-udt-single.yaml", "smol-ipt-scale.yaml",
                                  "smol-ipt-sweep.yaml", "smol-catalog.yaml", "smol-udt-catalog.yaml"])
def test_shipped_recipes_are_valid(name, tmp_path, data_dir):
    """Each shipped recipe (each part, its preset applied) names real, distinct tasks and only fields of the
    library's configs (a misspelt key would otherwise be refused hours into a run). recipes/full-scale.yaml, whose
    task sets are the papers' (beyond the shared data): tests/test_full_scale.py."""
    import yaml

    from taskspace.subspace import BankSpec, MSFConfig, SubspaceTuneConfig, UnifiedConfig
    from taskspace.tasks import CATALOG
    from taskspace.train import TrainConfig

    runner = _runner()
    parts = runner.parts_of(yaml.safe_load((ROOT / "recipes" / name).read_text()), tmp_path)
    for _, cfg, _ in parts:
        tasks = cfg["train_tasks"] + cfg["unseen_tasks"]
        assert all(t in CATALOG for t in tasks) and len(set(tasks)) == len(tasks)
        # the headline compares with intervals over seeds; the one-sitting analysis files run the first seed only
        assert len(cfg["seeds"]) >= 3 or (name in ONE_SEED and cfg["seeds"] == [0])
        b = cfg["bank"]
        BankSpec.from_dict({**b, "train": TrainConfig.from_dict(b["train"])}, tasks=tasks, data_dir="x")
        if "ipt" in cfg:
            runner.stage_config(MSFConfig, cfg["ipt"]["msf"], method="prompt", d=10)
            SubspaceTuneConfig(task="x", method="prompt", data_dir="x", train=TrainConfig.from_dict(cfg["ist"]["train"]),
                               z_std=cfg["ist"].get("z_std", 0.02))
        if "udt" in cfg:
            runner.stage_config(UnifiedConfig, cfg["udt"]["fit"])
            TrainConfig.from_dict(cfg["udt"]["subspace_train"])
        # every stage's settings, the analyses' and landscape's too, and the data the analyses resample
        runner.Runner(cfg, tmp_path / "out", str(data_dir))



def test_the_catalog_recipe_holds_the_split_its_rule_gives():
    """recipes/smol-catalog.yaml: its unseen tasks are every 6th catalog task of each category (sorted by name), its
    training tasks every other catalog task, alternating between the categories; the sizes issue 28 asks for, the
    challenge tasks of both categories, and the linear subspace at the most directions the bank spans."""
    import yaml

    from taskspace.tasks import CATALOG

    cfg = yaml.safe_load((ROOT / "recipes" / "smol-catalog.yaml").read_text())
    train, unseen = _recipes("catalog_split").catalog_split(6)
    assert cfg["train_tasks"] == train and cfg["unseen_tasks"] == unseen
    assert sorted(train + unseen) == sorted(CATALOG) and len(unseen) >= 16 and len(train) >= 60
    for tasks in (unseen, train[:cfg["ipt"]["challenge_tasks"]]):
        assert {CATALOG[t].category for t in tasks} == {"cls", "non-cls"}
    assert [CATALOG[t].category for t in train[:4]] == ["cls", "non-cls", "cls", "non-cls"]
    assert cfg["ipt"]["challenge_tasks"] >= 8 and cfg["seeds"] == [0, 1, 2]
    assert sorted(cfg["ipt"]["dims"]) == [10, 100] and cfg["ipt"]["random_ae"] == [100]
    assert cfg["ipt"]["linear"] == [len(train) - 1]


def test_the_udt_catalog_recipe_holds_the_split_its_rule_gives():
    """recipes/smol-udt-catalog.yaml: its split is UDT's rule of recipes/catalog_split.py, IPT's catalog split thinned
    within each category (every 3rd training task, every 2nd unseen task), so its unseen tasks are unseen in
    smol-catalog.yaml too; the sizes issue 28 asks for, both categories on each side; the equal-size methods of
    smol-udt.yaml; and udt-paper's fit and optimisation settings: N(0, 0.02) projections, Adafactor at a constant
    rate without clipping, trained states only."""
    import yaml

    from taskspace.presets import preset_values
    from taskspace.tasks import CATALOG

    cfg = yaml.safe_load((ROOT / "recipes" / "smol-udt-catalog.yaml").read_text())
    split = _recipes("catalog_split")
    train, unseen = split.udt_split()
    assert cfg["train_tasks"] == train and cfg["unseen_tasks"] == unseen
    assert len(train) >= 24 and len(unseen) >= 8 and not set(train) & set(unseen)
    for tasks in (train, unseen):
        assert {CATALOG[t].category for t in tasks} == {"cls", "non-cls"}
    ipt_train, ipt_unseen = split.catalog_split(6)
    assert set(unseen) <= set(ipt_unseen) and set(train) <= set(ipt_train)
    assert cfg["seeds"] == [0, 1, 2] and "preset" not in cfg
    small = yaml.safe_load((ROOT / "recipes" / "smol-udt.yaml").read_text())
    assert cfg["bank"]["methods"] == small["bank"]["methods"] and cfg["bank"]["train"]["select_initial"] is False
    fit, paper = cfg["udt"]["fit"], preset_values("udt-paper", "fit-subspace", "unified")
    assert fit["methods"] == ["adapter", "prefix", "lora"]
    assert {k: fit[k] for k in paper if k != "train"} == {k: v for k, v in paper.items() if k != "train"}
    for settings in (fit["train"], cfg["udt"]["subspace_train"]):
        assert (settings["optimizer"], settings["schedule"]) == ("adafactor", "constant")
        assert settings["max_grad_norm"] is None and settings["select_initial"] is False


def test_the_dimension_plot_needs_two_dimensions(tmp_path):
    """E_rel against d is drawn for two d or more; with one d the CSV holds its numbers and no one-point figure
    is written."""
    pytest.importorskip("matplotlib")
    figures = _recipes("smol_report.figures")
    scores = {"reference/prompt": {"a": {"0": 0.5, "1": 0.6}}, "ipt/d10": {"a": {"0": 0.4, "1": 0.5}},
              "ipt/d20": {"a": {"0": 0.5, "1": 0.5}}}
    cfg = {"unseen_tasks": ["a"], "seeds": [0, 1], "bank": {"methods": {"prompt": {}}},
           "ipt": {"dims": [10], "random_ae": False}}
    one = figures.write_figures(tmp_path / "one", cfg, {"scores": scores, "frozen": {"a": 0.0}})
    assert one == [tmp_path / "one.csv"] and not (tmp_path / "one-d.png").exists()
    rows = list(csv.DictReader((tmp_path / "one.csv").open()))
    assert float(next(r for r in rows if r["key"] == "ipt/d10")["e_rel"]) == pytest.approx(0.45 / 0.55)
    two = figures.write_figures(tmp_path / "two", {**cfg, "ipt": {"dims": [10, 20], "random_ae": False}},
                                {"scores": scores, "frozen": {"a": 0.0}})
    assert two == [tmp_path / "two.csv", tmp_path / "two-d.png"] and two[1].stat().st_size > 1000


def test_the_report_names_the_papers_d_and_leaves_out_a_spread_of_one_run(tmp_path):
    """The paper's IPT figure (d = 250) says so beside another d; a stability stage with one run per task and
    kind writes a sentence, not a table of empty cells; one seed is "1 seed"."""
    relative, analyses = _recipes("smol_report.relative"), _recipes("smol_report.analyses")
    ipt = {"what": "IPT", "key": "ipt/d10", "d": 10, "paper": 83.0}
    assert relative.paper_cell(ipt) == "83.0 (d = 250)" and relative.paper_cell({**ipt, "d": 250}) == "83.0"
    assert relative.paper_cell({"key": "udt/lora", "d": 100, "paper": 88.7}) == "88.7"
    assert relative.paper_cell({**ipt, "paper": None}) == "–"
    header = ["kind", "mean std", "tasks", "tasks with one run", "runs"]
    scores = {"reference/prompt": {"a": {"0": 0.5}}, "ipt/d10": {"a": {"0": 0.4}},
              "stability/finetune": {"a": {"0": 0.6}}}
    cfg = {"unseen_tasks": ["a"], "train_tasks": ["b"], "seeds": [0], "ipt": {"dims": [10]},
           "analyses": {"stability": {"tasks": ["a"]}}}

    def section(rows):
        results = {"scores": scores, "analyses": {"stability": {"header": header, "summary": rows, "tasks": ["a"]}}}
        return "\n".join(analyses.analyses_lines(cfg, results, tmp_path, tmp_path / "r", png=False)[0])

    one = section([["prompt", None, 0, 1, 1], ["finetune", None, 0, 1, 1]])
    assert "no spread to measure" in one and "| kind |" not in one and "(1 seed;" in one
    two = section([["prompt", 2.5, 1, 0, 2]])
    assert "| kind | mean std |" in two and "no spread" not in two


def test_e_rel_by_category_of_the_unseen_tasks():
    """Each kind of unseen-task run's E_rel over the cls and the non-cls unseen tasks apart (per seed, then the mean
    over the seeds); none for unseen tasks of one category."""
    relative = _recipes("smol_report.relative")
    scores = {"reference/prompt": {"glue-sst2": {"0": 0.8, "1": 0.6}, "trec": {"0": 0.5, "1": 0.5},
                                   "lama-trex": {"0": 0.4, "1": 0.2}},
              "ipt/d10": {"glue-sst2": {"0": 0.7, "1": 0.7}, "trec": {"0": 0.1, "1": 0.3},
                          "lama-trex": {"0": 0.3, "1": 0.3}}}
    cfg = {"unseen_tasks": ["glue-sst2", "trec", "lama-trex"], "seeds": [0, 1], "bank": {"methods": {"prompt": {}}},
           "ipt": {"dims": [10], "random_ae": False}}
    groups, rows = relative.category_cells(cfg, {"scores": scores, "frozen": {}})
    assert groups == {"cls": ["glue-sst2", "trec"], "non-cls": ["lama-trex"]}
    (what, (cls, non_cls)), (ref_what, _) = rows
    assert what.startswith("IPT, IST, unseen tasks, d = 10") and ref_what == "prompt tuning (the reference)"
    per_seed = [(0.7 / 0.7 + 0.1 / 0.5) / 2, (0.7 / 0.7 + 0.3 / 0.5) / 2]  # references: the means over the seeds
    assert cls[0] == pytest.approx(sum(per_seed) / 2) and cls[2] == 2
    assert non_cls[0] == pytest.approx(0.3 / 0.3)
    assert relative.category_cells({**cfg, "unseen_tasks": ["glue-sst2", "trec"]},
                                   {"scores": scores, "frozen": {}}) == ({}, [])


def test_backbones_document_sets_each_score_beside_the_one_before():
    """recipes/backbones.py's document: each cell is the new test score with the earlier one in brackets, the mean
    row compares the same tasks, and a method below the frozen model on a task is counted."""
    backbones = _recipes("backbones")
    results = {"SmolLM2-135M-Instruct": {
        "glue-sst2": {"frozen": {"test": 0.5}, "lora": {"test": 0.8, "decode": "generate"},
                      "prompt": {"test": 0.4, "decode": "generate"}},
        "trec": {"frozen": {"test": 0.0}, "lora": {"test": 0.3, "decode": "generate"}},
    }}
    before = {"source": "the test's", "scores": {"SmolLM2-135M-Instruct": {
        "glue-sst2": {"frozen": 0.0, "lora": 53.0, "prompt": 45.0}, "trec": {"frozen": 0.0, "lora": 12.2}}}}
    text = backbones.render(results, {"command": "c", "machine": "m", "settings": "s"}, before)
    sst2 = next(line for line in text.splitlines() if line.startswith("| glue-sst2"))
    assert "| 50.0 (0.0) |" in sst2 and "| 40.0 (45.0) |" in sst2 and "| 80.0 (53.0) |" in sst2
    mean = next(line for line in text.splitlines() if line.startswith("| mean test score"))
    assert "| 55.0 (32.6) |" in mean  # lora: (80 + 30) / 2 against (53.0 + 12.2) / 2
    below = next(line for line in text.splitlines() if line.startswith("| tasks below the frozen model"))
    assert "| 1 of 1 |" in below and "| 0 of 2 |" in below
    # the committed earlier numbers are the document's before this round
    committed = backbones.read_json(backbones.BEFORE)["scores"]["SmolLM2-135M-Instruct"]
    assert len(committed) == 12 and committed["ag_news"]["lora"] == 26.9


def test_backbones_trains_with_tunes_budget():
    """recipes/backbones.py regenerates the document under tune's defaults (``taskspace methods``), not under
    TrainConfig's own; what the command line gives replaces them."""
    from taskspace.tuning import TUNE_BUDGET

    backbones = _recipes("backbones")
    budget = backbones.training_budget(SimpleNamespace(steps=None, batch_size=None, eval_every=None))
    assert {k: getattr(budget, k) for k in TUNE_BUDGET} == TUNE_BUDGET and budget.lr is None
    assert budget.patience is not None  # early stopping, as tune
    short = backbones.training_budget(SimpleNamespace(steps=60, batch_size=4, eval_every=None))
    assert (short.steps, short.batch_size, short.eval_every, short.patience) == (60, 4, budget.eval_every,
                                                                                 budget.patience)


def test_budget_document_chooses_on_dev_breaks_ties_by_length_and_reads_patience():
    """recipes/budget.py: early stopping replayed on a dev curve as train() counts it, the configuration chosen on
    dev with a tie (within 2 points) going to the shorter template, and the smallest patience that loses nothing."""
    budget = _recipes("budget")
    curve = [(0, 0.0), (25, 0.5), (50, 0.5), (75, 0.5), (100, 0.6), (125, 0.6), (150, 0.5)]
    assert budget.with_patience(curve, 2) == (0.5, 75)  # two evaluations without a better score: stop
    assert budget.with_patience(curve, 3) == (0.6, 150)
    assert budget.with_patience([(0, 0.3), (25, 0.1), (50, 0.2)], 1) == (0.3, 50)  # step 0 kept when strictly better

    def run(dev, test):
        return {"dev": dev, "test": test, "best_step": 100, "curve": curve, "seconds": 60}

    results = {}
    for task in budget.TASKS:
        results[("prompt", "chat", "lr 0.3", task)] = run(0.60, 0.5)
        results[("prompt", "boundary", "lr 0.3", task)] = run(0.59, 0.6)
        results[("prompt", "boundary", "lr 0.03", task)] = run(0.40, 0.3)
    args = SimpleNamespace(backbone="smollm2", steps=200, batch_size=8, eval_every=25, max_test_examples=100,
                           template="chat")
    text = budget.document(args, results, {"chat": 80.0, "boundary": 50.0})
    assert "Chosen: **boundary, lr 0.3** (mean dev 59.0; best 60.0; mean tokens per training example" in text
    assert "The smallest patience that keeps every task's best dev score on these curves: 3." in text
    lone = budget.document(args, {k: v for k, v in results.items() if k[1] == "chat"}, {"chat": 80.0})
    assert "Chosen: **chat, lr 0.3** (mean dev 60.0; best 60.0)." in lone
    # a method swept with early stopping: its curves end where it stopped, so only shorter patiences are replayed
    assert budget.patience_of("lora") is None and budget.patience_of("bitfit") == budget.STOP_PATIENCE == 3
    stopped = [(0, 0.0), (25, 0.5), (50, 0.7), (75, 0.6), (100, 0.6), (125, 0.7)]
    cut = {("bitfit", "chat", "lr 5e-3", task): {**run(0.7, 0.6), "curve": stopped} for task in budget.TASKS}
    section = budget.document(args, cut, {"chat": 80.0}).split("## bitfit")[1]
    assert "| 1 | 70.0 | 75 |" in section and "| 2 | 70.0 | 100 |" in section
    assert "| 3 (run) | 70.0 | 125 |" in section and "| 4 |" not in section and "| none |" not in section
    assert "| dev | 50.0 | 70.0 | 70.0 | 70.0 | 70.0 | 70.0 | 70.0 | 70.0 |" in section  # kept after it stopped
    assert "on these curves: 1." in section


def test_backbones_record_outlives_the_run_folders(tmp_path):
    """recipes/backbones.py keeps every finished result in a committed record beside the document: the document is
    made from it and the run folders (a folder wins where both have a run), it survives the folders' loss, and a
    record made with other settings is refused."""
    backbones = _recipes("backbones")
    out, doc = tmp_path / "runs", tmp_path / "docs" / "backbones.md"
    task_dir = out / "SmolLM2-135M-Instruct" / "trec"
    backbones.write_json(task_dir / "frozen.json", {"dev": 0.0, "test": 0.0, "seconds": 60.0})
    backbones.write_json(task_dir / "lora" / "scores.json", {"test": 0.3, "dev": 0.4, "decode": "generate"})
    backbones.write_json(task_dir / "lora" / "timing.json", {"wall_seconds": 120.0, "threads": 2})
    methods = backbones.method_settings()
    lora = methods["lora"]
    backbones.write_json(task_dir / "lora" / "config.json", {"run": {"train": {"lr": lora["lr"]}},
                                                             "method": {"config": lora["options"]}})
    earlier = {"test": 0.5, "decode": "generate", "threads": 2, "recovered": True}
    record = {"settings": "s", "methods": methods, "results": {"SmolLM2-135M-Instruct": {
        "trec": {"frozen": {"test": 0.0, "recovered": True}, "lora": dict(earlier), "prompt": dict(earlier)},
        "glue-sst2": {"frozen": {"test": 0.1, "recovered": True}, "lora": {**earlier, "test": 0.8}}}},
        "recovered": {"SmolLM2-135M-Instruct": {"source": "the test's document", "runs": 3, "minutes": 9.0}}}
    backbones.write_json(backbones.record_path(doc), record)
    meta = {"command": "c", "machine": "m", "settings": "s"}
    args = SimpleNamespace(doc=str(doc))
    backbones.write_outputs(args, out, backbones.read_record(backbones.record_path(doc), "s"), meta)

    kept = backbones.read_json(tmp_path / "docs" / "backbones.json")
    trec = kept["results"]["SmolLM2-135M-Instruct"]["trec"]
    assert trec["lora"]["test"] == 0.3 and not trec["lora"]["reused"] and trec["frozen"]["seconds"] == 60.0
    assert trec["prompt"]["recovered"] and kept["recovered"] == record["recovered"]
    text = doc.read_text()
    assert "| 30.0 (12.2) |" in next(line for line in text.splitlines() if line.startswith("| trec"))
    note = next(line for line in text.splitlines() if line.startswith("3 runs finished"))
    assert "1 made from their run folders" in note and "3.0 min" in note  # 60 s frozen + 120 s of LoRA
    assert "2 runs were made with these settings in earlier sessions" in note and "the test's document" in note

    shutil.rmtree(out)  # the folders are lost: the record still makes the same document
    lost_doc = tmp_path / "again" / "backbones.md"
    lost_doc.parent.mkdir()
    shutil.copy(backbones.record_path(doc), backbones.record_path(lost_doc))
    backbones.write_outputs(SimpleNamespace(doc=str(lost_doc)), out,
                            backbones.read_record(backbones.record_path(lost_doc), "s"), meta)
    assert lost_doc.read_text() == text
    from taskspace.errors import ConfigError

    with pytest.raises(ConfigError, match=r"backbones.json: its results were made with other settings \(s\)"):
        backbones.read_record(backbones.record_path(doc), "other")
    assert backbones.read_record(tmp_path / "none.json", "other") == {"settings": "other", "results": {}}


def test_backbones_record_leaves_out_a_method_whose_settings_changed(tmp_path, capsys):
    """A method whose learning rate or options are no longer the library's: its recorded results and its run folders
    are left out (it runs again), the other methods' kept."""
    backbones = _recipes("backbones")
    methods = backbones.method_settings()
    then = {**methods, "lora": {**methods["lora"], "options": {**methods["lora"]["options"], "r": 4}}}
    kept = {"test": 0.5, "recovered": True}
    record = {"settings": "s", "methods": then, "results": {"SmolLM2-135M-Instruct": {
        "trec": {"frozen": {"test": 0.0}, "lora": dict(kept), "prompt": dict(kept)}}}}
    now = backbones.current_methods(record, methods)
    assert now["methods"] == methods and now["results"]["SmolLM2-135M-Instruct"]["trec"] == {
        "frozen": {"test": 0.0}, "prompt": kept}
    assert capsys.readouterr().out.startswith("lora: the record's results were made with ")
    assert backbones.current_methods(now, methods) == now  # nothing else left out
    # a run folder of the old options is not collected; one of the current options is
    task_dir = tmp_path / "SmolLM2-135M-Instruct" / "trec"
    backbones.write_json(task_dir / "frozen.json", {"test": 0.0})
    for method, settings in (("lora", then["lora"]), ("prompt", methods["prompt"])):
        backbones.write_json(task_dir / method / "scores.json", {"test": 0.7})
        backbones.write_json(task_dir / method / "config.json", {"run": {"train": {"lr": settings["lr"]}},
                                                                 "method": {"config": settings["options"]}})
    entry = backbones.collect(tmp_path, now)["SmolLM2-135M-Instruct"]["trec"]
    assert "lora" not in entry and entry["prompt"]["test"] == 0.7


def test_backbones_committed_record_is_the_document():
    """docs/backbones.json is docs/backbones.md's record: every cell of the committed document comes from it."""
    backbones = _recipes("backbones")
    record = backbones.read_json(backbones.record_path(ROOT / "docs" / "backbones.md"))
    text = backbones.render(record["results"], {"command": "c", "machine": "m", "settings": record["settings"]},
                            recovered=record.get("recovered"))
    table = [line for line in text.splitlines() if line.startswith("| ")]
    committed = [line for line in (ROOT / "docs" / "backbones.md").read_text().splitlines() if line.startswith("| ")]
    assert table == committed
