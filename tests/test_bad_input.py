"""Bad input on the command line: for every command, malformed values of its options give exit status 2 and one
line that names the option or file and what was expected; never a traceback, and the output folder is left
exactly as it was. The same for an output folder that cannot be written, a full disk and a folder where a file is
expected; Ctrl-C ends a training command with one line and exit status 130, and the same command resumes."""

from __future__ import annotations

import errno
import json
import logging
import os
import re

import pytest

from taskspace.cli import main

# {data}: the shared CrossFit folder; {llama}: the 260K-parameter Llama; {tmp}: the test's folder (its contents are
# compared before and after); {file}: an existing plain file; {nowhere}: a path that does not exist; {readonly}: a
# folder nobody but root can write in.
TUNE = ["tune", "--task", "glue-sst2", "--method", "lora", "--data-dir", "{data}", "--backbone", "{llama}",
        "--out", "{tmp}/runs", "--no-progress"]
CASES = {
    "tune": [
        (["--task", "no-such-task"], r"task 'no-such-task'"),
        (["--method", "loar"], r"argument --method: invalid choice: 'loar'"),
        (["--backbone", "{nowhere}"], r"backbone folder .* does not exist"),
        (["--backbone", "{file}"], r"no config.json|not a model folder|does not exist"),
        (["--family", "vision"], r"argument --family: invalid choice"),
        (["--decode", "beam"], r"argument --decode: invalid choice"),
        (["--backbone-opt", "max_input_length"], r"--backbone-opt 'max_input_length': expected key=value"),
        (["--backbone-opt", "colour=red"], r"--backbone-opt colour: unknown option"),
        (["--backbone-opt", "max_input_lenght=8"],
         r"max_input_lenght: unknown option .*; did you mean max_input_length"),
        (["--backbone-opt", "max_input_length=0"], r"max_input_length=0: expected a positive integer"),
        (["--backbone-opt", "max_input_length=-3"], r"max_input_length=-3: expected a positive integer"),
        (["--backbone-opt", "dtype=half"], r"dtype='half': expected auto"),
        (["--backbone-opt", "device=tpu9"], r"device='tpu9': expected auto, cpu, cuda"),
        (["--backbone-opt", "label_smoothing=nan"], r"label_smoothing='nan': expected a finite number"),
        (["--backbone-opt", "label_smoothing=1.5"], r"label_smoothing=1.5: expected a value in \[0, 1\)"),
        (["--data-dir", "{nowhere}"], r"data folder .* does not exist"),
        (["--data-dir", "{file}"], r"data folder .* does not exist"),
        (["--k", "x"], r"argument --k: invalid int value: 'x'"),
        (["--k", "0"], r"--k 0: expected a positive number"),
        (["--k", "-16"], r"--k -16: expected a positive number"),
        (["--data-seed", "7"], r"glue-sst2_16_7_train"),
        (["--opt", "r"], r"--opt .*'r': expected key=value"),
        (["--opt", "rank=4"], r"--opt .*'rank': unknown option"),
        (["--opt", "alpah=4"], r"--opt .*'alpah': unknown option; did you mean alpha\?"),
        (["--opt", "r=four"], r"--opt .* r='four': expected a value like 8"),
        (["--opt", "r=0"], r"lora r=0: expected a positive rank"),
        (["--opt", "alpha=inf"], r"alpha='inf': expected a finite number"),
        (["--init-from", "{nowhere}/theta"], r"theta.json: file not found"),
        (["--steps", "0"], r"--steps 0: expected at least 1"),
        (["--steps", "-5"], r"--steps -5: expected at least 1"),
        (["--steps", "1.5"], r"argument --steps: invalid int value: '1.5'"),
        (["--batch-size", "0"], r"--batch-size 0: expected at least 1"),
        (["--lr", "0"], r"--lr 0.0: expected a positive, finite learning rate"),
        (["--lr", "-1"], r"--lr -1.0: expected a positive"),
        (["--lr", "nan"], r"--lr nan: expected a positive"),
        (["--lr", "inf"], r"--lr inf: expected a positive"),
        (["--lr", "fast"], r"argument --lr: invalid float value: 'fast'"),
        (["--optimizer", "sgd"], r"argument --optimizer: invalid choice: 'sgd'"),
        (["--weight-decay", "-0.1"], r"--weight-decay -0.1: expected a finite number >= 0"),
        (["--weight-decay", "nan"], r"--weight-decay nan"),
        (["--schedule", "cosine"], r"argument --schedule: invalid choice"),
        (["--warmup-steps", "-1"], r"--warmup-steps -1: expected between 0 and --steps"),
        (["--warmup-steps", "400"], r"--warmup-steps 400: expected between 0 and --steps 200"),
        (["--max-grad-norm", "0"], r"--max-grad-norm 0.0: expected a positive"),
        (["--max-grad-norm", "nan"], r"--max-grad-norm nan: expected a positive"),
        (["--eval-every", "0"], r"--eval-every 0: expected at least 1"),
        (["--patience", "0"], r"--patience 0: expected at least 1"),
        (["--eval-batch-size", "0"], r"--eval-batch-size 0: expected a positive number"),
        (["--max-test-examples", "-4"], r"--max-test-examples -4: expected a positive number"),
        (["--max-test-examples", "0"], r"--max-test-examples 0: expected a positive number"),
        (["--metric", "BLEU"], r"unknown metric 'BLEU'; expected one of EM"),
        (["--out", "{file}"], r"--out .*: expected a folder, found a file"),
        (["--out", "{file}/runs"], r"--out .*/runs: .*a-file.txt is a file; expected a folder"),
        (["--out", "{readonly}/runs"], r"--out .*/runs: cannot write in .*readonly \(no permission"),
        (["--out", "{readonly}"], r"--out .*readonly: cannot write in .*readonly \(no permission"),
        (["--config", "{tmp}"], r"--config .*: expected a file, found a folder"),
        (["--set", "stesp=3"], r"--set: 'stesp' is not an option of taskspace tune; did you mean steps\?"),
    ],
    "evaluate": [
        (["{nowhere}"], r"RUN .*nowhere: expected a run directory"),
        (["{file}"], r"RUN .*a-file.txt: expected a run directory"),
        (["{tmp}"], r"config.json: file not found"),
    ],
    "tasks": [
        (["--category", "other"], r"argument --category: invalid choice"),
        (["--type", "poetry"], r"--type 'poetry': expected one of"),
        (["--data-dir", "{nowhere}"], r"data folder .* does not exist"),
        (["--data-dir", "{file}"], r"data folder .* does not exist"),
    ],
    "import-peft": [
        (["{nowhere}", "--task", "glue-sst2"], r"ADAPTER .*nowhere: expected a PEFT adapter folder"),
        (["{tmp}", "--task", "glue-sst2"], r"no adapter_config.json: expected a PEFT adapter folder"),
        (["{tmp}", "--task", "glue-sst2", "--no-progress"], r"no adapter_config.json: expected a PEFT adapter folder"),
    ],
    "params": [
        (["--backbone", "{nowhere}", "--method", "lora"], r"backbone folder .* does not exist"),
        (["--backbone", "{llama}", "--method", "lora", "--opt", "r=-1"], r"lora r=-1: expected a positive rank"),
        (["--backbone", "{llama}", "--method", "lora", "--opt", "colour=red"], r"'colour': unknown option"),
        (["--backbone", "{llama}", "--method", "magic"], r"argument --method: invalid choice"),
    ],
    "convert": [
        (["{nowhere}", "{tmp}/out"], r"data folder .* does not exist"),
        (["{data}", "{file}", "--tasks", "superglue-copa", "--seeds", "13"], r"expected a folder, found a file"),
        (["{data}", "{tmp}/out", "--tasks", "no-such-task"], r"task 'no-such-task'"),
        (["{data}", "{tmp}/out", "--k", "x"], r"argument --k: invalid int value"),
        (["{data}", "{tmp}/out", "--tasks", "superglue-copa", "--seeds", "7"], r"superglue-copa_16_7"),
    ],
    "bank": [
        (["--out", "{tmp}/b", "--methods", "magic", "--tasks", "glue-sst2"], r"argument --methods: invalid choice"),
        (["--out", "{tmp}/b", "--methods", "lora"], r"name the tasks: --tasks"),
        (["--out", "{tmp}/b", "--methods", "lora", "--split", "{nowhere}"], r"nowhere.*(not found|does not exist)"),
        (["--out", "{tmp}/b", "--methods", "lora", "--split", "{file}"], r"a-file.txt.*invalid JSON"),
        (["--out", "{file}", "--methods", "lora", "--tasks", "glue-sst2"], r"--out .*: expected a folder"),
        (["--out", "{readonly}/b", "--methods", "lora", "--tasks", "glue-sst2"], r"--out .*: cannot write in"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "glue-sst2", "--lr", "lora=x"], r"--lr 'lora=x'"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "glue-sst2", "--lr", "lora=nan"],
         r"--lr lora=nan: expected a positive, finite"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "glue-sst2", "--lr", "prompt=0.1"], r"--lr 'prompt=0.1'"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "glue-sst2", "--opt", "lora.rank=4"], r"'rank': unknown"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "glue-sst2", "--opt", "bogus"], r"--opt 'bogus'"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "glue-sst2", "--seeds", "x"], r"argument --seeds"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "glue-sst2", "--steps", "0"], r"--steps 0"),
        (["--out", "{tmp}/b", "--methods", "lora", "--tasks", "no-such-task"], r"no-such-task"),
    ],
    "fit-subspace": [
        (["--recipe", "magic", "--out", "{tmp}/s"], r"argument --recipe: invalid choice"),
        (["--recipe", "ipt", "--out", "{tmp}/s", "--bank", "{nowhere}", "--tasks", "glue-sst2"],
         r"nowhere.*(not found|does not exist)"),
        (["--recipe", "ipt", "--out", "{file}", "--bank", "{tmp}", "--tasks", "glue-sst2"], r"--out .*: expected a folder"),
        (["--recipe", "ipt", "--out", "{tmp}/s", "--tasks", "glue-sst2", "--d", "0"], r"--d 0: expected"),
        (["--recipe", "ipt", "--out", "{tmp}/s", "--tasks", "glue-sst2", "--d", "-1"], r"--d -1: expected"),
        (["--recipe", "ipt", "--out", "{tmp}/s", "--tasks", "glue-sst2", "--hidden", "0"], r"--hidden 0: expected"),
        (["--recipe", "ipt", "--out", "{tmp}/s", "--tasks", "glue-sst2", "--alpha", "nan"], r"--alpha nan: expected"),
        (["--recipe", "unified", "--out", "{tmp}/s", "--tasks", "glue-sst2", "--dist-weight", "-1"],
         r"--dist-weight -1.0: expected"),
    ],
    "subspace-tune": [
        (["--subspace", "{nowhere}", "--task", "glue-sst2", "--method", "prompt", "--out", "{tmp}/r"],
         r"nowhere.*(not found|does not exist)"),
        (["--subspace", "{tmp}", "--task", "glue-sst2", "--method", "prompt", "--out", "{tmp}/r", "--z-init", "ones"],
         r"argument --z-init: invalid choice"),
        (["--subspace", "{tmp}", "--task", "glue-sst2", "--method", "prompt", "--out", "{tmp}/r", "--z-std", "nan"],
         r"--z-std nan: expected"),
        (["--subspace", "{tmp}", "--task", "glue-sst2", "--method", "prompt", "--out", "{file}"],
         r"--out .*: expected a folder"),
        (["--subspace", "{tmp}", "--task", "glue-sst2", "--method", "prompt", "--out", "{readonly}/r"],
         r"--out .*: cannot write in"),
    ],
    "transfer": [
        (["--subspace", "{nowhere}", "--runs", "{tmp}", "--out", "{tmp}/t"], r"nowhere.*(not found|does not exist)"),
        (["--subspace", "{tmp}", "--runs", "{tmp}", "--out", "{tmp}/t", "--targets", "magic"],
         r"argument --targets: invalid choice"),
        (["--subspace", "{tmp}", "--runs", "{tmp}", "--out", "{file}"], r"--out .*: expected a folder"),
    ],
}


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*"))


def _cases():
    for command, cases in CASES.items():
        for args, expected in cases:
            yield pytest.param(command, args, expected, id=f"{command} {' '.join(args)}")


@pytest.mark.parametrize("command,args,expected", list(_cases()))
def test_bad_input_is_one_clear_line(command, args, expected, tmp_path, data_dir, shared_dir, capsys):
    (tmp_path / "a-file.txt").write_text("not what was expected\n")
    values = {"data": str(data_dir), "llama": f"{shared_dir}/models/stories260K", "tmp": str(tmp_path),
              "file": str(tmp_path / "a-file.txt"), "nowhere": str(tmp_path / "nowhere"),
              "readonly": str(tmp_path / "readonly")}
    if any("{readonly}" in a for a in args):
        if os.geteuid() == 0:
            pytest.skip("root writes in a read-only folder")
        (tmp_path / "readonly").mkdir(mode=0o555)
    if command == "tune":
        argv = [a.format(**values) for a in TUNE]
        # Later values of an option win in argparse; a bad value replaces the good default.
        argv += [a.format(**values) for a in args]
    else:
        argv = [command, *[a.format(**values) for a in args]]
        if command in ("bank", "fit-subspace", "subspace-tune"):
            argv += ["--data-dir", values["data"], "--backbone", values["llama"]]
    before = _snapshot(tmp_path)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"taskspace {command}: error: "), lines[0]
    assert re.search(expected, lines[0]), lines[0]
    assert _snapshot(tmp_path) == before


def test_bad_data_files_name_the_file_and_line(tmp_path, data_dir, shared_dir, capsys):
    """A malformed line of a task file: exit 2, the file and the line named, nothing written."""
    task = tmp_path / "data" / "glue-sst2"
    task.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        lines = (data_dir / "glue-sst2" / f"glue-sst2_16_100_{split}.jsonl").read_text().splitlines()[:8]
        if split == "train":
            bad = json.loads(lines[2])
            bad["output"] = "maybe"  # not one of the options
            lines[2] = json.dumps(bad)
        (task / f"glue-sst2_16_100_{split}.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["tune", "--task", "glue-sst2", "--method", "lora", "--data-dir", str(tmp_path / "data"),
            "--backbone", f"{shared_dir}/models/stories260K", "--out", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "glue-sst2_16_100_train.jsonl, line 3" in err, err
    assert not (tmp_path / "runs").exists()


def _tune_argv(tmp_path, data_dir, shared_dir, *extra):
    values = {"data": str(data_dir), "llama": f"{shared_dir}/models/stories260K", "tmp": str(tmp_path)}
    return [a.format(**values) for a in TUNE] + list(extra)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_folder_where_a_split_file_is_expected_is_named(tmp_path, shared_dir, data_dir, capsys):
    """Your own data with a ``train.csv`` that is a folder: that file is named, not taken for the absence of your
    own data (which made it a CrossFit task, whose columns the column options cannot set)."""
    own = tmp_path / "own"
    (own / "train.csv").mkdir(parents=True)
    (own / "dev.csv").write_text("text,label\na fine film,good\n")
    before = _snapshot(tmp_path)
    argv = _tune_argv(tmp_path, data_dir, shared_dir, "--task", "mine", "--data-dir", str(own),
                      "--input-column", "text", "--output-column", "label")
    assert main(argv) == 2
    line = _one_line(capsys)
    assert line == (f"taskspace tune: error: {own / 'train.csv'}: expected a train split file with a header, found "
                    "a folder"), line
    assert _snapshot(tmp_path) == before


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, shared_dir, data_dir, capsys, monkeypatch):
    """No space left when the run's first file is written (after the model loaded: a full disk shows only then):
    exit status 2, one line naming the file, and the output folder as it was."""
    from taskspace import store

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "fsync", full)
    before = _snapshot(tmp_path)
    assert main(_tune_argv(tmp_path, data_dir, shared_dir, "--run-name", "r")) == 2
    line = _one_line(capsys)
    assert line == (f"taskspace tune: error: {tmp_path / 'runs' / 'r' / 'config.json'}: cannot write it (No space "
                    "left on device)"), line
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["tune", "bank"])
def test_ctrl_c_is_one_line_and_the_same_command_resumes(command, tmp_path, shared_dir, data_dir, capsys, caplog,
                                                         monkeypatch):
    """Ctrl-C during training (here just after the step-2 checkpoint is written): exit status 130 and one line
    that names the saved state and says how to resume, no traceback; the same command then resumes from step 2,
    says so, and finishes without leaving its lock file."""
    from taskspace.checkpoint import Checkpoint

    save = Checkpoint.save

    def save_then_interrupt(self, trainable, opt, step, *rest):
        save(self, trainable, opt, step, *rest)
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_interrupt)
    short = ["--steps", "4", "--eval-every", "2", "--max-test-examples", "4"]
    if command == "tune":
        argv = _tune_argv(tmp_path, data_dir, shared_dir, "--run-name", "r", *short)
        run = tmp_path / "runs" / "r"
    else:
        argv = ["bank", "--out", str(tmp_path / "b"), "--methods", "lora", "--tasks", "glue-sst2", "--seeds", "0",
                "--data-dir", str(data_dir), "--backbone", f"{shared_dir}/models/stories260K", "--no-progress", *short]
        run = tmp_path / "b" / "glue-sst2" / "lora" / "s0"
    assert main(argv) == 130
    assert _one_line(capsys) == (f"taskspace {command}: interrupted; the training state of step 2 is saved in "
                                 f"{run / 'checkpoint'}; run the same command to resume")
    assert not (run / "scores.json").exists()
    monkeypatch.setattr(Checkpoint, "save", save)
    with caplog.at_level(logging.WARNING, logger="taskspace.train"):
        assert main(argv) == 0
    assert f"resuming {run} from its checkpoint at step 2 of 4" in caplog.text
    assert (run / "scores.json").is_file()
    assert not list(tmp_path.rglob(".lock"))


def test_ctrl_c_ends_a_recipe_in_one_line(capsys, monkeypatch):
    """Ctrl-C in a recipe runner: exit status 130 and one line with what training saved (or what is kept)."""
    import signal
    import sys
    from pathlib import Path

    from taskspace.errors import Interrupted

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "recipes"))
    from recipe_common import run_main

    monkeypatch.setattr(sys, "argv", ["smol.py"])
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # run_main's SIGTERM handler stays out of pytest

    def training():
        raise Interrupted("the training state of step 20 is saved in out/fit/checkpoint")

    def loading():
        raise KeyboardInterrupt

    for main_of_runner, saved in ((training, "the training state of step 20 is saved in out/fit/checkpoint"),
                                  (loading, "finished stages and runs are kept in --out")):
        with pytest.raises(SystemExit) as stop:
            run_main(main_of_runner)
        assert stop.value.code == 130
        assert capsys.readouterr().err == f"smol.py: interrupted; {saved}; run the same command to resume\n"
