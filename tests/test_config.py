"""One configuration convention: every config validates at construction, round-trips through a dict, keeps its
runtime fields out of its identity, and the command line takes its defaults from the library's configs."""

from __future__ import annotations

import dataclasses

import pytest

from taskspace.cli import build_parser, main
from taskspace.cli.subspace import bank_spec_from, finder_config_from, subspace_tune_config_from
from taskspace.cli.tune import tune_config_from
from taskspace.config import Config
from taskspace.deltas import METHODS
from taskspace.errors import ConfigError
from taskspace.subspace import FINDERS, BankSpec, SubspaceTuneConfig, UnifiedConfig
from taskspace.train import TrainConfig
from taskspace.tuning import TuneConfig, tune_training

REQUIRED = {TuneConfig: dict(task="glue-sst2", method="lora", data_dir="/data"),
            BankSpec: dict(tasks=["glue-sst2"], methods={"lora": {"r": 2}}, data_dir="/data"),
            SubspaceTuneConfig: dict(task="glue-sst2", method="prompt", data_dir="/data")}
CONFIGS = [TrainConfig, TuneConfig, BankSpec, SubspaceTuneConfig, *(f.config_class for f in FINDERS.values()),
           *(m.config_class for m in METHODS.values())]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_round_trips_and_documents_its_fields(cls):
    config = cls(**REQUIRED.get(cls, {}))
    assert cls.from_dict(config.to_dict()) == config
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    with pytest.raises(ConfigError, match="unknown option.*'colour'"):
        cls.from_dict({**config.to_dict(), "colour": "red"})


def test_a_misspelt_key_gets_the_close_names():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['stesp'\] for TrainConfig; did you mean steps\?$"):
        TrainConfig.from_dict({"stesp": 3})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['colour'\] for TrainConfig; valid: \["):
        TrainConfig.from_dict({"colour": "red"})


def test_runtime_fields_stay_out_of_identity():
    config = TuneConfig(**REQUIRED[TuneConfig], keep_checkpoint=True, train=tune_training(progress=False))
    identity = config.identity()
    assert "keep_checkpoint" not in identity and "progress" not in identity["train"]
    assert identity == TuneConfig(**REQUIRED[TuneConfig]).identity()


@pytest.mark.parametrize("changes,message", [
    (dict(steps=0), "--steps 0: expected at least 1"),
    (dict(lr=float("nan")), "--lr nan: expected a positive, finite learning rate"),
    (dict(optimizer="sgd"), "--optimizer 'sgd': expected one of adamw, adafactor"),
    (dict(warmup_steps=400), "--warmup-steps 400: expected between 0 and --steps 300"),
    (dict(max_grad_norm=0.0), "--max-grad-norm 0.0: expected a positive"),
])
def test_configs_validate_at_construction(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)
    assert TrainConfig(max_grad_norm=None).max_grad_norm is None  # none: clipping off


def test_unified_methods_are_checked():
    with pytest.raises(ConfigError, match="--methods 'magic': expected one of"):
        UnifiedConfig(methods=("lora", "magic"))
    with pytest.raises(ConfigError, match="--methods .*at least two different methods"):
        UnifiedConfig(methods=("lora",))


def _parse(argv):
    return build_parser().parse_args(argv)


def test_the_command_line_defaults_are_the_librarys(tmp_path):
    """A command given only what it requires builds exactly the library's default configuration: the CLI holds no
    defaults of its own (the bug this replaces: fit-subspace --recipe unified trained with AdamW + linear decay,
    UnifiedConfig with Adafactor at a constant rate)."""
    data = str(tmp_path)
    for method in METHODS:  # the learning rate is each method's own
        args = _parse(["tune", "--task", "glue-sst2", "--method", method, "--data-dir", data])
        assert tune_config_from(args) == TuneConfig(task="glue-sst2", method=method, data_dir=data)
    args = _parse(["bank", "--out", data, "--methods", "lora", "adapter", "--tasks", "glue-sst2", "--data-dir", data])
    assert bank_spec_from(args) == BankSpec(tasks=["glue-sst2"], methods={"lora": {}, "adapter": {}}, data_dir=data)
    for name, finder in FINDERS.items():
        args = _parse(["fit-subspace", "--recipe", name, "--out", data])
        assert finder_config_from(args) == finder.config_class(), name
    assert finder_config_from(_parse(["fit-subspace", "--recipe", "unified", "--out", data])).train.optimizer == \
        "adafactor"
    args = _parse(["subspace-tune", "--subspace", data, "--task", "glue-sst2", "--method", "prompt", "--out", data,
                   "--data-dir", data])
    assert subspace_tune_config_from(args) == SubspaceTuneConfig(task="glue-sst2", method="prompt", data_dir=data)


def test_given_options_reach_every_level_of_the_config(tmp_path):
    data = str(tmp_path)
    args = _parse(["tune", "--task", "glue-sst2", "--method", "lora", "--data-dir", data, "--seed", "3", "--lr", "0.5",
                   "--max-grad-norm", "none", "--patience", "2", "--k", "32", "--no-progress", "--keep-checkpoint"])
    config = tune_config_from(args)
    assert (config.seed, config.train.seed, config.train.lr, config.train.max_grad_norm, config.train.patience,
            config.k, config.train.progress, config.keep_checkpoint) == (3, 3, 0.5, None, 2, 32, False, True)
    config = finder_config_from(_parse(["fit-subspace", "--recipe", "ipt", "--out", data, "--d", "7", "--steps", "9",
                                        "--method", "adapter"]))
    assert (config.d, config.train.steps, config.method) == (7, 9, "adapter")
    assert config.train.optimizer == "adamw"  # the rest stays the finder's own default


@pytest.mark.parametrize("command", [
    ["tune", "--task", "glue-sst2", "--method", "lora"],
    ["bank", "--out", "x", "--methods", "lora", "--tasks", "glue-sst2"],
    ["fit-subspace", "--recipe", "unified", "--out", "x"],
    ["subspace-tune", "--subspace", "x", "--task", "glue-sst2", "--method", "lora", "--out", "x"],
])
def test_help_shows_the_library_defaults(command):
    """Every derived option's help names the default its command will use."""
    sub = build_parser()._subparsers._group_actions[0].choices[command[0]]
    args = _parse(command + ["--data-dir", "/d"] if command[0] != "fit-subspace" else command)
    configs = {"tune": lambda: tune_config_from(args), "bank": lambda: bank_spec_from(args),
               "fit-subspace": lambda: finder_config_from(args), "subspace-tune": lambda: subspace_tune_config_from(args)}
    config = configs[command[0]]()
    text = " ".join(sub.format_help().split())
    for field, value in (("steps", config.train.steps), ("batch_size", config.train.batch_size),
                         ("eval_every", config.train.eval_every)):
        help_text = {"steps": "optimiser steps", "batch_size": "training examples per step",
                     "eval_every": "evaluate on dev every N steps"}[field]
        assert f"{help_text} (default: {value})" in text or f"{help_text} (default: ipt: {value}" in text, field
    if command[0] == "fit-subspace":
        assert "ipt: adamw; unified: adafactor" in text


def test_runtime_options_are_accepted_by_every_finder(tmp_path):
    args = _parse(["fit-subspace", "--recipe", "fastfood", "--out", str(tmp_path), "--no-progress"])
    assert finder_config_from(args) == FINDERS["fastfood"].config_class()  # the progress bar changes no result


def test_an_option_of_another_finder_is_refused(tmp_path, capsys):
    code = main(["fit-subspace", "--recipe", "unified", "--out", str(tmp_path / "s"), "--alpha", "3"])
    assert code == 2
    assert "--alpha: not an option of --recipe unified" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_choices_come_from_the_registries():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    method = next(a for a in commands["tune"]._actions if a.dest == "method")
    recipe = next(a for a in commands["fit-subspace"]._actions if a.dest == "recipe")
    assert list(method.choices) == list(METHODS) and list(recipe.choices) == list(FINDERS)


def test_every_config_field_is_a_config_option():
    """Configs declare fields with taskspace.config.option (help text, checks), never a bare dataclass field."""
    for cls in CONFIGS:
        assert issubclass(cls, Config)
        for f in dataclasses.fields(cls):
            assert "cli" in f.metadata, f"{cls.__name__}.{f.name}"


def test_presets_give_the_papers_settings_under_the_options_given(tmp_path, capsys):
    data = str(tmp_path)
    config = tune_config_from(_parse(["tune", "--task", "glue-sst2", "--method", "prompt", "--data-dir", data,
                                      "--preset", "ipt-paper", "--steps", "5", "--opt", "n_tokens=10"]))
    assert config.method_options == {"n_tokens": 10, "init": "normal", "init_std": 0.02}  # --opt wins
    assert (config.train.lr, config.train.batch_size, config.train.eval_every, config.train.steps) == \
        (1e-4, 8, 1000, 5)  # the paper's, but --steps
    spec = bank_spec_from(_parse(["bank", "--out", data, "--methods", "adapter", "lora", "prefix", "--tasks",
                                  "glue-sst2", "--data-dir", data, "--preset", "udt-paper"]))
    assert spec.methods["lora"] == {"r": 10, "alpha": 16.0, "targets": ["q", "v"]} and spec.methods["adapter"]["r"] == 12
    assert spec.train.optimizer == "adafactor" and spec.lr["lora"] == METHODS["lora"].default_lr
    unified = finder_config_from(_parse(["fit-subspace", "--recipe", "unified", "--out", data, "--preset",
                                         "udt-paper"]))
    assert (unified.train.lr, unified.train.batch_size, unified.train.eval_every) == (1e-4, 4, 1000)
    ist = subspace_tune_config_from(_parse(["subspace-tune", "--subspace", data, "--task", "glue-sst2", "--method",
                                            "lora", "--out", data, "--data-dir", data, "--preset", "udt-paper"]))
    assert (ist.train.lr, ist.train.steps, ist.train.eval_every, ist.train.optimizer) == (1e-2, 5000, 500, "adafactor")
    # A preset names the methods and finders it has settings for; others are refused, in one line.
    assert main(["tune", "--task", "glue-sst2", "--method", "lora", "--data-dir", data, "--preset", "ipt-paper"]) == 2
    assert "--preset ipt-paper has settings for prompt, not for lora" in capsys.readouterr().err
    assert main(["fit-subspace", "--recipe", "ipt", "--out", data, "--preset", "udt-paper"]) == 2
    assert "not for ipt" in capsys.readouterr().err


def test_every_preset_value_is_a_valid_config():
    from taskspace.presets import PRESETS
    from taskspace.subspace import finder_class

    for name, stages in PRESETS.items():
        tuning = stages["tuning"]
        for method, options in tuning["methods"].items():
            METHODS[method].config_class.from_dict(options)
        TrainConfig().updated(tuning.get("train", {}))
        for finder, values in stages["fit-subspace"].items():
            finder_class(finder).config_class().updated(values)
        SubspaceTuneConfig(**REQUIRED[SubspaceTuneConfig]).updated(stages["subspace-tune"])


def test_tune_and_bank_train_with_the_budget_methods_shows(capsys):
    """tune's and bank's defaults are the chosen budget (docs/budget.md), every method alike, and `taskspace
    methods` says so; prompt tuning's learning rate is the swept one."""
    from taskspace.cli import main
    from taskspace.subspace import BankSpec
    from taskspace.tuning import TUNE_BUDGET

    for train in (TuneConfig(**REQUIRED[TuneConfig]).train, BankSpec(tasks=["glue-sst2"], methods={"prompt": {}}, data_dir="x").train):
        assert {k: getattr(train, k) for k in TUNE_BUDGET} == TUNE_BUDGET == {
            "steps": 200, "batch_size": 8, "eval_every": 25, "patience": 3}
    assert TuneConfig(task="x", method="prompt", data_dir="x").train.lr == 0.3
    assert main(["methods"]) == 0
    assert "--steps 200 --batch-size 8 --eval-every 25 --patience 3" in capsys.readouterr().out
