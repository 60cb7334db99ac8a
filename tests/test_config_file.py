"""``--config FILE`` and ``--set KEY=VALUE`` on every command: a run's config.json repeats the run, YAML sections
and overrides reach the library config, the precedence holds, and bad files get one line."""

from __future__ import annotations

import json

import pytest

from taskspace.cli import build_parser, main
from taskspace.cli.configfile import apply_config
from taskspace.cli.subspace import bank_spec_from
from taskspace.subspace.bank import BankSpec


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_runs_config_json_repeats_the_run(tmp_path, data_dir, shared_dir, capsys):
    llama = f"{shared_dir}/models/stories260K"
    assert main(["tune", "--task", "glue-sst2", "--method", "lora", "--opt", "r=2", "--backbone", llama,
                 "--decode", "rank", "--data-dir", str(data_dir), "--steps", "2", "--eval-every", "2", "--lr", "0.01",
                 "--max-test-examples", "4", "--no-progress", "--out", str(tmp_path / "a")]) == 0
    (first,) = (tmp_path / "a").iterdir()
    assert main(["tune", "--config", str(first / "config.json"), "--no-progress", "--out", str(tmp_path / "b")]) == 0
    (again,) = (tmp_path / "b").iterdir()
    assert again.name == first.name  # the name hashes every setting: all came back
    read = lambda run, name: json.loads((run / name).read_text())  # noqa: E731
    assert read(again, "config.json")["run"] == read(first, "config.json")["run"]
    assert read(again, "scores.json")["test"] == read(first, "scores.json")["test"]


def _size(capsys) -> int:
    out = capsys.readouterr().out
    return int(out.split("D = ")[1].replace(",", "").split()[0])


def test_yaml_sections_overrides_and_options_in_that_order(tmp_path, shared_dir, capsys):
    llama = f"{shared_dir}/models/stories260K"
    config = _write(tmp_path / "c.yaml", f"method: lora\nbackbone: {llama}\nmethod_options:\n  r: 4\n")
    assert main(["params", "--config", config]) == 0
    r4 = _size(capsys)
    assert main(["params", "--config", config, "--set", "method_options.r=8"]) == 0
    assert _size(capsys) == 2 * r4  # LoRA's size is linear in r
    assert main(["params", "--config", config, "--set", "method_options.r=8", "--opt", "r=2"]) == 0
    assert _size(capsys) == r4 // 2  # an option typed on the command line beats both


def test_a_bank_json_gives_back_its_spec(tmp_path, data_dir):
    # the command records the data folder resolved (a path through a link becomes the link's target)
    spec = BankSpec(tasks=["glue-sst2", "ag_news"], methods={"lora": {"r": 2}, "prompt": {"n_tokens": 5}},
                    data_dir=str(data_dir.resolve()), seeds=[0, 1], lr={"lora": 0.01}, k=16)
    spec = spec.updated({"train": {"steps": 7, "batch_size": 3}})
    config = _write(tmp_path / "bank.json", json.dumps({"format": "taskspace.bank/1", "spec": spec.identity(),
                                                        "backbone": {"name": "x", "fingerprint": "y"}}))
    parser = build_parser()
    args = parser.parse_args(apply_config(parser, ["bank", "--config", config, "--out", str(tmp_path / "b")],
                                          lambda command: {"zero_shot": False}))
    assert bank_spec_from(args).identity() == spec.identity()


@pytest.mark.parametrize("text,extra,message", [
    ("method: lora\nlearning_rate: 0.1\n", [], r"'learning_rate' is not an option of taskspace tune; expected one of"),
    ("method: lora\nstesp: 3\n", [], r"'stesp' is not an option of taskspace tune; did you mean steps\?$"),
    ("method: lora\n", ["--set", "train.eval_evry=2"], r"'eval_evry' is not an option of taskspace tune; did you mean "
                                                       r"eval_every\?$"),
    ("task: glue-sst2\nmethod: lora\nmethod_options: {alpah: 4}\n", [],
     r"--opt \(for lora\) 'alpah': unknown option; did you mean alpha\?$"),
    ("method: lora\nsteps: many\n", [], r"steps: 'many' is not valid for --steps"),
    ("method: nothing\n", [], r"method: 'nothing'; expected one of prompt"),
    ("method: [lora\n", [], r"c.yaml, line 2: not valid YAML"),
    ("- lora\n", [], r"expected a mapping of option names to values, found a list"),
    ("run: {task: t, method: lora, test_sample_seed: 3}\n", [], r"test_sample_seed: 3 cannot be set from the command"),
    ("method: lora\n", ["--set", "steps"], r"--set 'steps': expected KEY=VALUE"),
    (None, ["--config", "missing.yaml"], r"--config missing.yaml: file not found"),
])
def test_bad_config_is_one_line(tmp_path, capsys, monkeypatch, text, extra, message):
    import re

    monkeypatch.chdir(tmp_path)
    args = ["tune", *extra] if text is None else ["tune", "--config", _write(tmp_path / "c.yaml", text), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("taskspace tune: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
