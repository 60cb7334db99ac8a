"""The command line: help everywhere, an end-to-end tune run, re-evaluation, resumption and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
import subprocess
import sys

import pytest

from taskspace.cli import build_parser, main, parse_options
from taskspace.cli.common import stop_note
from taskspace.errors import ConfigError

COMMANDS = ["tune", "evaluate", "predict", "export", "reproduce", "multitask", "import-peft", "plot", "tasks", "methods", "params", "convert", "bank", "fit-subspace",
            "subspace-tune", "subspaces", "transfer", "stability", "task-types", "pca", "landscape"]


@pytest.mark.slow
def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "taskspace.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    assert set(COMMANDS) == set(build_parser()._subparsers._group_actions[0].choices)  # none is left out
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: taskspace " + command in capsys.readouterr().out


def test_option_values_are_typed():
    fields = {"r": 8, "alpha": 16.0, "targets": ("q", "v"), "bias": False, "init": "normal"}
    got = parse_options(["r=4", "alpha=2", "targets=q,k,v", "bias=true", "init=vocab"], fields, "--opt")
    assert got == {"r": 4, "alpha": 2.0, "targets": ("q", "k", "v"), "bias": True, "init": "vocab"}
    with pytest.raises(ConfigError, match="--opt 'rank'.*valid: alpha"):
        parse_options(["rank=4"], fields, "--opt")
    with pytest.raises(ConfigError, match="--opt r='four'"):
        parse_options(["r=four"], fields, "--opt")
    with pytest.raises(ConfigError, match="key=value"):
        parse_options(["r"], fields, "--opt")


def _tune(args, tmp_path, data_dir, capsys):
    code = main(["tune", "--data-dir", str(data_dir), "--out", str(tmp_path), "--no-progress", *args])
    return code, capsys.readouterr()


@pytest.mark.slow
def test_tune_end_to_end_with_the_default_backbone(tmp_path, data_dir, capsys, smollm2_cache):
    args = ["--task", "glue-sst2", "--method", "lora", "--steps", "4", "--eval-every", "2", "--batch-size", "4",
            "--max-test-examples", "8", "--run-name", "run", "--backbone-opt", "max_output_length=3"]
    code, out = _tune(args, tmp_path, data_dir, capsys)
    assert code == 0, out.err
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "zero_shot.json", "log.jsonl", "theta.safetensors", "theta.json",
            "scores.json", "predictions"} <= names
    assert "checkpoint" not in names  # the resume state (optimiser included) goes once the run is finished
    scores = json.loads((run / "scores.json").read_text())
    assert scores["metric"] == "ACC" and scores["n_test"] == 8 and scores["n_test_total"] == 872
    assert scores["decode"] == "generate" and "decode generate" in out.out
    assert 0 <= scores["dev"] <= 1 and 0 <= scores["test"] <= 1
    assert "tuned (best on dev)" in out.out and "frozen backbone" in out.out
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 2, 4]
    config = json.loads((run / "config.json").read_text())
    assert len(config["backbone"]["fingerprint"]) == 64 and config["backbone"]["name"] == "SmolLM2-135M-Instruct"
    assert config["backbone"]["decode"] == "generate" and config["backbone"]["dtype"] in ("float32", "bfloat16")

    # The same command again returns the finished run without training.
    code, again = _tune(args, tmp_path, data_dir, capsys)
    assert code == 0 and again.out == out.out
    # The saved theta reproduces the saved scores exactly.
    assert main(["evaluate", str(run), "--data-dir", str(data_dir)]) == 0
    assert "identical to the saved scores" in capsys.readouterr().out
    # Another configuration under the same name is refused.
    code, refused = _tune([*args, "--lr", "0.5"], tmp_path, data_dir, capsys)
    assert code == 2 and "different configuration" in refused.err


def test_tune_a_generative_task_on_a_causal_backbone(tmp_path, data_dir, shared_dir, capsys):
    args = ["--task", "web_questions", "--method", "prefix", "--backbone", f"{shared_dir}/models/stories260K",
            "--steps", "2", "--eval-every", "2", "--max-test-examples", "8", "--opt", "n_tokens=2",
            "--run-name", "gen", "--backbone-opt", "max_output_length=8", "--keep-checkpoint"]
    code, out = _tune(args, tmp_path, data_dir, capsys)
    assert code == 0, out.err
    assert (tmp_path / "gen" / "checkpoint" / "state.json").is_file()
    preds = [json.loads(line) for line in (tmp_path / "gen" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and all(isinstance(p["prediction"], str) for p in preds)
    assert any(p["prediction"].strip() for p in preds)  # the model generated text (a broken generate gives "")
    assert json.loads((tmp_path / "gen" / "scores.json").read_text())["metric"] == "EM"


def test_a_run_stopped_early_without_leaving_its_start_says_how_to_train_on(tmp_path, data_dir, shared_dir,
                                                                             capsys):
    args = ["--task", "web_questions", "--method", "prompt", "--backbone", f"{shared_dir}/models/stories260K",
            "--steps", "6", "--eval-every", "1", "--max-test-examples", "4", "--opt", "n_tokens=2",
            "--backbone-opt", "max_output_length=4"]
    code, out = _tune([*args, "--patience", "1", "--run-name", "stuck"], tmp_path, data_dir, capsys)
    scores = json.loads((tmp_path / "stuck" / "scores.json").read_text())
    assert code == 0 and scores["stopped_early"] and scores["dev"] == scores["zero_shot"]["init"]["dev"] == 0
    assert (f"note: stopped early at step {scores['steps']} with dev never above its start (0.00); --patience none "
            "trains all --steps") in out.out
    code, out = _tune([*args, "--patience", "none", "--run-name", "all"], tmp_path, data_dir, capsys)
    assert code == 0 and json.loads((tmp_path / "all" / "scores.json").read_text())["steps"] == 6
    assert "note:" not in out.out
    assert stop_note({**scores, "dev": 0.25}) is None  # it left its start: early stopping did its job


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "glue-sst3", "--method", "lora"], "glue-sst2"),
        (["--task", "web_questions", "--method", "lora", "--backbone", "minilm"], "has no options"),
        (["--task", "glue-sst2", "--method", "lora", "--backbone", "minilm", "--decode", "generate"],
         "decode='generate'.*encoder family can use rank"),
        (["--task", "glue-sst2", "--method", "lora", "--opt", "rank=4"], "--opt .*rank"),
        (["--task", "glue-sst2", "--method", "lora", "--steps", "0"], "--steps"),
        (["--task", "glue-sst2", "--method", "lora", "--steps", "-5"], "--steps"),
        (["--task", "glue-sst2", "--method", "lora", "--opt", "alpha=nan"], "alpha='nan': expected a finite number"),
        (["--task", "glue-sst2", "--method", "lora", "--lr", "inf"], "--lr inf: expected a positive, finite"),
        (["--task", "glue-sst2", "--method", "lora", "--weight-decay", "nan"], "--weight-decay nan"),
        (["--task", "glue-sst2", "--method", "lora", "--backbone", "minilm", "--backbone-opt", "similarity_scale=nan"],
         "similarity_scale='nan': expected a finite number"),
        (["--task", "glue-sst2", "--method", "lora", "--max-test-examples", "-4"], "--max-test-examples -4"),
        (["--task", "glue-sst2", "--method", "lora", "--backbone-opt", "colour=red"],
         "--backbone-opt colour: unknown option.*max_input_length"),
        (["--task", "glue-sst2", "--method", "lora", "--backbone-opt", "device=cuda"], "device='cuda'.*no CUDA"),
        (["--task", "glue-sst2", "--method", "lora", "--family", "encoder"], "--family encoder: llama models are causal"),
    ],
)
def test_tune_errors_are_clear(args, message, tmp_path, data_dir, capsys, smollm2_cache):
    code, out = _tune(args, tmp_path, data_dir, capsys)
    assert code == 2
    assert out.err.startswith("taskspace tune: error:")
    assert __import__("re").search(message, out.err), out.err
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_default_run_names_tell_settings_apart(tmp_path, data_dir, monkeypatch):
    """A sweep of --lr or --steps never shares a run directory; the same command on the same data (from anywhere,
    wherever the data folder lies) finds its run; edited data gets another."""
    from taskspace import tuning
    from taskspace.cli import main as cli_main

    seen = []
    monkeypatch.setattr(tuning, "tune", lambda config, run_dir, **kw: seen.append((config, run_dir)) or 1 / 0)
    base = ["tune", "--task", "glue-sst2", "--method", "lora", "--out", str(tmp_path / "runs")]
    for extra in ([], ["--lr", "0.01"], ["--steps", "10"], ["--opt", "r=4"], [], ["--no-progress"]):
        with pytest.raises(ZeroDivisionError):
            cli_main([*base, "--data-dir", str(data_dir), *extra])
    names = [run_dir.name for _, run_dir in seen]
    assert len(set(names[:4])) == 4 and names[0] == names[4] == names[5]
    assert names[0].startswith("glue-sst2-lora-smollm2-d100-s0-") and len(names[0].rsplit("-", 1)[1]) == 8
    # The data folder is recorded as an absolute path, and does not enter the name: a copy elsewhere, named
    # relative to the working folder, holds the same data.
    assert Path(seen[0][0].data_dir).is_absolute()
    copy = tmp_path / "data" / "glue-sst2"
    shutil.copytree(data_dir / "glue-sst2", copy)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ZeroDivisionError):
        cli_main([*base, "--data-dir", "data"])
    assert seen[-1][1].name == names[0] and seen[-1][0].data_dir != seen[0][0].data_dir
    # One changed label in the train file: another run.
    train = copy / "glue-sst2_16_100_train.jsonl"
    lines = train.read_text().splitlines()
    row = json.loads(lines[0])
    row["output"] = next(o for o in row["options"] if o != row["output"])
    train.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    with pytest.raises(ZeroDivisionError):
        cli_main([*base, "--data-dir", "data"])
    assert seen[-1][1].name != names[0]


def test_tasks_and_methods_commands(capsys):
    assert main(["tasks", "--type", "paraphrase"]) == 0
    out = capsys.readouterr().out
    assert "glue-mrpc" in out and "paws" in out and "3 tasks" in out
    assert main(["tasks", "--type", "Paraphrase"]) == 0 and "3 tasks" in capsys.readouterr().out
    assert main(["tasks", "--type", "poetry"]) == 2
    err = capsys.readouterr().err
    assert "--type 'poetry': expected one of" in err and "paraphrase" in err
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("prompt", "prefix", "lora", "adapter", "bitfit", "finetune"):
        assert f"\n{name}:" in "\n" + out


def test_convert_writes_crossfit_tsv(tmp_path, data_dir, capsys):
    assert main(["convert", str(data_dir), str(tmp_path), "--tasks", "superglue-copa", "--seeds", "13"]) == 0
    written = sorted(p.name for p in (tmp_path / "superglue-copa").iterdir())
    assert written == ["superglue-copa_16_13_dev.tsv", "superglue-copa_16_13_test.tsv", "superglue-copa_16_13_train.tsv"]
    first = (tmp_path / "superglue-copa" / "superglue-copa_16_13_train.tsv").read_text().splitlines()[0]
    assert " (A) " in first and " (B) " in first and "\t" in first


@pytest.mark.slow
def test_subspace_commands_end_to_end(tmp_path, data_dir, shared_dir, capsys):
    llama = f"{shared_dir}/models/stories260K"
    common = ["--steps", "2", "--eval-every", "2", "--no-progress"]
    bank, space = tmp_path / "bank", tmp_path / "udt"
    assert main(["bank", "--out", str(bank), "--methods", "lora", "adapter", "--tasks", "glue-sst2", "superglue-copa",
                 "--backbone", llama, "--data-dir", str(data_dir), "--max-test-examples", "8",
                 "--opt", "lora.r=2", "--opt", "adapter.r=2", "--lr", "lora=0.01", *common]) == 0
    assert (bank / "scores.md").is_file() and (bank / "scores.csv").is_file()
    spec = json.loads((bank / "bank.json").read_text())["spec"]
    assert spec["methods"] == {"lora": {"r": 2}, "adapter": {"r": 2}}
    assert spec["lr"] == {"lora": 0.01, "adapter": 5e-4}  # given, and the method's default
    assert main(["fit-subspace", "--recipe", "unified", "--bank", str(bank), "--tasks", "glue-sst2",
                 "--methods", "lora", "adapter", "--d", "3", "--out", str(space), "--data-dir", str(data_dir),
                 *common]) == 0
    assert (space / "subspace.json").is_file() and (space / "reconstruction.md").is_file()
    # The command trained with the library's UDT settings (Adafactor, constant rate), only steps and evaluation given.
    from taskspace.subspace import UnifiedConfig

    recorded = json.loads((space / "subspace.json").read_text())["info"]["config"]
    library = UnifiedConfig(methods=("lora", "adapter"), d=3)
    assert recorded == library.replace(train=library.train.replace(steps=2, eval_every=2)).identity()
    assert (recorded["train"]["optimizer"], recorded["train"]["schedule"]) == ("adafactor", "constant")
    runs = []
    for method in ("lora", "adapter"):
        run = tmp_path / f"st-{method}"
        assert main(["subspace-tune", "--subspace", str(space), "--task", "superglue-copa", "--method", method,
                     "--out", str(run), "--bank", str(bank), "--data-dir", str(data_dir),
                     "--max-test-examples", "8", *common]) == 0
        assert (run / "relative.csv").read_text().startswith("task,subspace %,")
        runs.append(str(run))
    assert main(["transfer", "--subspace", str(space), "--runs", *runs, "--bank", str(bank),
                 "--out", str(tmp_path / "transfer")]) == 0
    matrix = (tmp_path / "transfer" / "transfer.csv").read_text().splitlines()
    assert matrix[0] == "source \\ target,adapter,lora" and len(matrix) == 3
    out = capsys.readouterr().out
    # every reference score of this 2-step bank is 0, so the matrix has no number and no heat map is drawn
    assert "Transfer matrix" in out and "heat map:" not in out and not (tmp_path / "transfer" / "transfer.png").exists()
    code = main(["fit-subspace", "--recipe", "ipt", "--tasks", "glue-sst2", "--out", str(tmp_path / "x")])
    assert code == 2 and "--bank" in capsys.readouterr().err

    # Damaged artefacts are named in one line: a run, a bank entry, a subspace.
    def one_line_error(argv, *names):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert any(name in err for name in names), err

    one_line_error(["evaluate", str(tmp_path / "st-lora"), "--data-dir", str(data_dir)], "not a `taskspace tune` run")
    (tmp_path / "st-lora" / "config.json").write_text("{broken")
    one_line_error(["evaluate", str(tmp_path / "st-lora"), "--data-dir", str(data_dir)], "st-lora/config.json")
    entry = bank / "glue-sst2" / "lora" / "s0" / "theta.safetensors"
    entry.write_bytes(entry.read_bytes()[:40])
    one_line_error(["fit-subspace", "--recipe", "unified", "--bank", str(bank), "--tasks", "glue-sst2", "--methods",
                    "lora", "adapter", "--d", "3", "--out", str(tmp_path / "udt2"), "--data-dir", str(data_dir),
                    *common], "glue-sst2/lora/s0/theta.safetensors")
    assert not (tmp_path / "udt2").exists()
    for tensors in space.glob("*.safetensors"):
        tensors.write_bytes(tensors.read_bytes()[:40])
    one_line_error(["subspace-tune", "--subspace", str(space), "--task", "superglue-copa", "--method", "lora",
                    "--out", str(tmp_path / "st-again"), "--data-dir", str(data_dir), *common],
                   *[str(p.name) for p in space.glob("*.safetensors")])
    assert not (tmp_path / "st-again").exists()


def test_your_own_task_folder_is_listed_and_tuned_with_a_default_metric(tmp_path, data_dir, shared_dir, capsys, caplog):
    """A task folder outside the catalog: `tasks` lists it; `tune` scores it with ACC (it has options), says so once
    and records it; --metric names another."""
    mine = tmp_path / "data" / "my-sentiment"
    mine.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        lines = (data_dir / "glue-sst2" / f"glue-sst2_16_100_{split}.jsonl").read_text().splitlines()[:16]
        (mine / f"my-sentiment_16_100_{split}.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["tasks", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "1 tasks" in out
    # The metric and options tune gives it, read from its files (sst2's examples carry their options).
    assert [line.split()[:4] for line in out.splitlines() if line.startswith("my-sentiment")] == [
        ["my-sentiment", "ACC", "unknown", "yes"]]
    args = ["tune", "--task", "my-sentiment", "--method", "lora", "--data-dir", str(tmp_path / "data"),
            "--backbone", f"{shared_dir}/models/stories260K", "--steps", "1", "--eval-every", "1",
            "--max-test-examples", "4", "--backbone-opt", "max_output_length=2", "--no-progress",
            "--out", str(tmp_path / "runs")]
    with caplog.at_level("WARNING"):
        assert main(args) == 0
    assert "metric ACC" in capsys.readouterr().out
    said = [r.getMessage() for r in caplog.records if "not in the catalog" in r.getMessage()]
    assert len(said) == 1 and "scored with ACC (its examples have options)" in said[0]
    (run,) = (tmp_path / "runs").iterdir()
    assert "ACC: the default" in json.loads((run / "config.json").read_text())["data"]["sources"]["metric"]
    assert main([*args, "--metric", "Classification-F1"]) == 0
    assert "metric Classification-F1" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["tune", "bank"])
def test_a_second_process_on_the_same_run_is_refused(command, tmp_path, data_dir, shared_dir, capsys):
    """While one process writes a run directory (or a bank), another one asking for it stops at once with a clear
    message."""
    run = tmp_path / "runs" / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from taskspace.store import exclusive\n"
         "with exclusive(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    try:
        assert holder.stdout.readline().strip() == "locked"
        common = ["--data-dir", str(data_dir), "--backbone", f"{shared_dir}/models/stories260K", "--steps", "1",
                  "--no-progress"]
        if command == "tune":
            code = main(["tune", "--task", "glue-sst2", "--method", "lora", *common, "--out", str(tmp_path / "runs"),
                         "--run-name", "busy"])
        else:
            code = main(["bank", "--tasks", "glue-sst2", "--methods", "lora", *common, "--out", str(run)])
        assert code == 2
        assert "is being written by another taskspace process" in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_the_papers_index_is_printed_and_docs_papers_md_matches_it(capsys):
    from pathlib import Path

    from taskspace.analysis.papers import ENTRIES, papers_markdown

    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{e.paper} {e.item} [{e.status}]" in out for e in ENTRIES)
    assert main(["reproduce", "--status", "code"]) == 0
    code = capsys.readouterr().out
    assert "UDT Table 5 [code]" in code
    assert not any(item in code for item in ("IPT Fig. 6", "IPT Fig. 4", "UDT Tables 2, 4"))
    doc = (Path(__file__).parents[1] / "docs" / "papers.md").read_text()
    table = doc.split("<!-- papers:start -->\n")[1].split("<!-- papers:end -->")[0]
    assert table == papers_markdown(), "docs/papers.md is out of date: regenerate its table from taskspace.analysis.papers"
    for e in ENTRIES:  # every result the index points to exists
        for where in filter(None, (w.strip() for w in e.where.split(","))):
            assert (Path(__file__).parents[1] / where).exists(), where
