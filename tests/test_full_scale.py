"""recipes/full-scale.yaml, the papers' setting for a GPU user: its split files are the papers' (IPT's Table II, UDT's
Tables 12 and 13) and do not overlap, every task the shared data lacks is named in the file, and every part's
stages build their library configs with the presets applied. No model, no training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "full-scale.yaml"


def _runner():
    spec = importlib.util.spec_from_file_location("smol_recipe", ROOT / "recipes" / "smol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    import yaml

    runner = _runner()
    return {name: cfg for name, cfg, _ in runner.parts_of(yaml.safe_load(RECIPE.read_text()),
                                                           tmp_path_factory.mktemp("full"))}


def _split(name: str) -> dict[str, list[str]]:
    from taskspace.tasks.formats import read_split_file

    return read_split_file(ROOT / "recipes" / "splits" / name)  # refuses a task both in train and in test


def test_the_split_files_are_the_papers():
    """IPT's 120 tasks (43 cls, 77 non-cls) in its three splits of Table II; UDT's 60 training and 9 test tasks."""
    random, cls, non_cls, udt = (_split(f) for f in ("ipt-random.json", "ipt-cls.json", "ipt-non-cls.json",
                                                     "udt-multitask.json"))
    every = set(random["train"]) | set(random["test"])
    assert (len(random["train"]), len(random["test"]), len(every)) == (100, 20, 120)
    for split in (cls, non_cls):  # 35 training tasks; the other 85 of the 120 unseen (in- and out-of-category)
        assert len(split["train"]) == 35 and len(split["test"]) == 85
        assert set(split["train"]) | set(split["test"]) == every
    # each test list holds the in-category tasks first, then the other category's
    classification = set(cls["train"]) | set(cls["test"][:8])
    other = set(non_cls["train"]) | set(non_cls["test"][:42])
    assert (len(classification), len(other)) == (43, 77) and classification.isdisjoint(other)
    assert set(non_cls["test"][42:]) == classification and set(cls["test"][8:]) == other
    assert "discovery" in other  # Table II counts it among the 77 non-cls tasks
    assert (len(udt["train"]), len(udt["test"])) == (60, 9)
    assert {"rotten_tomatoes", "ethos-gender", "superglue-wsc", "ai2_arc", "qasc", "quartz-no_knowledge",
            "blimp-anaphor_number_agreement", "eli5-asks", "yelp_polarity"} == set(udt["test"])


def test_every_part_builds_and_names_what_the_shared_data_lacks(parts, tmp_path, data_dir):
    runner = _runner()
    text = RECIPE.read_text()
    named = text[text.index("lacks these tasks"):text.index("They are outside")]
    assert set(parts) == {"ipt", "ipt-cls", "ipt-non-cls", "ipt-bart", "ipt-cls-bart", "ipt-non-cls-bart", "udt",
                          "udt-t5"}
    for name, cfg in parts.items():
        train, unseen = cfg["train_tasks"], cfg["unseen_tasks"]
        assert len(set(train)) == len(train) and len(set(unseen)) == len(unseen) and set(train).isdisjoint(unseen)
        for task in train + unseen:
            if not (data_dir / task).is_dir():
                assert f" {task}" in named, f"{name}: {task} is not named among the tasks the shared data lacks"
        runner.Runner(cfg, tmp_path / name, str(data_dir))  # every stage's settings read into its config
    assert parts["ipt"]["ipt"]["challenge_tasks"] == len(parts["ipt"]["train_tasks"]) == 100
    assert len(parts["ipt"]["seeds"]) == 10  # Table III: std over 10 runs
    assert parts["udt"]["unseen_tasks"] == _split("udt-multitask.json")["test"]


def test_each_backbone_gets_equal_method_sizes(parts):
    """The UDT parts' adapter, prefix and LoRA have one size each: 1,105,920 on T5-base (the preset's), 1,036,800
    on SmolLM2 (hidden 576, 30 layers, keys and values of 192), by the methods' parameter formulas."""
    t5 = parts["udt-t5"]["bank"]["methods"]
    assert (t5["adapter"]["r"], t5["lora"]["r"], t5["prefix"]["n_tokens"], t5["prefix"]["hidden"]) == (12, 10, 120, 24)
    assert 60 * 2 * 768 * 12 == 72 * 10 * (768 + 768) == 2 * (120 * 768 + 768 * 24 + 24 * 12 * 2 * 768) == 1_105_920
    smol = parts["udt"]["bank"]["methods"]
    r_a, r_l, m, d_p = smol["adapter"]["r"], smol["lora"]["r"], smol["prefix"]["n_tokens"], smol["prefix"]["hidden"]
    sizes = {30 * 2 * 2 * 576 * r_a, 30 * r_l * (576 + 576 + 576 + 192), m * 576 + 576 * d_p + d_p * 30 * 2 * 192}
    assert sizes == {1_036_800}


def test_a_split_file_gives_a_recipes_tasks(tmp_path):
    """``split`` reads the tasks from a file (relative to recipes/); listing them as well is refused."""
    from taskspace.errors import ConfigError

    _runner()  # puts recipes/ on the path
    import smol_settings

    split = tmp_path / "s.json"
    split.write_text(json.dumps({"train": ["glue-sst2"], "test": ["ag_news"]}))
    cfg = smol_settings.with_split({"split": str(split), "seeds": [0]})
    assert (cfg["train_tasks"], cfg["unseen_tasks"], "split" in cfg) == (["glue-sst2"], ["ag_news"], False)
    assert smol_settings.with_split({"split": "splits/ipt-cls.json"})["train_tasks"] == _split("ipt-cls.json")["train"]
    with pytest.raises(ConfigError, match="lists train_tasks too"):
        smol_settings.with_split({"split": str(split), "train_tasks": ["glue-sst2"]})
    split.write_text(json.dumps({"train": ["glue-sst2"]}))
    with pytest.raises(ConfigError, match="no 'test' list"):
        smol_settings.with_split({"split": str(split)})
