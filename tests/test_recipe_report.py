"""recipes/smol.py's report is built from results.json alone, and a results.json written by an earlier version of
the runner is reported as that version reported it: the report of a fixed run (tests/recipe_report/: a recipe with
every stage, and the results.json, stages.json and analysis tables a run of it records), alone and as one part of
a two-part file, equals the one the runner wrote from it before its stages and report moved into modules of their
own (tests/recipe_report/expected/). No model, no training, no figures."""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "recipe_report"
EXPECTED = FIXTURE / "expected"

#: The values of the report's environment line, written as these placeholders in the expected reports (the
#: library's version, Python's and torch's are the host's, not the run's).
PLACEHOLDERS = ("<taskspace>", "<python>", "<torch>")


def smol_runner():
    """recipes/smol.py as a module (as tests/test_recipes.py loads it)."""
    spec = importlib.util.spec_from_file_location("smol_recipe", ROOT / "recipes" / "smol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_reports(write_report, where: Path) -> list[Path]:
    """The fixture's reports written by ``write_report`` into ``where``, the working directory (the report names
    its paths as given): ``report.md`` from the recipe and ``parts.md`` from a file whose part ``main`` is the same
    recipe and run and whose part ``later`` has no results; returns every file written, sorted."""
    import yaml

    cfg = yaml.safe_load((FIXTURE / "recipe.yaml").read_text())
    shutil.copytree(FIXTURE / "out", where / "out")
    shutil.copytree(FIXTURE / "out", where / "parts-out" / "main")
    then = time.mktime((2001, 2, 3, 12, 0, 0, 0, 0, -1))  # the report's date is its results'
    for results in (where / "out" / "results.json", where / "parts-out" / "main" / "results.json"):
        os.utime(results, (then, then))
    before = set(where.rglob("*"))
    for config, out, report, recipe in (
            ("tests/recipe_report/recipe.yaml", "out", "report.md", cfg),
            ("tests/recipe_report/parts.yaml", "parts-out", "parts.md", {"parts": {"main": cfg, "later": cfg}})):
        args = argparse.Namespace(config=config, out=out, report=report, data_dir="data/crossfit", no_png=True)
        write_report(Path(report), recipe, args)
    return sorted(set(where.rglob("*")) - before)


def environment() -> tuple[str, str, str]:
    """The host's values of :data:`PLACEHOLDERS`."""
    import torch

    from taskspace import __version__

    return __version__, platform.python_version(), torch.__version__


def test_a_recorded_run_is_reported_as_before(tmp_path, monkeypatch):
    """Every file the report writes (the report, its CSV, the analyses' tables copied beside it) equals the
    expected one, the environment line's versions aside."""
    monkeypatch.chdir(tmp_path)
    written = write_reports(smol_runner().write_report, tmp_path)
    assert [p.name for p in written] == sorted(p.name for p in EXPECTED.iterdir())
    for path in written:
        expected = (EXPECTED / path.name).read_text()
        for placeholder, value in zip(PLACEHOLDERS, environment()):
            expected = expected.replace(placeholder, value)
        assert path.read_text() == expected, path.name


def test_a_run_with_no_finished_stage_says_so():
    """Before any stage has recorded the backbone (a bank still running), the environment line says so instead of
    printing None for each of its values, and no method size is made up."""
    import sys

    import yaml

    sys.path.insert(0, str(ROOT / "recipes"))
    from smol_report.sections import report_lines

    cfg = yaml.safe_load((FIXTURE / "recipe.yaml").read_text())
    args = argparse.Namespace(config="recipe.yaml", out="out", report="report.md", data_dir="data/crossfit",
                              no_png=True)
    text = "\n".join(report_lines(cfg, args, {}, {"bank": 600.0}, "## Setting"))
    assert "the backbone not recorded yet (no stage has finished)" in text and "None" not in text
    assert "(D = " not in text and "**10.0 minutes**" in text
