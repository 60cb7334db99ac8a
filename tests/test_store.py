"""Artefact files: atomic JSON / safetensors, clear errors for broken files."""

from __future__ import annotations

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
