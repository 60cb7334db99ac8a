"""Pooling the five seeds' few-shot files and CrossFit-style resampling."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from taskspace.errors import ConfigError, DataError
from taskspace.tasks import CATALOG, Example, load_task, pool_examples, read_jsonl, resample

SST2_LABELS = ("negative", "positive")


@pytest.fixture(scope="module")
def sst2_pool(data_dir: Path) -> list[Example]:
    return pool_examples(data_dir, "glue-sst2")


@pytest.fixture(scope="module")
def csqa_pool(data_dir: Path) -> list[Example]:
    return pool_examples(data_dir, "commonsense_qa")


def test_pool_is_the_distinct_union_of_train_and_dev(data_dir: Path, sst2_pool: list[Example]) -> None:
    keys = [(e.input, e.references, e.options) for e in sst2_pool]
    assert len(set(keys)) == len(keys)  # distinct
    assert keys == sorted(keys)  # a fixed order, whatever the file system lists
    assert 32 < len(sst2_pool) <= 5 * 32
    folder = data_dir / "glue-sst2"
    expected = {
        (e.input, e.references, e.options)
        for seed in (100, 13, 21, 42, 87)
        for split in ("train", "dev")
        for e in read_jsonl(folder / f"glue-sst2_16_{seed}_{split}.jsonl")
    }
    assert set(keys) == expected
    assert {e.task for e in sst2_pool} == {"glue-sst2"}
    # The order of the seeds does not matter; fewer seeds give a smaller pool.
    assert pool_examples(data_dir, "glue-sst2", seeds=(87, 42, 21, 13, 100)) == sst2_pool
    assert len(pool_examples(data_dir, "glue-sst2", seeds=(100,))) <= 32


def test_pool_holds_no_test_examples(data_dir: Path, sst2_pool: list[Example]) -> None:
    test = load_task("glue-sst2", data_dir).test
    assert not {e.input for e in sst2_pool} & {e.input for e in test}


def test_resample_k_per_label(sst2_pool: list[Example]) -> None:
    train, dev = resample(sst2_pool, 8, seed=3, labels=SST2_LABELS)
    assert len(train) == 16 and len(dev) == 16
    assert Counter(e.target for e in train) == {"negative": 8, "positive": 8}
    assert Counter(e.target for e in dev) == {"negative": 8, "positive": 8}
    assert not {e.input for e in train} & {e.input for e in dev}
    assert [e.target for e in train] != sorted(e.target for e in train)  # shuffled, not grouped by label


def test_resample_is_reproducible_and_seed_dependent(sst2_pool: list[Example], csqa_pool: list[Example]) -> None:
    for pool, labels in ((sst2_pool, SST2_LABELS), (csqa_pool, None)):
        first = resample(pool, 8, seed=5, labels=labels)
        assert resample(list(pool), 8, seed=5, labels=labels) == first
        assert resample(pool, 8, seed=6, labels=labels) != first


def test_resample_multiple_choice_takes_k_in_total(csqa_pool: list[Example]) -> None:
    assert CATALOG["commonsense_qa"].labels == ()  # per-example answer choices: not classes
    train, dev = resample(csqa_pool, 16, seed=1)
    assert len(train) == 16 and len(dev) == 16
    assert not set(train) & set(dev)


def test_resample_too_large_k(sst2_pool: list[Example], csqa_pool: list[Example]) -> None:
    counts = Counter(e.target for e in sst2_pool)
    with pytest.raises(DataError, match="task 'glue-sst2'") as info:
        resample(sst2_pool, 60, seed=1, labels=SST2_LABELS)
    message = str(info.value)
    for label in SST2_LABELS:
        assert f"'{label}': {counts[label]}" in message
    assert f"use k <= {min(counts.values()) // 2}" in message
    n = len(csqa_pool)
    with pytest.raises(DataError, match=rf"{n} examples cannot give 100 train \+ 100 dev.*use k <= {n // 2}"):
        resample(csqa_pool, 100, seed=1)
    with pytest.raises(ConfigError, match="k must be at least 1"):
        resample(csqa_pool, 0, seed=1)


def test_resample_small_hand_made_pool() -> None:
    pool = [Example(f"x{i}", (label,), ("a", "b"), "toy") for i, label in enumerate("aaaabbbbbb")]
    train, dev = resample(pool, 2, seed=0, labels=("a", "b"))
    assert Counter(e.target for e in train) == {"a": 2, "b": 2} == Counter(e.target for e in dev)
    with pytest.raises(DataError, match=r"task 'toy'.*'a': 4.*use k <= 2"):
        resample(pool, 3, seed=0, labels=("a", "b"))
    with pytest.raises(DataError, match=r"'c': 0.*no k fits"):
        resample(pool, 1, seed=0, labels=("a", "b", "c"))
    with pytest.raises(DataError, match=r"labels \['b'\] outside"):
        resample(pool, 1, seed=0, labels=("a",))


def test_load_task_resample(data_dir: Path, sst2_pool: list[Example]) -> None:
    task = load_task("glue-sst2", data_dir, seed=7, resample=True, resample_k=8)
    assert (task.train, task.dev) == resample(sst2_pool, 8, 7, SST2_LABELS)
    assert "resampled with seed 7, 8 per label" in task.sources["train"]
    assert len(task.test) == 872 and "seed-100" in task.sources["test"]
    # tweet_eval-irony lists "0" and "1" as options but never as answers: per label over the labels used.
    irony = load_task("tweet_eval-irony", data_dir, resample=True, resample_k=4)
    assert Counter(e.target for e in irony.train) == {"hate": 4, "non-irony": 4}
    with pytest.raises(DataError, match="task 'discovery'"):
        load_task("discovery", data_dir, resample=True)
    with pytest.raises(ConfigError, match="resample=True"):
        load_task("glue-sst2", data_dir, resample_k=4)


def test_resample_k_reaches_every_stage(tmp_path, data_dir, shared_dir):
    """--resample --resample-k K (IPT's data-scale study) is recorded by tune, bank and subspace-tune, and their
    tasks are drawn K per label from the pooled files."""
    from taskspace.cli import main
    from taskspace.tasks import load_task

    llama = f"{shared_dir}/models/stories260K"
    common = ["--backbone", llama, "--decode", "rank", "--data-dir", str(data_dir), "--resample", "--resample-k", "32",
              "--steps", "2", "--eval-every", "2", "--max-test-examples", "4", "--no-progress"]
    assert main(["tune", "--task", "glue-sst2", "--method", "bitfit", "--out", str(tmp_path), "--run-name", "t",
                 *common]) == 0
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["run"]["resample_k"] == 32 and config["data"]["train"] == 64  # 32 per label, two labels
    assert main(["bank", "--out", str(tmp_path / "bank"), "--methods", "bitfit", "--tasks", "glue-sst2", *common]) == 0
    entry = json.loads((tmp_path / "bank" / "glue-sst2" / "bitfit" / "s0" / "config.json").read_text())
    assert entry["run"]["resample_k"] == 32 and entry["data"]["dev"] == 64
    task = load_task("glue-sst2", data_dir, resample=True, resample_k=32)
    assert len(task.train) == 64
