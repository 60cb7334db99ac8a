"""recipes/lora_shape.py: LoRA's shapes run through the budget sweep's code, the rule that picks one on dev, and the
committed record that outlives the run folders."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from test_recipes import _recipes

TASK = "glue-sst2"


def _run(dev: float, test: float = 0.5) -> dict:
    return {"dev": dev, "test": test, "best_step": 25, "seconds": 60.0, "parameters": 100}


def test_a_shape_replaces_the_librarys_only_by_more_than_the_tie():
    shapes = _recipes("lora_shape")
    other = shapes.SHAPES[0][0]
    assert shapes.SHAPES[-1][0] == shapes.LIBRARY and shapes.SHAPES[-1][2] == {}  # the library's own shape, run last

    def results(library: float, new: float, tasks=shapes.TASKS) -> dict:
        return {shapes.LIBRARY: {t: _run(library) for t in shapes.TASKS}, other: {t: _run(new) for t in tasks}}

    assert shapes.choose(results(0.50, 0.515))[0] == shapes.LIBRARY  # 1.5 points: within the tie
    chosen, why = shapes.choose(results(0.50, 0.53))
    assert chosen == other and why == "mean dev 53.0 against the library's 50.0"
    assert shapes.choose(results(0.50, 0.90, tasks=shapes.TASKS[:2]))[0] == shapes.LIBRARY  # not run on every task
    assert shapes.choose({other: {t: _run(0.9) for t in shapes.TASKS}}) == (
        shapes.LIBRARY, "the library's shape has not run on every task yet")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, shared_dir, data_dir):
    """Two shapes of the sweep, each one short run of the tiny Llama on one task, and their document."""
    from taskspace.backbones import load_backbone

    shapes = _recipes("lora_shape")
    llama = str(shared_dir / "models" / "stories260K")
    root = tmp_path_factory.mktemp("shapes")
    args = SimpleNamespace(out=str(root / "runs"), doc=str(root / "docs" / "lora-shape.md"), data_dir=str(data_dir),
                           backbone=llama, steps=2, batch_size=2, eval_every=1, max_test_examples=4)
    backbone = load_backbone(llama)
    for config in (shapes.SHAPES[0], shapes.SHAPES[-1]):
        shapes.run_one(args, backbone, "lora", shapes.TEMPLATE, config, TASK, patience=shapes.PATIENCE)
    shapes.write_outputs(args, shapes.read_record(shapes.record_path(args.doc), shapes.settings(args)))
    return SimpleNamespace(shapes=shapes, args=args, root=root)


def test_each_shape_trains_its_own_projections(swept):
    shapes, args = swept.shapes, swept.args
    record = shapes.read_json(shapes.record_path(args.doc))
    every, library = (record["results"][c[0]][TASK] for c in (shapes.SHAPES[0], shapes.SHAPES[-1]))
    # the tiny Llama: 5 layers, width 64, keys and values 32 wide, feed-forward 172 wide (gate, up, out); rank 8
    assert library["parameters"] == 5 * 8 * ((64 + 64) + (64 + 32))  # q, v
    assert every["parameters"] == 5 * 8 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 172))
    theta = shapes.read_json(shapes.run_folder(shapes.Path(args.out), "lora", shapes.TEMPLATE, shapes.SHAPES[0][0],
                                               TASK) / "theta.json")
    assert theta["config"]["targets"] == shapes.EVERY_PROJECTION and theta["config"]["r"] == 8
    assert record["settings"] == shapes.settings(args) and "patience 3" in record["settings"]


def test_the_record_outlives_the_run_folders(swept, tmp_path):
    from taskspace.errors import ConfigError

    shapes, args = swept.shapes, swept.args
    text = (swept.root / "docs" / "lora-shape.md").read_text()
    assert "| every projection, r 8, lr 2e-3 |" in text and "(1 of 4)" in text and "2 runs finished" in text
    lost = SimpleNamespace(**{**vars(args), "out": str(tmp_path / "gone"), "doc": str(tmp_path / "lora-shape.md")})
    shutil.copy(shapes.record_path(args.doc), shapes.record_path(lost.doc))
    shapes.write_outputs(lost, shapes.read_record(shapes.record_path(lost.doc), shapes.settings(lost)))
    assert (tmp_path / "lora-shape.md").read_text() == text
    with pytest.raises(ConfigError, match="lora-shape.json: its results were made with other settings"):
        shapes.read_record(shapes.record_path(args.doc), shapes.settings(SimpleNamespace(**{**vars(args), "steps": 3})))
