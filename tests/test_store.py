"""Artefact files: atomic JSON / safetensors, clear errors for broken files."""

from __future__ import annotations

import os

import pytest
import torch

from taskspace.errors import DataError
from taskspace.store import read_json, read_tensors, write_json, write_tensors


def test_json_and_tensors_round_trip(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2], "y": "z"})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2], "y": "z"}
    t = {"theta": torch.arange(6.0).view(2, 3).t(), "n": torch.tensor([1, 2])}  # non-contiguous is fine
    write_tensors(tmp_path / "t.safetensors", t, {"method": "lora"})
    back = read_tensors(tmp_path / "t.safetensors")
    assert torch.equal(back["theta"], t["theta"]) and torch.equal(back["n"], t["n"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_broken_files_name_the_file(tmp_path):
    (tmp_path / "bad.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(DataError, match=r"bad\.json, line 2: invalid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(DataError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    write_tensors(tmp_path / "t.safetensors", {"theta": torch.zeros(100)})
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable safetensors file"):
        read_tensors(tmp_path / "t.safetensors")


def test_a_failed_write_keeps_the_old_file(tmp_path):
    write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "a.json", {"v": object()})
    assert read_json(tmp_path / "a.json") == {"v": 1}


def test_files_are_readable_like_any_file_the_user_writes(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"v": 1})
        write_tensors(tmp_path / "t.safetensors", {"theta": torch.zeros(3)})
    finally:
        os.umask(umask)
    for name in ("a.json", "t.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


@pytest.mark.slow
def test_the_same_tensors_give_the_same_bytes_in_every_process(tmp_path):
    """safetensors writes metadata keys in a per-process hash order; taskspace's files do not depend on it."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from taskspace.store import write_tensors; "
        "write_tensors(sys.argv[1], {'theta': torch.arange(5.0), 'theta_init': torch.ones(2)}, "
        "{'format': 'taskspace.delta/1', 'method': 'lora', 'task': 'ag_news', 'zeta': 'z', 'alpha': 'a'})"
    )
    blobs = set()
    for i in range(4):
        out = tmp_path / f"{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        blobs.add(out.read_bytes())
    assert len(blobs) == 1
    back = read_tensors(tmp_path / "0.safetensors")
    assert torch.equal(back["theta"], torch.arange(5.0)) and torch.equal(back["theta_init"], torch.ones(2))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "taskspace.delta/1", "method": "lora", "task": "ag_news", "zeta": "z",
                                "alpha": "a"}
