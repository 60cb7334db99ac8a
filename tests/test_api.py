"""The Python API: ``import taskspace`` is cheap and names the public face; a model the user already holds is a
backbone that ``tune``, ``predict`` and a run's checks work with; ``fit_subspace``; ``taskspace --version``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import taskspace
from taskspace.cli import main
from taskspace.errors import ConfigError
from taskspace.evaluation import capped_test_split
from tiny import SMALL, tiny_model


def test_importing_taskspace_loads_no_model_code():
    code = ("import sys, taskspace; "
            "print(sorted({'torch', 'transformers', 'taskspace.tuning', 'taskspace.cli'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves_to_its_module_object():
    import taskspace.backbones
    import taskspace.predict
    import taskspace.subspace
    import taskspace.tuning

    for name in taskspace.__all__:
        assert getattr(taskspace, name) is not None, name
    assert set(taskspace.__all__) <= set(dir(taskspace))
    assert taskspace.tune is taskspace.tuning.tune and taskspace.TuneConfig is taskspace.tuning.TuneConfig
    assert taskspace.wrap_model is taskspace.backbones.wrap_model
    assert taskspace.Predictor is taskspace.predict.Predictor
    assert taskspace.fit_subspace is taskspace.subspace.fit_subspace
    assert taskspace.build_finder("ipt").config == taskspace.MSFConfig()
    with pytest.raises(AttributeError, match="has no attribute 'tunes'"):
        taskspace.tunes  # noqa: B018


def test_version_option_prints_the_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"taskspace {taskspace.__version__}\n"


def _config(data_dir, method: str, backbone: str) -> taskspace.TuneConfig:
    config = taskspace.TuneConfig(task="glue-sst2", method=method, data_dir=str(data_dir), backbone=backbone,
                                  method_options=SMALL[method], max_test_examples=4, zero_shot=False)
    config.train = config.train.replace(steps=2, batch_size=2, eval_every=2, progress=False)
    return config


@pytest.mark.parametrize("method", list(SMALL))
def test_tune_and_predict_on_a_model_the_user_holds(method, shared_dir, data_dir, tmp_path):
    model, tokenizer = tiny_model("gpt2", str(shared_dir))
    model.train()
    backbone = taskspace.wrap_model(model, tokenizer, name="my-gpt2", max_output_length=4)
    assert not model.training and not any(p.requires_grad for p in model.parameters())  # frozen in place
    run = tmp_path / "run"
    result = taskspace.tune(_config(data_dir, method, "my-gpt2"), run, backbone=backbone)
    assert result.method.backbone is backbone and 0 <= result.scores["test"] <= 1
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["run"]["backbone"] == recorded["backbone"]["name"] == "my-gpt2"
    assert recorded["backbone"]["fingerprint"] == backbone.fingerprint()
    saved = [json.loads(line)["prediction"] for line in (run / "predictions" / "test.jsonl").read_text().splitlines()]
    test = capped_test_split(taskspace.load_task("glue-sst2", str(data_dir)), 4, 0)
    predictor = taskspace.Predictor.load(run, backbone=backbone)
    assert predictor.predict([taskspace.Query(e.input, e.options) for e in test]) == saved


def test_a_run_is_never_mixed_up_between_two_models_of_one_name(shared_dir, data_dir, tmp_path):
    model, tokenizer = tiny_model("gpt2", str(shared_dir), seed=0)
    mine = taskspace.wrap_model(model, tokenizer, name="my-gpt2", max_output_length=4)
    other = taskspace.wrap_model(tiny_model("gpt2", str(shared_dir), seed=1)[0], tokenizer, name="my-gpt2",
                                 max_output_length=4)
    assert mine.fingerprint() != other.fingerprint()
    config, run = _config(data_dir, "lora", "my-gpt2"), tmp_path / "run"
    first = taskspace.tune(config, run, backbone=mine)
    torch.testing.assert_close(taskspace.tune(config, run, backbone=mine).theta, first.theta)  # returned
    for unfinished in (False, True):  # neither returned nor resumed on other weights
        if unfinished:
            (run / "scores.json").unlink()
        with pytest.raises(ConfigError, match=f"other weights .*{other.fingerprint()[:12]}"):
            taskspace.tune(config, run, backbone=other)
    with pytest.raises(ConfigError, match="set the config's backbone to 'my-gpt2'"):
        taskspace.tune(_config(data_dir, "lora", "smollm2"), tmp_path / "named", backbone=mine)
    assert not (tmp_path / "named").exists()


def test_wrap_model_refuses_what_it_cannot_use(shared_dir):
    model, tokenizer = tiny_model("gpt2", str(shared_dir))
    with pytest.raises(ConfigError, match=r"expected a transformers model .*got dict"):
        taskspace.wrap_model({}, tokenizer, name="x")
    with pytest.raises(ConfigError, match="name=''"):
        taskspace.wrap_model(model, tokenizer, name="")
    with pytest.raises(ConfigError, match=r"language-modelling head .*got GPT2Model"):
        taskspace.wrap_model(model.transformer, tokenizer, name="x")
    with pytest.raises(ConfigError, match="dtype: not an option of a model already built"):
        taskspace.wrap_model(model, tokenizer, name="x", dtype="bfloat16")
    assert any(p.requires_grad for p in model.parameters())  # a refused model is left as it was


def test_fit_subspace_fits_and_saves_what_the_command_does(shared_dir, tmp_path):
    model, tokenizer = tiny_model("gpt2", str(shared_dir))
    backbone = taskspace.wrap_model(model, tokenizer, name="my-gpt2")
    data = taskspace.FitData(backbone, [])
    space = taskspace.fit_subspace("fastfood", data, config={"d": 3}, out=tmp_path / "ff")
    loaded = taskspace.Subspace.load(tmp_path / "ff", backbone)
    assert loaded.d == 3 and list(loaded.methods) == ["finetune"]
    z = torch.randn(3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.theta("finetune", z), space.theta("finetune", z))
    with pytest.raises(ConfigError, match="tasks= goes with a bank"):
        taskspace.fit_subspace("fastfood", data, ["glue-sst2"])
    with pytest.raises(ConfigError, match="the fastfood finder given has its config"):
        taskspace.fit_subspace(taskspace.build_finder("fastfood"), data, config={"d": 3})
