"""The papers' analyses over stored results: stability over seeds (IPT Table III) and the PCA of intrinsic
vectors (IPT Fig. 8), on known numbers, planted clusters, and real tiny runs through the commands."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
import torch

from taskspace.analysis.pca import Point, pca
from taskspace.analysis.stability import seed_std
from taskspace.cli import main

COMMON = ["--steps", "2", "--eval-every", "2", "--max-test-examples", "4", "--no-progress"]


def test_seed_std_on_known_numbers():
    mean, n, single = seed_std({"a": [0.5, 0.7], "b": [0.1, 0.1, 0.4], "c": [0.9]})
    expected = (100 * statistics.stdev([0.5, 0.7]) + 100 * statistics.stdev([0.1, 0.1, 0.4])) / 2
    assert mean == pytest.approx(expected) and (n, single) == (2, 1)
    assert seed_std({"a": [0.3]}) == (None, 0, 1)


def test_pca_separates_planted_clusters():
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(10, generator=g) * 3
    points = [Point(f"p{i}", "t", "cls" if i < 6 else "non-cls", "x", "IST",
                    (centre if i < 6 else -centre) + 0.1 * torch.randn(10, generator=g)) for i in range(12)]
    coords, explained = pca(points)
    first = coords[:, 0]
    assert (first[:6] > 0).all() == (first[6:] < 0).all() and bool((first[:6] * first[6:].mean() < 0).all())
    assert explained[0] > 0.9 and explained.sum() <= 1.0 + 1e-6


@pytest.mark.slow
def test_stability_command_on_runs_of_two_seeds(tmp_path, data_dir, shared_dir, capsys):
    llama = f"{shared_dir}/models/stories260K"
    runs = []
    for method in ("bitfit", "prompt"):
        for seed in (0, 1):
            name = f"{method}-s{seed}"
            assert main(["tune", "--task", "glue-sst2", "--method", method, "--backbone", llama, "--decode", "rank",
                         "--data-dir", str(data_dir), "--seed", str(seed), "--lr", "0.5", "--out", str(tmp_path),
                         "--run-name", name, *COMMON]) == 0
            runs.append(tmp_path / name)
    # prompt tuning started from another run's theta is a kind of its own (IPT §V-E)
    assert main(["tune", "--task", "glue-sst2", "--method", "prompt", "--backbone", llama, "--decode", "rank",
                 "--data-dir", str(data_dir), "--init-from", str(tmp_path / "bitfit-s0" / "theta"), "--out",
                 str(tmp_path), "--run-name", "from-bitfit", *COMMON]) != 0  # another method's theta is refused
    assert main(["tune", "--task", "glue-sst2", "--method", "prompt", "--backbone", llama, "--decode", "rank",
                 "--data-dir", str(data_dir), "--init-from", str(tmp_path / "prompt-s1" / "theta"), "--out",
                 str(tmp_path), "--run-name", "from-prompt", *COMMON]) == 0
    capsys.readouterr()
    assert main(["stability", "--runs", *map(str, runs), str(tmp_path / "from-prompt"),
                 "--out", str(tmp_path / "stab")]) == 0
    rows = {r["kind"]: r for r in csv.DictReader((tmp_path / "stab" / "stability.csv").open())}
    assert rows["prompt (initialised from prompt)"]["runs"] == "1" and rows["prompt"]["runs"] == "2"
    for method in ("bitfit", "prompt"):
        tests = [json.loads((tmp_path / f"{method}-s{s}" / "scores.json").read_text())["test"] for s in (0, 1)]
        assert float(rows[method]["mean std"]) == pytest.approx(100 * statistics.stdev(tests), abs=1e-3)
        assert rows[method]["runs"] == "2"
    assert "Stability over seeds" in capsys.readouterr().out


@pytest.mark.slow
def test_pca_command_on_ist_runs_and_training_codes(tmp_path, data_dir, shared_dir, capsys):
    pytest.importorskip("matplotlib")
    llama = f"{shared_dir}/models/stories260K"
    tasks = ["glue-sst2", "superglue-copa"]
    assert main(["bank", "--out", str(tmp_path / "bank"), "--methods", "prompt", "--opt", "prompt.n_tokens=2",
                 "--tasks", *tasks, "--backbone", llama, "--data-dir", str(data_dir), *COMMON]) == 0
    assert main(["fit-subspace", "--recipe", "ipt", "--bank", str(tmp_path / "bank"), "--tasks", *tasks, "--d", "3",
                 "--hidden", "4", "--data-dir", str(data_dir), "--out", str(tmp_path / "space"),
                 "--steps", "2", "--eval-every", "2", "--no-progress"]) == 0
    runs = []
    for task in ("glue-sst2", "web_questions", "ag_news"):
        run = tmp_path / f"ist-{task}"
        assert main(["subspace-tune", "--subspace", str(tmp_path / "space"), "--task", task, "--method", "prompt",
                     "--data-dir", str(data_dir), "--out", str(run), "--backbone-opt", "max_output_length=4",
                     *COMMON]) == 0
        runs.append(str(run))
    capsys.readouterr()
    assert main(["pca", "--runs", *runs, "--bank", str(tmp_path / "bank"), "--out", str(tmp_path / "pca")]) == 0
    assert "5 vectors; explained variance PC1" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "pca" / "pca.csv").open()))
    assert [r["group"] for r in rows] == ["training code"] * 2 + ["IST"] * 3
    assert {r["task"]: r["category"] for r in rows}["web_questions"] == "non-cls"
    assert (tmp_path / "pca" / "pca.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["pca", "--runs", runs[0], "--out", str(tmp_path / "one"), "--no-png"]) == 2
    assert "a PCA needs at least 3" in capsys.readouterr().err


def test_the_landscape_plane_is_orthonormal_and_goes_through_the_three_points():
    from taskspace.analysis.landscape import grid, plane

    g = torch.Generator().manual_seed(0)
    a, p, lo = (torch.randn(5, generator=g) for _ in range(3))
    pl = plane(a, p, lo)
    assert float(pl.u.norm()) == pytest.approx(1) and float(pl.v.norm()) == pytest.approx(1)
    assert float(pl.u @ pl.v) == pytest.approx(0, abs=1e-6)
    alpha, beta = pl.coordinates(p)
    assert beta == pytest.approx(0, abs=1e-6) and alpha == pytest.approx(float((p - a).norm()))
    alpha, beta = pl.coordinates(lo)  # the third point lies in the plane
    torch.testing.assert_close(pl.point(alpha, beta), lo)
    assert grid(4.0, 0.4)[:2] == [-4.0, -3.6] and len(grid(4.0, 0.4)) == 21 and 0.0 in grid(4.0, 0.4)
    from taskspace.errors import ConfigError

    with pytest.raises(ConfigError, match="on one line"):
        plane(a, p, a + 2 * (p - a))


@pytest.mark.slow
def test_landscape_command_on_a_tiny_unified_subspace(tmp_path, data_dir, shared_dir, capsys):
    pytest.importorskip("matplotlib")
    llama = f"{shared_dir}/models/stories260K"
    methods = ["adapter", "prefix", "lora"]
    assert main(["bank", "--out", str(tmp_path / "bank"), "--methods", *methods, "--opt", "adapter.r=2",
                 "--opt", "prefix.n_tokens=2", "--opt", "prefix.hidden=4", "--opt", "lora.r=2",
                 "--tasks", "glue-sst2", "superglue-copa", "--backbone", llama, "--decode", "rank",
                 "--data-dir", str(data_dir), *COMMON]) == 0
    assert main(["fit-subspace", "--recipe", "unified", "--methods", *methods, "--bank", str(tmp_path / "bank"),
                 "--tasks", "glue-sst2", "superglue-copa", "--d", "3", "--data-dir", str(data_dir),
                 "--decode", "rank", "--out", str(tmp_path / "space"), "--steps", "2", "--eval-every", "2",
                 "--no-progress"]) == 0
    runs = []
    for method in methods:
        run = tmp_path / f"so-{method}"
        assert main(["subspace-tune", "--subspace", str(tmp_path / "space"), "--task", "glue-sst2", "--method", method,
                     "--decode", "rank", "--data-dir", str(data_dir), "--out", str(run), "--lr", "0.5", *COMMON]) == 0
        runs.append(str(run))
    capsys.readouterr()
    args = ["landscape", "--subspace", str(tmp_path / "space"), "--runs", *runs, "--bank", str(tmp_path / "bank"),
            "--decode", "rank", "--span", "0.8", "--step", "0.4", "--out", str(tmp_path / "land")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "5 x 5 points x 3 methods" in out and "75 point-method pairs to evaluate (0 done)" in out
    result = json.loads((tmp_path / "land" / "landscape.json").read_text())
    # the origin is the first run's own solution: its score there is the run's own dev score
    own = json.loads((tmp_path / "so-adapter" / "scores.json").read_text())["dev"]
    assert result["origin_score"]["adapter"] == pytest.approx(own)
    assert result["marks"]["adapter"] == [0.0, 0.0] and result["marks"]["prefix"][1] == pytest.approx(0, abs=1e-5)
    assert len(result["overall"]) == 5 and len(result["overall"][0]) == 5
    assert (tmp_path / "land" / "landscape.png").read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 0  # resumed: nothing left to evaluate
    assert "0 point-method pairs to evaluate (75 done)" in capsys.readouterr().out


def test_heatmap_of_a_matrix_with_an_empty_cell(tmp_path):
    pytest.importorskip("matplotlib")
    from taskspace.analysis.plots import heatmap

    path = heatmap("transfer", ["adapter", "lora"], ["adapter", "lora"], [[90.0, None], [75.5, 101.0]],
                   tmp_path / "m.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 3000


def test_task_subsets_are_seeded_and_nested():
    from taskspace.tasks import task_subset
    from taskspace.errors import ConfigError

    tasks = [f"t{i}" for i in range(10)]
    small, large = task_subset(tasks, 0.2, 3), task_subset(tasks, 0.6, 3)
    assert len(small) == 2 and len(large) == 6 and set(small) <= set(large)
    assert small == [t for t in tasks if t in small]  # in the given order
    assert task_subset(tasks, 0.2, 3) == small and task_subset(tasks, 0.2, 4) != small
    assert task_subset(tasks, 1.0, 0) == tasks and len(task_subset(tasks, 0.01, 0)) == 1
    with pytest.raises(ConfigError, match="expected a number in"):
        task_subset(tasks, 1.5, 0)


def test_one_theta_for_several_tasks(tmp_path, data_dir, shared_dir, capsys):
    from taskspace.deltas import build_method
    from taskspace.backbones import load_backbone
    from taskspace.store import load_delta

    llama = f"{shared_dir}/models/stories260K"
    args = ["multitask", "--tasks", "glue-sst2", "superglue-copa", "--method", "lora", "--opt", "r=2",
            "--backbone", llama, "--decode", "rank", "--data-dir", str(data_dir), "--steps", "4", "--eval-every", "2",
            "--max-test-examples", "4", "--no-progress", "--out", str(tmp_path / "mt")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "one lora theta for 2 tasks" in out and "superglue-copa" in out and "mean" in out
    scores = json.loads((tmp_path / "mt" / "scores.json").read_text())
    per = scores["tasks"]
    assert set(per) == {"glue-sst2", "superglue-copa"} and per["glue-sst2"]["n_test"] == 4
    assert scores["dev"] == pytest.approx((per["glue-sst2"]["dev"] + per["superglue-copa"]["dev"]) / 2)
    method = build_method("lora", load_backbone(llama, decode="rank"), {"r": 2})
    theta, _, record = load_delta(tmp_path / "mt" / "theta", method)
    assert record["tasks"] == ["glue-sst2", "superglue-copa"]
    assert main(args) == 0  # finished: read back, not tuned again
    assert json.loads((tmp_path / "mt" / "scores.json").read_text()) == scores
    assert main([*args[:-1], str(tmp_path / "mt2"), "--tasks", "glue-sst2", "glue-sst2"]) == 2
    assert "a task is named twice" in capsys.readouterr().err


@pytest.mark.slow
def test_task_types_command_included_and_excluded(tmp_path, data_dir, shared_dir, capsys):
    """IPT's Fig. 4: a subspace fitted without the topic tasks (--exclude-type topic) and one fitted with them;
    IST on a topic task through each is reported as excluded and included, relative to prompt tuning."""
    pytest.importorskip("matplotlib")
    llama = f"{shared_dir}/models/stories260K"
    plain = ["--backbone-opt", "template=plain"]  # the reference scores above 0 after 2 steps in it
    data = ["--data-dir", str(data_dir)]
    train_tasks = ["glue-sst2", "ag_news"]
    assert main(["bank", "--out", str(tmp_path / "bank"), "--methods", "prompt", "--opt", "prompt.n_tokens=2",
                 "--tasks", *train_tasks, "--backbone", llama, *plain, *data, *COMMON]) == 0
    fit = ["fit-subspace", "--recipe", "ipt", "--bank", str(tmp_path / "bank"), "--tasks", *train_tasks, "--d", "3",
           "--hidden", "4", *data, "--steps", "2", "--eval-every", "2", "--no-progress"]  # the bank's template
    assert main([*fit, "--out", str(tmp_path / "all")]) == 0
    capsys.readouterr()
    assert main([*fit, "--exclude-type", "topic", "--out", str(tmp_path / "no-topic")]) == 0
    assert "1 training tasks without type topic: glue-sst2" in capsys.readouterr().out
    assert json.loads((tmp_path / "no-topic" / "subspace.json").read_text())["info"]["tasks"] == ["glue-sst2"]
    assert main([*fit, "--exclude-type", "topics", "--out", str(tmp_path / "bad")]) == 2
    assert "--exclude-type 'topics': not a task type of the catalog; types: " in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

    runs, references = [], []
    common = [*data, "--decode", "rank", *plain, *COMMON]  # ranking: a score above 0 after 2 steps
    for space in ("all", "no-topic"):
        run = tmp_path / f"ist-{space}"
        assert main(["subspace-tune", "--subspace", str(tmp_path / space), "--task", "trec", "--method", "prompt",
                     "--out", str(run), *common]) == 0
        runs.append(str(run))
    assert main(["tune", "--task", "trec", "--method", "prompt", "--opt", "n_tokens=2", "--backbone", llama,
                 "--out", str(tmp_path), "--run-name", "pt-trec", *common]) == 0
    references.append(str(tmp_path / "pt-trec"))
    capsys.readouterr()
    assert main(["task-types", "--runs", *runs, "--references", *references, "--out", str(tmp_path / "types")]) == 0
    assert "IST by task type" in capsys.readouterr().out
    (row,) = list(csv.DictReader((tmp_path / "types" / "task_types.csv").open()))
    test = {name: json.loads((tmp_path / name / "scores.json").read_text())["test"]
            for name in ("ist-all", "ist-no-topic", "pt-trec")}
    assert row["type"] == "topic" and row["category"] == "cls" and row["included tasks"] == row["excluded tasks"] == "1"
    assert test["pt-trec"] > 0, "the reference must score for the ratio to be tested"
    for setting, run in (("included", "ist-all"), ("excluded", "ist-no-topic")):
        expected = "" if not test["pt-trec"] > 0 else f"{100 * test[run] / test['pt-trec']:.4f}"
        assert row[f"{setting} E_rel %"] == expected
    assert (tmp_path / "types" / "task_types.png").read_bytes()[:4] == b"\x89PNG"


def test_mean_interval_on_known_numbers():
    from taskspace.analysis import mean_interval

    centre, half, n = mean_interval([0.70, 0.74, 0.78, None])
    # mean 0.74, sample sd 0.04, t(0.975, 2) = 4.303: 4.303 * 0.04 / sqrt(3)
    assert n == 3 and centre == pytest.approx(0.74) and half == pytest.approx(4.303 * 0.04 / 3 ** 0.5)
    assert mean_interval([0.5]) == (0.5, None, 1) and mean_interval([]) == (None, None, 0)
    assert mean_interval([1.0] * 40 + [0.0] * 40)[1] == pytest.approx(1.96 * statistics.stdev([1.0] * 40 + [0.0] * 40)
                                                                      / 80 ** 0.5)
