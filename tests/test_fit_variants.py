"""recipes/fit_variants.py: one bank, a recipe's fit once per variant (UDT's projection starts, MSF's batch against
alpha); the relative error of each training task's decoded solution is what the subspace decodes (1.0 at the anchor),
a second invocation reuses every finished fit, and the recipe's report holds the comparison."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from taskspace.backbones import load_backbone
from taskspace.errors import ConfigError
from taskspace.subspace import Bank, FitData, Subspace
from taskspace.subspace.bank import entry_dir
from test_recipes import TINY, _recipes


@pytest.fixture(scope="module")
def started(tmp_path_factory, shared_dir, data_dir):
    """The tiny recipe reduced to a bank of adapter, LoRA and prompts on its two training tasks, its unified fit of
    adapter and LoRA (d 3, 2 steps) and its MSF (d 3), compared in the starts ``zeros`` and ``normal``."""
    cfg = yaml.safe_load(TINY.format(llama=f"{shared_dir}/models/stories260K"))
    for section in ("fastfood", "analyses"):
        del cfg[section]
    cfg["udt"]["fit"]["methods"] = ["adapter", "lora"]
    del cfg["udt"]["landscape"]  # a plane needs three methods
    cfg["bank"]["train"]["select_initial"] = False  # every solution trained: a change to be relative to
    root = tmp_path_factory.mktemp("variants")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    args = [str(recipe), "--compare", "udt-start", "--out", str(root / "run"), "--doc", str(root / "start.md"),
            "--data-dir", str(data_dir), "--variants", "zeros", "normal"]
    _recipes("fit_variants").main(args)
    return root, cfg, args


def test_each_start_is_fitted_on_the_same_bank_and_reported(started):
    root, cfg, _ = started
    results = json.loads((root / "run" / "variants" / "udt-start" / "results.json").read_text())
    assert set(results) == {"zeros", "normal", "setting"} and results["setting"]["tasks"] == cfg["train_tasks"]
    for name, (up, down) in {"zeros": ("zeros", "uniform"), "normal": ("normal", "normal")}.items():
        config = results[name]["config"]
        assert (config["up_init"], config["down_init"]) == (up, down)
        assert config["d"] == 3 and config["train"]["steps"] == 2  # the recipe's fit otherwise
        assert set(results[name]["relative_error"]) == {"adapter", "lora"}
        assert set(results[name]["relative_error"]["lora"]) == set(cfg["train_tasks"])
        assert [step for step, _ in results[name]["dev"]] == [0, 2]
    saved = [json.loads((root / "run" / "variants" / "udt-start" / n / "subspace.json").read_text())["info"]["bank"]
             for n in ("zeros", "normal")]
    assert saved == [str((root / "run" / "bank").resolve())] * 2
    doc = (root / "start.md").read_text()
    for name in ("zeros", "normal"):
        errors = list(results[name]["relative_error"]["adapter"].values())
        assert None not in errors
        row = next(line for line in doc.splitlines() if line.startswith(f"| {name} |"))
        assert f"{sum(errors) / len(errors):.2f} ({min(errors):.2f}-{max(errors):.2f})" in row
    assert "| normal-adafactor |" not in doc  # not run
    assert results["setting"]["backbone"]["template"] and "Backbone: " in doc


def test_the_relative_error_is_the_decoded_solutions_and_one_at_the_anchor(started, shared_dir):
    root, cfg, _ = started
    module = _recipes("fit_variants")
    backbone = load_backbone(f"{shared_dir}/models/stories260K", decode="rank")
    bank = Bank(root / "run" / "bank", backbone)
    data = FitData.from_bank(bank, cfg["train_tasks"])
    space = Subspace.load(root / "run" / "variants" / "udt-start" / "normal", backbone)
    errors = module.relative_errors(space, data)
    # independently: each method's own vector from its bank solution, mixed with equal weights, decoded by theta()
    for i, task in enumerate(cfg["train_tasks"]):
        own = [space.methods[m].down(bank.stacked([task], m)[0][0] - space.methods[m].anchor)
               for m in ("adapter", "lora")]
        z = (own[0] + own[1]) / 2
        for m in ("adapter", "lora"):
            theta = bank.stacked([task], m)[0][0]
            expected = (space.theta(m, z) - theta).norm() / (theta - space.methods[m].anchor).norm()
            assert errors[m][task] == pytest.approx(float(expected), rel=1e-5)
    with torch.no_grad():
        for m in space.methods.values():
            for p in m.up.parameters():
                p.zero_()
    assert all(e == pytest.approx(1.0) for per in module.relative_errors(space, data).values() for e in per.values())


def test_a_second_invocation_reuses_the_fits(started, monkeypatch):
    root, _, args = started
    common = _recipes("recipe_common")
    monkeypatch.setattr(common, "fit_subspace", lambda *a, **k: pytest.fail("fitted"))
    before = json.loads((root / "run" / "variants" / "udt-start" / "results.json").read_text())
    _recipes("fit_variants").main(args)  # both finished: loaded, not fitted
    assert json.loads((root / "run" / "variants" / "udt-start" / "results.json").read_text()) == before
    with pytest.raises(pytest.fail.Exception, match="fitted"):
        _recipes("fit_variants").main([*args[:-2], "normal-adafactor"])  # not finished: fitted


def test_msf_against_an_eighth_of_its_alpha_and_the_authors_batch_on_the_finished_entries(started):
    """msf-balance: the recipe's MSF at its largest d, with alpha / 8, and at batch 64 for an eighth of the steps
    (at least one), on the training tasks whose entries are finished; the auto-encoder's reconstruction error."""
    root, cfg, _ = started
    module = _recipes("fit_variants")
    module.main([str(root / "tiny.yaml"), "--compare", "msf-balance", "--out", str(root / "run"), "--doc",
                 str(root / "msf.md"), "--finished-only"])
    results = json.loads((root / "run" / "variants" / "msf-balance" / "results.json").read_text())
    recipe, eighth, big = (results[n]["config"] for n in ("recipe", "alpha/8", "batch-64"))
    assert (recipe["method"], recipe["d"]) == ("prompt", 3)  # the recipe's IPT method, its largest d
    assert eighth["alpha"] == recipe["alpha"] / 8 and eighth["train"] == recipe["train"]
    assert (big["train"]["batch_size"], big["train"]["steps"], big["train"]["eval_every"]) == (64, 1, 1)
    assert big["alpha"] == recipe["alpha"] and recipe["train"]["batch_size"] == 2  # TINY's MSF batch
    assert set(results["recipe"]["relative_error"]) == {"prompt"}
    dev = [json.loads((entry_dir(root / "run" / "bank", t, "prompt", 0) / "scores.json").read_text())["dev"]
           for t in cfg["train_tasks"]]
    assert results["setting"]["bank_dev"] == pytest.approx(sum(dev) / len(dev))  # the fit's methods only
    assert results["setting"]["tasks"] == cfg["train_tasks"]
    doc = (root / "msf.md").read_text()
    assert doc.startswith("# MSF's batch against alpha, on the same bank") and "--finished-only" in doc
    assert all(f"| {n} |" in doc for n in ("recipe", "alpha/8", "batch-64"))


def test_finished_only_takes_the_finished_tasks_and_refuses_fewer_than_two(started, shared_dir):
    root, cfg, _ = started
    module = _recipes("fit_variants")
    backbone = load_backbone(f"{shared_dir}/models/stories260K", decode="rank")
    _, tasks = module.finished_tasks(root / "run", cfg, backbone)
    assert tasks == cfg["train_tasks"]
    scores = entry_dir(root / "run" / "bank", "ag_news", "lora", 0) / "scores.json"
    moved = scores.with_name("scores.moved")
    scores.rename(moved)
    try:
        with pytest.raises(ConfigError, match="1 of the bank's training tasks are finished"):
            module.finished_tasks(root / "run", cfg, backbone)
    finally:
        moved.rename(scores)


def test_a_recipe_without_a_udt_section_is_refused(tmp_path, shared_dir):
    cfg = yaml.safe_load(TINY.format(llama=f"{shared_dir}/models/stories260K"))
    del cfg["udt"]
    recipe = tmp_path / "no-udt.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="'udt' section"):
        _recipes("fit_variants").main([str(recipe), "--compare", "udt-start", "--out", str(tmp_path / "run"), "--doc",
                                       str(tmp_path / "d.md")])
    with pytest.raises(ConfigError, match="--variants zeroes: udt-start has the variants zeros, normal"):
        _recipes("fit_variants").main([str(recipe), "--compare", "udt-start", "--out", str(tmp_path / "run"), "--doc",
                                       str(tmp_path / "d.md"), "--variants", "zeroes"])
    assert not (tmp_path / "run").exists()


def test_the_recipe_report_of_the_run_holds_the_comparison(started, data_dir):
    """recipes/smol.py's report on the same run folder has the section, with the standalone document's table."""
    import argparse

    root, cfg, args = started
    ns = argparse.Namespace(config=args[0], out=str(root / "run"), report=str(root / "report.md"),
                            data_dir=str(data_dir), no_png=True)
    _recipes("smol_report.write").write_report(root / "report.md", cfg, ns)
    report = (root / "report.md").read_text()
    for doc, title, rows in (("start.md", "Where UDT's projections start, on the same bank", 4),
                             ("msf.md", "MSF's batch against alpha, on the same bank", 5)):
        if not (root / doc).is_file():  # the MSF test did not run before this one
            continue
        table = [line for line in (root / doc).read_text().splitlines() if line.startswith("| ")]
        assert f"## {title}" in report and len(table) == rows
        assert all(line in report.splitlines() for line in table)


def test_a_fit_saved_from_other_settings_is_refused(started, tmp_path):
    """An edited recipe does not get the old fit back: the saved fit's settings are compared with the recipe's."""
    root, cfg, args = started
    edited = yaml.safe_load((root / "tiny.yaml").read_text())
    edited["udt"]["fit"]["d"] = 4
    recipe = tmp_path / "edited.yaml"
    recipe.write_text(yaml.safe_dump(edited))
    before = (root / "run" / "variants" / "udt-start" / "results.json").read_text()
    with pytest.raises(ConfigError, match=r"udt-start/zeros was fitted with other settings \(d differ"):
        _recipes("fit_variants").main([str(recipe), *args[1:]])
    assert (root / "run" / "variants" / "udt-start" / "results.json").read_text() == before
