"""recipes/ship_subspace.py: a finished recipe run's subspace shipped as a built-in: its saved files and nothing else,
and a card whose first line says what it is and whose unseen-task table holds the run's own numbers; it loads as
builtin:NAME; an oversized, missing, unfinished or mismatched subspace is refused in one line, nothing written."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys

import pytest
import torch
import yaml

import taskspace.builtin as builtin
from taskspace.analysis import mean, mean_interval, ratio
from taskspace.backbones import load_backbone
from taskspace.errors import ConfigError
from taskspace.subspace import Subspace
from taskspace.tasks import CATALOG
from test_recipes import ROOT, TINY, _recipes, _runner

NAME = "tiny-prompt"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shared_dir, data_dir):
    """A finished tiny recipe run, its recipe file and settings: TINY less its Fastfood, UDT, analyses and
    challenges (a prompt bank of 2 training tasks; on 2 unseen tasks with 2 seeds: prompt tuning, IST through MSF at
    d = 2, the random auto-encoder at d = 2, the linear subspace at d = 1)."""
    cfg = yaml.safe_load(TINY.format(llama=f"{shared_dir}/models/stories260K"))
    for section in ("fastfood", "udt", "analyses"):
        del cfg[section]
    cfg["bank"]["methods"] = {"prompt": cfg["bank"]["methods"]["prompt"]}
    cfg["ipt"].update(dims=[2], challenge_tasks=0)
    root = tmp_path_factory.mktemp("ship")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    run = root / "run"
    _runner().Runner(cfg, run, str(data_dir), png=False).run()
    return run, recipe, cfg


@pytest.fixture(scope="module")
def llama(shared_dir):
    return load_backbone(f"{shared_dir}/models/stories260K", decode="rank")


def _ship(run, recipe, out, subspace="ipt-d2", name=NAME, *extra: str) -> None:
    _recipes("ship_subspace").main(["--run", str(run), "--recipe", str(recipe), "--subspace", subspace, "--name",
                                    name, "--out", str(out), *extra])


def _cell(values) -> str:
    """A mean and its 95 % interval as the report prints them."""
    centre, half, _ = mean_interval(values)
    if centre is None:
        return "–"
    return f"{100 * centre:.1f}" + ("" if half is None else f" ± {100 * half:.1f}")


def test_a_shipped_subspace_holds_its_files_and_a_card_of_the_runs_numbers(finished, llama, tmp_path, monkeypatch,
                                                                            capsys):
    run, recipe, cfg = finished
    out = tmp_path / "builtin"
    _ship(run, recipe, out, "ipt-d2", NAME, "--check")
    assert f"check: builtin:{NAME} loads on " in capsys.readouterr().out
    folder = out / NAME
    assert [p.name for p in out.iterdir()] == [NAME]  # no partial folder left beside it
    assert {p.name for p in folder.iterdir()} == {"subspace.json", "subspace.safetensors", builtin.CARD}
    assert (folder / "subspace.safetensors").read_bytes() == (run / "ipt-d2" / "subspace.safetensors").read_bytes()
    meta, saved = (json.loads((f / "subspace.json").read_text()) for f in (folder, run / "ipt-d2"))
    # as saved, but the bank is named from the run's folder, not by this machine's absolute path
    assert saved["info"]["bank"] == str((run / "bank").resolve()) and meta["info"]["bank"] == f"{run.name}/bank"
    # and with the recipe's IST settings, which subspace-tune trains with in it by default
    assert meta == {**saved, "info": {**saved["info"], "bank": f"{run.name}/bank"}, "subspace_tune": cfg["ist"]}
    card = (folder / builtin.CARD).read_text(encoding="utf-8")
    lines = card.splitlines()
    assert lines[0] == (f"# A 2-dimensional prompt-tuning subspace of {meta['backbone']['name']}, learnt (IPT's MSF) "
                        "from 2 CrossFit tasks.")
    for text in (f"weights fingerprint (sha256): {meta['backbone']['fingerprint']}",
                 f"input template: {llama.template}", f"truncation of long inputs: {llama.truncation}",
                 f"max input length: {llama.max_input_length} tokens", "n_tokens=2", "glue-sst2, ag_news",
                 f"python recipes/smol.py {recipe} --out {run} --report reports/tiny.md"):
        assert text in card, text

    # the unseen-task table and E_rel: the run's results.json, as the report computes them
    results = json.loads((run / "results.json").read_text())
    scores, unseen = results["scores"], cfg["unseen_tasks"]
    refs = {t: mean(list(scores["reference/prompt"][t].values())) for t in unseen}
    for t in unseen:
        r = ratio(mean(list(scores["ipt/d2"][t].values())), refs[t])
        row = (f"| {t} | {CATALOG[t].category} | {100 * results['frozen'][t]:.1f} | "
               f"{_cell(list(scores['reference/prompt'][t].values()))} | {_cell(list(scores['ipt/d2'][t].values()))} | "
               f"{'–' if r is None else f'{100 * r:.1f}'} |")
        assert row in lines, row

    def e_rel(key: str) -> str:
        return _cell([mean([ratio(scores[key][t][s], refs[t]) for t in unseen]) for s in ("0", "1")])

    def spread(key: str) -> str:  # the mean over the unseen tasks of the standard deviation over the seeds
        return f"{100 * mean([statistics.stdev(scores[key][t].values()) for t in unseen]):.1f}"

    assert any(line.startswith(f"| IST through this subspace (ipt/d2) | {e_rel('ipt/d2')} | ")
               and line.endswith(f" | 2 | {spread('ipt/d2')} |") for line in lines)
    assert any(line.startswith(f"| prompt-tuning (the reference) | {e_rel('reference/prompt')} | ")
               and line.endswith(f" | {spread('reference/prompt')} |") for line in lines)
    assert any(line.startswith(f"| random auto-encoder, d = 2 (baseline) | {e_rel('random-ae/d2')} | ")
               for line in lines)

    # how to use it: the command, and the recipe's backbone settings and IST training it takes from the built-in
    # (TINY's, where they differ from the command's)
    flat = card.replace(" \\\n    ", " ").replace("\n", " ")
    for text in (f"taskspace subspace-tune --subspace builtin:{NAME} --task reviews --data-dir my_data/reviews "
                 "--out runs/reviews", "taskspace export runs/reviews --format peft",
                 f"--backbone-opt template={llama.template} --backbone-opt truncation={llama.truncation}",
                 "`--steps 2 --batch-size 2 --lr 0.1 --eval-every 2`"):
        assert text in flat, text

    # it loads by name from TASKSPACE_BUILTIN_DIR, and decodes as the run's folder does
    monkeypatch.setenv(builtin.ROOT_ENV, str(out))
    assert builtin.builtin_names() == [NAME] and builtin.Builtin.read(NAME).summary == lines[0][2:]
    shipped, source = Subspace.load(f"builtin:{NAME}", llama), Subspace.load(run / "ipt-d2", llama)
    z = torch.randn(2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(shipped.theta("prompt", z), source.theta("prompt", z))


def test_subspace_tune_in_a_shipped_builtin_trains_as_its_recipe_did(finished, llama, data_dir, tmp_path,
                                                                     monkeypatch):
    """The card's command as it stands, no method, backbone or training options: the built-in's method, the run's
    backbone settings (TINY ranks options; the command's default is to generate) and the recipe's IST training;
    an option given replaces one."""
    from taskspace.cli import main

    run, recipe, cfg = finished
    _ship(run, recipe, tmp_path / "builtin")
    monkeypatch.setenv(builtin.ROOT_ENV, str(tmp_path / "builtin"))
    common = ["subspace-tune", "--subspace", f"builtin:{NAME}", "--task", "superglue-cb", "--data-dir", str(data_dir),
              "--max-test-examples", "4", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "as-shipped")]) == 0
    record = json.loads((tmp_path / "as-shipped" / "config.json").read_text())
    train = record["run"]["train"]
    assert record["run"]["method"] == "prompt" and record["backbone"]["decode"] == llama.decode == "rank"
    assert record["backbone"]["max_input_length"] == llama.max_input_length
    assert (train["steps"], train["batch_size"], train["lr"], train["eval_every"]) == (2, 2, 0.1, 2)
    assert main([*common, "--lr", "0.2", "--decode", "generate", "--out", str(tmp_path / "given")]) == 0
    record = json.loads((tmp_path / "given" / "config.json").read_text())
    assert record["run"]["train"]["lr"] == 0.2 and record["run"]["train"]["steps"] == 2
    assert record["backbone"]["decode"] == "generate"


def test_a_lighter_builtin_leaves_out_the_encoder_and_rounds_its_projections(finished, llama, data_dir, tmp_path,
                                                                              monkeypatch, capsys):
    """--decoder-only and --dtype float16: the built-in holds the up-projection in float16 and the anchor as saved,
    says so in its record and card, loads, and decodes within the tolerance but not exactly; --check refuses a
    rounding error above the tolerance and removes the built-in. The card's commands run through it."""
    from safetensors import safe_open

    ship = _recipes("ship_subspace")
    run, recipe, _ = finished
    out = tmp_path / "builtin"
    _ship(run, recipe, out, "ipt-d2", NAME, "--decoder-only", "--dtype", "float16", "--check")
    printed = capsys.readouterr().out
    assert re.search(rf"check: builtin:{NAME} loads on .* and decodes as .* does, within [0-9.e-]+ relative "
                     r"\(float16\)", printed), printed
    folder, saved = out / NAME, run / "ipt-d2"
    with safe_open(str(folder / "subspace.safetensors"), "pt") as light, \
            safe_open(str(saved / "subspace.safetensors"), "pt") as full:
        assert {k for k in full.keys() if not k.startswith("down.")} == set(light.keys())
        assert any(k.startswith("down.") for k in full.keys())
        for k in light.keys():
            want = torch.float16 if k.startswith("up.") else full.get_tensor(k).dtype
            assert light.get_tensor(k).dtype == want, k
        assert torch.equal(light.get_tensor("anchor.prompt"), full.get_tensor("anchor.prompt"))
    meta = json.loads((folder / "subspace.json").read_text())
    error = meta["shipped"]["decode_error"]
    assert meta["shipped"] == {"decoder_only": True, "dtype": "float16", "decode_error": error}
    assert 0 < error < ship.HALF_TOLERANCE and meta["methods"]["prompt"]["down"] is None
    card = (folder / builtin.CARD).read_text(encoding="utf-8")
    assert "`subspace.safetensors` without its down-projection" in card and f"by {error:.1e} relative" in card
    assert (folder / "subspace.safetensors").stat().st_size < (saved / "subspace.safetensors").stat().st_size

    monkeypatch.setenv(builtin.ROOT_ENV, str(out))
    shipped, source = Subspace.load(f"builtin:{NAME}", llama), Subspace.load(saved, llama)
    assert shipped["prompt"].down is None and source["prompt"].down is not None
    z = torch.randn(2, generator=torch.Generator().manual_seed(1))
    ours, theirs = shipped.theta("prompt", z), source.theta("prompt", z)
    assert not torch.equal(ours, theirs)
    assert (ours - theirs).norm() <= ship.HALF_TOLERANCE * (theirs - source["prompt"].anchor).norm()
    # the card's commands: tune in it, then export a PEFT prompt adapter
    from taskspace.cli import main

    run_dir, adapter = tmp_path / "reviews", tmp_path / "adapter"
    assert main(["subspace-tune", "--subspace", f"builtin:{NAME}", "--task", "superglue-cb", "--data-dir",
                 str(data_dir), "--max-test-examples", "4", "--no-progress", "--out", str(run_dir)]) == 0
    assert main(["export", str(run_dir), "--format", "peft", "--out", str(adapter)]) == 0
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "PROMPT_TUNING"
    monkeypatch.delenv(builtin.ROOT_ENV)

    monkeypatch.setattr(ship, "HALF_TOLERANCE", 0.0)
    strict = tmp_path / "strict"
    with pytest.raises(ConfigError, match=rf"^--check: builtin:{NAME} decodes prompt otherwise than .* \(relative "
                                          r"error [0-9.e-]+, above 0.0\)$"):
        _ship(run, recipe, strict, "ipt-d2", NAME, "--dtype", "float16", "--check")
    assert not strict.exists()


def test_the_linear_subspace_ships_with_its_own_first_line(finished, tmp_path):
    run, recipe, _ = finished
    _ship(run, recipe, tmp_path, "linear-d1", "tiny-linear")
    card = (tmp_path / "tiny-linear" / builtin.CARD).read_text(encoding="utf-8")
    first = card.splitlines()[0]
    assert first.startswith("# A 1-dimensional prompt-tuning subspace of ")
    assert first.endswith(", the principal directions of 2 CrossFit tasks' solutions around their mean.")
    assert "| IST through this subspace (linear/d1) | " in card and "| random auto-encoder, d = 2 (baseline) | " in card
    _ship(run, recipe, tmp_path / "light", "linear-d1", "tiny-linear", "--decoder-only", "--dtype", "float16",
          "--check")
    meta = json.loads((tmp_path / "light" / "tiny-linear" / "subspace.json").read_text())
    assert meta["shipped"]["dtype"] == "float16" and meta["methods"]["prompt"]["down"] is None


def test_an_oversized_missing_unfinished_or_mismatched_subspace_is_refused_with_nothing_written(finished, tmp_path,
                                                                                                 monkeypatch):
    run, recipe, cfg = finished
    _ship(run, recipe, tmp_path / "first")
    size = builtin.folder_bytes(tmp_path / "first" / NAME)
    out = tmp_path / "builtin"
    monkeypatch.setattr(builtin, "MAX_BYTES", size - 1)
    with pytest.raises(ConfigError, match=f"^--subspace ipt-d2: the built-in would weigh {size:,} bytes, above the "
                                          f"{size - 1:,} bytes a built-in may weigh"):
        _ship(run, recipe, out)
    assert not out.exists()
    monkeypatch.setattr(builtin, "MAX_BYTES", size)
    _ship(run, recipe, out)  # at the limit
    with pytest.raises(ConfigError, match=f"^--name {NAME}: .* exists already"):
        _ship(run, recipe, out)

    nowhere = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="^--subspace ipt-d9: no such folder in .*; the run's subspaces: ipt-d2, "
                                          "linear-d1, random-ae-d2$"):
        _ship(run, recipe, nowhere, "ipt-d9")
    with pytest.raises(ConfigError, match="^--name Tiny Prompt: expected lower-case letters"):
        _ship(run, recipe, nowhere, "ipt-d2", "Tiny Prompt")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**cfg, "train_tasks": ["glue-sst2", "imdb"]}))
    with pytest.raises(ConfigError, match=f"^--recipe {re.escape(str(other))}: its training tasks are not those the "
                                          "subspace was fitted to \\(ag_news is in one list only\\)"):
        _ship(run, other, nowhere)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run / "ipt-d2", unfinished / "ipt-d2", ignore=shutil.ignore_patterns("runs", "fit"))
    results = json.loads((run / "results.json").read_text())
    del results["scores"]["ipt/d2"]["rotten_tomatoes"]["1"]
    (unfinished / "results.json").write_text(json.dumps(results))
    with pytest.raises(ConfigError, match="no ipt/d2 score of rotten_tomatoes, seed 1: the stage is unfinished"):
        _ship(unfinished, recipe, nowhere)
    assert not nowhere.exists()

    # as a command: one line on stderr, exit status 2, nothing written
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "ship_subspace.py"), "--run", str(run), "--recipe",
                           str(recipe), "--subspace", "ipt-d9", "--name", NAME, "--out", str(nowhere)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("ship_subspace.py: error: --subspace ipt-d9: no such folder in ")
    assert len(done.stderr.strip().splitlines()) == 1 and not nowhere.exists()


def _scored(run, where, scores):
    """A copy of the finished run's subspaces (without their runs) whose results.json records ``scores`` (per key,
    the score of every unseen task on seeds 0 and 1) instead of its own."""
    for folder in ("ipt-d2", "linear-d1", "random-ae-d2"):
        shutil.copytree(run / folder, where / folder, ignore=shutil.ignore_patterns("runs", "fit"))
    results = json.loads((run / "results.json").read_text())
    for key, (s0, s1) in scores.items():
        results["scores"][key] = {t: {"0": s0, "1": s1} for t in results["scores"][key]}
    (where / "results.json").write_text(json.dumps(results))
    return where


def test_the_choice_ships_the_most_e_rel_per_megabyte_among_the_candidates_that_beat_random(finished, tmp_path,
                                                                                             capsys):
    run, recipe, cfg = finished
    choice = _recipes("ship_choice")
    light = ("--decoder-only", "--dtype", "float16")
    megabytes = {}

    def choose(where, *extra):
        for subspace in ("ipt-d2", "linear-d1"):  # the built-in each makes (its card quotes the run's numbers)
            _ship(where, recipe, where / "weighed" / subspace, subspace, choice.TRIAL, *light)
            megabytes[subspace] = builtin.folder_bytes(where / "weighed" / subspace / choice.TRIAL) / 1e6
        shutil.rmtree(where / "weighed")
        assert megabytes["linear-d1"] < megabytes["ipt-d2"] / 1.2  # 6.5 and 8.2 kB (mostly its card)
        choice.main(["--run", str(where), "--recipe", str(recipe), "--candidates", "ipt-d2", "linear-d1",
                     "--against", "random-ae-d2", *light, *extra])
        return capsys.readouterr().out.splitlines()

    def row(subspace, s0, s1, beats):  # every reference score 0.5 and every random one 0: E_rel = 2 x the score
        per_mb = 100 * (s0 + s1) / megabytes[subspace]  # the mean of 2 x s0 and 2 x s1, in %, per megabyte
        return (f"| {subspace} | {_cell([2 * s0, 2 * s1])} | {_cell([2 * s0, 2 * s1])} | {megabytes[subspace]:.2f} | "
                f"{per_mb:.2f} | {beats} |")

    # both beat random: the linear subspace, lower in E_rel but lighter, ships
    both = _scored(run, tmp_path / "both", {"reference/prompt": (0.5, 0.5), "random-ae/d2": (0.0, 0.0),
                                            "ipt/d2": (0.4, 0.45), "linear/d1": (0.36, 0.37)})
    lines = choose(both, "--check")
    assert sum(line.startswith("check: builtin:candidate loads on ") for line in lines) == 2
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == ("| candidate (decoder only float16) | E_rel % | minus random-ae-d2, paired by seed | "
                        "built-in MB | E_rel % per MB | beats random |")
    assert table[2:] == [row("ipt-d2", 0.4, 0.45, "yes"), row("linear-d1", 0.36, 0.37, "yes")]
    assert lines[-2].startswith("ships: linear-d1 (the most E_rel per megabyte")
    assert lines[-1] == (f"    python recipes/ship_subspace.py --run {both} --recipe {recipe} --subspace linear-d1 "
                         "--name NAME --decoder-only --dtype float16 --check")

    # the linear subspace ahead per megabyte, but its margin over random not above 0 (its interval over 2 seeds spans
    # it): the learnt ships
    wide = _scored(run, tmp_path / "wide", {"reference/prompt": (0.5, 0.5), "random-ae/d2": (0.0, 0.0),
                                            "ipt/d2": (0.4, 0.45), "linear/d1": (0.1, 0.6)})
    lines = choose(wide)
    assert (0.1 + 0.6) / megabytes["linear-d1"] > (0.4 + 0.45) / megabytes["ipt-d2"]
    assert row("linear-d1", 0.1, 0.6, "no") in lines and lines[-2].startswith("ships: ipt-d2 ")
    # neither: none ships
    none = _scored(run, tmp_path / "none", {"reference/prompt": (0.5, 0.5), "random-ae/d2": (0.4, 0.45),
                                            "ipt/d2": (0.4, 0.45), "linear/d1": (0.1, 0.6)})
    assert choose(none)[-1] == ("none ships: no candidate's margin over random-ae-d2 has its 95 % interval above 0")

    # the baseline unfinished on a seed: refused, naming it
    results = json.loads((both / "results.json").read_text())
    del results["scores"]["random-ae/d2"][cfg["unseen_tasks"][0]]["1"]
    (both / "results.json").write_text(json.dumps(results))
    with pytest.raises(ConfigError, match="random-ae/d2 has run every unseen task on 1 of the 2 seeds: the stage is "
                                          "unfinished"):
        choose(both)
    with pytest.raises(ConfigError, match="^--candidates ipt-d2 ipt-d2: a candidate is named twice"):
        choice.main(["--run", str(run), "--recipe", str(recipe), "--candidates", "ipt-d2", "ipt-d2", "--against",
                     "random-ae-d2"])
    with pytest.raises(ConfigError, match="^--against random-ae-d9: no such folder in .*; the run's subspaces: "
                                          "ipt-d2, linear-d1, random-ae-d2$"):
        choice.main(["--run", str(run), "--recipe", str(recipe), "--candidates", "ipt-d2", "--against",
                     "random-ae-d9"])
