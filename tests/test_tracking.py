"""Tracking: --report-to tensorboard and wandb receive what log.jsonl receives; `taskspace plot` draws a run's
curves; evaluation and bank show progress bars."""

from __future__ import annotations

import json

import pytest

from taskspace.cli import main


def _tune(tmp_path, data_dir, shared_dir, name, *extra):
    args = ["tune", "--task", "glue-sst2", "--method", "bitfit", "--backbone", f"{shared_dir}/models/stories260K",
            "--decode", "rank", "--data-dir", str(data_dir), "--steps", "4", "--eval-every", "2",
            "--max-test-examples", "4", "--out", str(tmp_path / "runs"), "--run-name", name, *extra]
    assert main(args) == 0
    run = tmp_path / "runs" / name
    return run, [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_tensorboard_receives_the_log(tmp_path, data_dir, shared_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, log = _tune(tmp_path, data_dir, shared_dir, "tb", "--report-to", "tensorboard", "--no-progress")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    for key in ("loss", "dev"):
        got = [(e.step, round(e.value, 5)) for e in events.Scalars(key)]
        assert got == [(r["step"], round(r[key], 5)) for r in log if key in r]
    assert len(events.Scalars("dev")) >= 2


def test_wandb_offline_run_is_written_in_the_run(tmp_path, data_dir, shared_dir, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run, _ = _tune(tmp_path, data_dir, shared_dir, "wb", "--report-to", "wandb", "--no-progress")
    (history,) = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert history.stat().st_size > 0
    # the report is runtime only: the run's settings (and its name hash) do not mention it
    assert "report_to" not in json.dumps(json.loads((run / "config.json").read_text())["run"])


def test_plot_draws_a_png_next_to_the_log(tmp_path, data_dir, shared_dir, capsys):
    pytest.importorskip("matplotlib")
    run, _ = _tune(tmp_path, data_dir, shared_dir, "p", "--no-progress")
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    png = run / "training.png"
    assert capsys.readouterr().out.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "no log.jsonl" in capsys.readouterr().err


def test_a_one_point_loss_is_drawn(tmp_path, monkeypatch):
    """A run of one evaluation logs one training loss: a line needs two points, so it is drawn as a marker (the
    loss panel was empty)."""
    pytest.importorskip("matplotlib")
    from taskspace.analysis import plots

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"step": 0, "dev": 0.5}) + "\n"
                                   + json.dumps({"step": 1, "loss": 2.5, "lr": 0.1, "dev": 0.75}) + "\n")
    drawn = []
    save = plots.save_figure

    def keep(fig, path, dpi=110):
        drawn.append([[([float(x) for x in line.get_xdata()], line.get_marker()) for line in ax.lines]
                      for ax in fig.axes])
        return save(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    assert plots.plot_run(run) == run / "training.png"
    (loss,), dev = drawn[0][0], drawn[0][1]
    assert loss[0] == [1] and loss[1] not in ("None", "", " ", None)
    assert dev[0][0] == [0, 1]


def test_evaluation_and_bank_show_progress(tmp_path, data_dir, shared_dir, capsys):
    _tune(tmp_path, data_dir, shared_dir, "bars")
    err = capsys.readouterr().err
    assert "dev:" in err and "test:" in err and "train:" in err
    assert main(["bank", "--out", str(tmp_path / "bank"), "--methods", "bitfit", "--tasks", "glue-sst2",
                 "--seeds", "0", "1", "--backbone", f"{shared_dir}/models/stories260K", "--decode", "rank",
                 "--data-dir", str(data_dir), "--steps", "1", "--eval-every", "1", "--max-test-examples", "2"]) == 0
    err = capsys.readouterr().err
    assert "bank:" in err and "2/2" in err and "glue-sst2 bitfit s1" in err
