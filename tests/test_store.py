"""Artefact files: atomic JSON / safetensors, clear errors for broken files."""

from __future__ import annotations

import os

import pytest
import torch

from taskspace.errors import DataError, StorageError
from taskspace.store import exclusive, read_json, read_tensors, write_json, write_tensors


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


def test_a_folder_where_a_file_is_expected_is_named(tmp_path):
    (tmp_path / "a.json").mkdir()
    with pytest.raises(DataError, match=r"a\.json: expected a file, found a folder"):
        read_json(tmp_path / "a.json")
    with pytest.raises(DataError, match=r"a\.json: expected a file, found a folder"):
        read_tensors(tmp_path / "a.json")
    with pytest.raises(StorageError, match=r"a\.json: cannot write it \(a folder stands where a file is expected\)"):
        write_json(tmp_path / "a.json", {"v": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


def test_a_full_disk_names_the_file_not_its_temporary_twin(tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    write_json(tmp_path / "a.json", {"v": 1})
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match=r"a\.json: cannot write it \(No space left on device\)") as info:
        write_json(tmp_path / "a.json", {"v": 2})
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC  # what OSError handlers expect
    monkeypatch.undo()
    assert read_json(tmp_path / "a.json") == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_the_lock_file_lasts_only_while_the_folder_is_written(tmp_path):
    folder = tmp_path / "run"
    with exclusive(folder):
        assert (folder / ".lock").is_file()
        write_json(folder / "a.json", {})
    assert [p.name for p in folder.iterdir()] == ["a.json"]
    with pytest.raises(RuntimeError):
        with exclusive(folder):
            raise RuntimeError
    assert [p.name for p in folder.iterdir()] == ["a.json"]


def test_a_lock_file_deleted_before_it_was_locked_is_not_taken_as_held(tmp_path, monkeypatch):
    """The writer before deletes its lock file as it finishes; a process that opened that file just before then
    locks a file that no longer guards the folder. It must lock the new file instead, or it and a third process
    (locking the new file) would both write the folder."""
    import builtins

    from taskspace import store

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").touch()  # the writer before still holds it
    opened = []

    def open_then_deleted(path, *args, **kwargs):
        handle = builtins.open(path, *args, **kwargs)
        opened.append(path)
        if len(opened) == 1:
            os.unlink(path)  # the writer before finishes between this open and the lock
        return handle

    monkeypatch.setattr(store, "open", open_then_deleted, raising=False)
    with exclusive(folder):
        assert len(opened) == 2 and (folder / ".lock").is_file()
    assert not (folder / ".lock").exists()


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
