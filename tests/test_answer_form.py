"""The answer forms of the report's failure analysis (recipes/smol_report/answer_form.py), on the shared tasks'
training files: what kind of answer a task has, which tasks are nearest it by answer form, and the report's section
that lists the unseen tasks IST fails on with their nearest training tasks. No model, no training."""

from __future__ import annotations

from test_recipes import _recipes


def _forms(data_dir, *tasks: str) -> dict:
    af = _recipes("smol_report.answer_form")
    return {t: af.load_answer_form(t, data_dir, 100) for t in tasks}


def test_option_tasks_with_the_same_labels_are_nearest_each_other(data_dir):
    """A label set is the task's whole answer vocabulary: the two RTE tasks (entailment, not_entailment) are each
    other's nearest, and so are the two sentiment tasks (negative, positive), ahead of label tasks that share one
    label word (MNLI) or none, and of free-text tasks."""
    af = _recipes("smol_report.answer_form")
    forms = _forms(data_dir, "glue-rte", "superglue-rte", "glue-mnli", "ag_news", "glue-sst2", "rotten_tomatoes",
                   "lama-trex")
    rte = forms["glue-rte"]
    assert (rte.kind, rte.n_options, rte.options) == ("labels", 2, ("entailment", "not_entailment"))
    assert rte.vocabulary == {"entailment", "not_entailment"}
    assert af.jaccard(rte.vocabulary, forms["glue-mnli"].vocabulary) == 0.25  # entailment of 4 words
    assert forms["ag_news"].describe() == "4 labels: Business; Sci/Tech; Sports; World"
    candidates = list(forms.values())
    for a, b in (("glue-rte", "superglue-rte"), ("glue-sst2", "rotten_tomatoes")):
        assert af.nearest(forms[a], candidates)[0].task == b and af.nearest(forms[b], candidates)[0].task == a
    assert af.nearest(rte, candidates)[1].task == "glue-mnli"
    assert af.nearest(rte, candidates, k=len(candidates))[-1].task == "lama-trex"  # another kind: last


def test_free_text_answers_are_entities_or_sentences_and_choices_are_per_example(data_dir):
    """lama-trex answers with one-word entities, xsum and wikisql with sentences (a median of 6 words or more),
    ai2_arc with choices of its own per example; a task's nearest are of its own kind first."""
    af = _recipes("smol_report.answer_form")
    forms = _forms(data_dir, "lama-trex", "lama-google_re", "kilt_trex", "xsum", "wikisql", "ai2_arc", "ag_news")
    trex = forms["lama-trex"]
    assert (trex.kind, trex.n_options, trex.options, trex.median_words) == ("entities", 0, (), 1)
    assert trex.describe() == "free text, entities, median 1 word"
    assert forms["xsum"].kind == forms["wikisql"].kind == "sentences" and forms["xsum"].median_words >= 6
    arc = forms["ai2_arc"]
    assert arc.kind == "choices" and arc.options and arc.describe().startswith("choices, ")
    candidates = list(forms.values())
    assert {f.task for f in af.nearest(trex, candidates, k=2)} == {"lama-google_re", "kilt_trex"}
    assert af.nearest(forms["xsum"], candidates)[0].task == "wikisql"


def test_a_numeric_answer_task_is_nearest_numeric_tasks(data_dir):
    """Answers that are numbers (at least half of them) make a kind of their own, which comes before shared words: a
    task of years is nearer a task of counts that shares none of its words than lama-google_re, whose answers hold
    two of its years."""
    from taskspace.tasks import Example

    af = _recipes("smol_report.answer_form")

    def task(name: str, answers: list[str]):
        return af.answer_form(name, [Example(f"question {i}", (a,), task=name) for i, a in enumerate(answers)])

    years = task("years", ["1830", "1680", "2001", "1999"])
    counts = task("counts", ["12", "1,000", "-4.5", "45%"])
    assert years.kind == counts.kind == "numbers" and af.jaccard(years.vocabulary, counts.vocabulary) == 0
    google = _forms(data_dir, "lama-google_re")["lama-google_re"]
    assert google.kind == "entities" and af.jaccard(years.vocabulary, google.vocabulary) > 0
    assert [f.task for f in af.nearest(years, [google, counts])] == ["counts", "lama-google_re"]
    assert task("half", ["1830", "Paris", "12", "Rome"]).kind == "numbers"  # exactly half: numbers
    assert task("fewer", ["1830", "Paris", "Rome", "Oslo"]).kind == "entities"


def _recipe(ist: dict[str, float]) -> tuple[dict, dict]:
    """A recipe of three unseen tasks and four training tasks, and results with the IST scores ``ist`` (the same on
    both seeds): the reference, the frozen model's scores and the bank's."""
    cfg = {"unseen_tasks": ["lama-trex", "glue-sst2", "rotten_tomatoes"],
           "train_tasks": ["lama-google_re", "kilt_trex", "ag_news", "glue-rte"], "seeds": [0, 1], "data_seed": 100,
           "ipt": {"method": "prompt", "dims": [100, 10]}}
    reference = {"lama-trex": (0.4, 0.6), "glue-sst2": (0.8, 0.8), "rotten_tomatoes": (0.8, 0.8)}
    scores = {"reference/prompt": {t: {"0": a, "1": b} for t, (a, b) in reference.items()},
              "ipt/d100": {t: {"0": v, "1": v} for t, v in ist.items()},
              "ipt/d10": {t: {"0": 0.0, "1": 0.0} for t in reference},  # the largest d only is read
              "bank/prompt": {t: {"0": v} for t, v in
                              {"lama-google_re": 0.41, "kilt_trex": 0.33, "ag_news": 0.62, "glue-rte": 0.55}.items()}}
    return cfg, {"scores": scores, "frozen": {"lama-trex": 0.0, "glue-sst2": 0.5, "rotten_tomatoes": 0.3}}


def test_the_report_lists_the_unseen_tasks_ist_fails_on_with_their_nearest_training_tasks(data_dir, tmp_path):
    """IST at the largest d under half the reference (lama-trex) or at the frozen model (glue-sst2, though above half
    the reference) fails; rotten_tomatoes keeps more than half and is not listed. Each row gives the scores, the
    answer form and the nearest training tasks with their bank scores; with no failing task there is no section,
    and no task file is read."""
    failures = _recipes("smol_report.failures")
    cfg, results = _recipe({"lama-trex": 0.1, "glue-sst2": 0.5, "rotten_tomatoes": 0.7})
    assert failures.failing_tasks(cfg, results) == ["lama-trex", "glue-sst2"]
    lines = failures.failure_lines(cfg, results, data_dir)
    assert lines[0] == "## IST's failures on unseen tasks, by answer form (d = 100)" and lines[-1] == ""
    cells = [line.split(" | ") for line in lines if line.startswith("| ")]
    assert cells[0][:3] == ["| task", "category", "IST %"] and cells[1][0] == "| ---"
    rows = {row[0][2:]: row for row in cells[2:]}
    assert list(rows) == ["lama-trex", "glue-sst2"]
    trex = rows["lama-trex"]
    assert trex[:6] == ["| lama-trex", "non-cls", "10.0", "50.0", "0.0", "free text, entities, median 1 word"]
    near = trex[6].rstrip(" |").split("; ")
    assert len(near) == 3 and {n.split(" ")[0] for n in near[:2]} == {"lama-google_re", "kilt_trex"}
    assert any(n.startswith("lama-google_re (entities, J ") and n.endswith(", 41.0)") for n in near[:2])
    sst2 = rows["glue-sst2"]
    assert sst2[:6] == ["| glue-sst2", "cls", "50.0", "80.0", "50.0", "2 labels: negative; positive"]
    assert sst2[6].startswith("glue-rte (labels, J 0.00, 55.0); ag_news (labels, J 0.00, 62.0); ")
    # a recipe without IST, and one whose IST keeps enough everywhere: no section, no task file read
    no_ipt = {k: v for k, v in cfg.items() if k != "ipt"}
    assert failures.failure_lines(no_ipt, results, tmp_path / "no-data") == []
    cfg, results = _recipe({"lama-trex": 0.3, "glue-sst2": 0.6, "rotten_tomatoes": 0.7})
    assert failures.failing_tasks(cfg, results) == []
    assert failures.failure_lines(cfg, results, tmp_path / "no-data") == []
