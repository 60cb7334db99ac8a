"""recipes/backbones.py's --reuse-budget: a run of recipes/budget.py's sweep stands in for the recipe's own only when
``tune`` finds it was made with the recipe's settings."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from test_recipes import _recipes

TASK = "glue-sst2"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, shared_dir, data_dir):
    """The tiny Llama, and one run of the budget sweep's code (BitFit at the rate it tried first) under a folder."""
    from taskspace.backbones import load_backbone

    budget = _recipes("budget")
    llama = str(shared_dir / "models" / "stories260K")
    out = tmp_path_factory.mktemp("sweep")
    args = SimpleNamespace(out=str(out), data_dir=str(data_dir), backbone=llama, steps=2, batch_size=2,
                           eval_every=1, max_test_examples=4)
    backbone = load_backbone(llama)
    budget.run_one(args, backbone, "bitfit", backbone.template, budget.GRID["bitfit"][0], TASK)
    return SimpleNamespace(out=out, llama=llama, backbone=backbone, args=args)


def _recipe_args(sweep, reuse, **budget):
    return SimpleNamespace(data_dir=sweep.args.data_dir, eval_batch_size=32, max_test_examples=4,
                           reuse_budget=None if reuse is None else str(reuse),
                           **{"steps": 2, "batch_size": 2, "eval_every": 1, **budget})


def test_the_sweeps_run_is_linked_only_with_the_same_settings(sweep, tmp_path):
    from taskspace.errors import ConfigError
    from taskspace.tuning import tune

    backbones = _recipes("backbones")
    args = _recipe_args(sweep, sweep.out)
    train = backbones.training_budget(args)
    config = backbones.run_config(args, train, sweep.llama, TASK, "bitfit")
    twin, folder = backbones.budget_twin(config, sweep.backbone, sweep.out)
    # the sweep named the backbone's template and scored the zero-shot state; nothing else differs
    assert twin.backbone_options == {"template": sweep.backbone.template} and twin.zero_shot and not config.zero_shot
    assert twin.identity()["train"] == config.identity()["train"]
    assert tune(twin, folder, backbone=sweep.backbone).scores == backbones.read_json(folder / "scores.json")
    # methods the sweep ran without early stopping, rates or steps it did not run: never taken
    assert backbones.budget_twin(backbones.run_config(args, train, sweep.llama, TASK, "prompt"), sweep.backbone,
                                 sweep.out) is None
    assert backbones.budget_twin(dataclasses.replace(config, train=config.train.replace(lr=1e-3)), sweep.backbone,
                                 sweep.out) is None
    longer = backbones.run_config(args, train.replace(steps=3), sweep.llama, TASK, "bitfit")
    with pytest.raises(ConfigError):  # the folder is the sweep's, but tune finds another budget recorded there
        tune(*backbones.budget_twin(longer, sweep.backbone, sweep.out), backbone=sweep.backbone)

    run_dir = tmp_path / "backbones" / TASK / "bitfit"
    assert backbones.run_one(args, train, sweep.backbone, sweep.llama, TASK, "bitfit", run_dir)
    assert run_dir.is_symlink() and run_dir.resolve() == folder.resolve()
    collected = backbones.collect(tmp_path)  # no frozen.json: nothing; with one, the cell is marked
    assert collected == {}
    backbones.write_json(run_dir.parent / "frozen.json", {"dev": 0.0, "test": 0.0})
    entry = backbones.collect(tmp_path)["backbones"][TASK]["bitfit"]
    assert entry["reused"] and entry["wall_seconds"] == backbones.read_json(folder / "timing.json")["seconds"]
    assert not backbones.run_one(args, train, sweep.backbone, sweep.llama, TASK, "bitfit", run_dir)  # verified
    with pytest.raises(SystemExit, match="is a link to a budget sweep's run: give --reuse-budget"):
        backbones.run_one(_recipe_args(sweep, None), train, sweep.backbone, sweep.llama, TASK, "bitfit", run_dir)


def test_a_run_of_the_recipe_is_made_with_the_methods_settings(sweep, tmp_path):
    """The record's settings of a method (its rate and options as a run records them) are those of the recipe's own
    runs: a fresh prompt-tuning run is collected, not left out as made with other settings."""
    backbones = _recipes("backbones")
    args = _recipe_args(sweep, None)
    run_dir = tmp_path / "backbones" / TASK / "prompt"
    assert backbones.run_one(args, backbones.training_budget(args), sweep.backbone, sweep.llama, TASK, "prompt",
                             run_dir)
    assert backbones.made_with(run_dir, backbones.method_settings()["prompt"])
    backbones.write_json(run_dir.parent / "frozen.json", {"dev": 0.0, "test": 0.0})
    assert "prompt" in backbones.collect(tmp_path)["backbones"][TASK]
