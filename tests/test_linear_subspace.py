"""The linear finder: a bank's principal directions around its mean, fitted exactly (SVD), on given solutions (no
training), then saved, reloaded and tuned through on the 260K-parameter Llama."""

from __future__ import annotations

import json

import pytest
import torch

from taskspace.backbones import load_backbone
from taskspace.cli import main
from taskspace.deltas import build_method
from taskspace.errors import ConfigError
from taskspace.store import load_delta
from taskspace.subspace import (FitData, LinearConfig, Subspace, SubspaceTuneConfig, build_finder, load_z,
                                subspace_tune, transfer)
from taskspace.train import TrainConfig

PROMPT = {"prompt": {"n_tokens": 4}}


class GivenSolutions(FitData):
    """Solutions given as rows, standing in for a bank's (a linear fit trains nothing, so none is built)."""

    def __init__(self, backbone, thetas):
        super().__init__(backbone, [f"task{i}" for i in range(len(thetas))], method_options=PROMPT)
        self.thetas = thetas

    def require_bank(self, finder):
        return None

    def solutions(self, method):
        return self.thetas, torch.zeros(self.thetas.shape[1])


@pytest.fixture(scope="module")
def llama(shared_dir):
    return load_backbone(f"{shared_dir}/models/stories260K")


@pytest.fixture(scope="module")
def size(llama):
    return build_method("prompt", llama, PROMPT["prompt"]).size


def _fit(llama, thetas, d):
    return build_finder("linear", LinearConfig(method="prompt", d=d)).fit(GivenSolutions(llama, thetas))


def _planted(size, n=7):
    """n solutions on a known 2-d affine plane ``m + A c``, computed in float64 and rounded to float32 once."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(size, generator=g, dtype=torch.float64)
    a = torch.randn(size, 2, generator=g, dtype=torch.float64)
    c = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0], dtype=torch.float64)
    return (m + c @ a.T).float(), a


def test_a_planted_plane_is_recovered_exactly(llama, size):
    thetas, a = _planted(size)
    space = _fit(llama, thetas, 2)
    ms = space["prompt"]
    # z = 0 decodes the bank's mean
    torch.testing.assert_close(space.theta("prompt", torch.zeros(2)), thetas.double().mean(0).float())
    # the directions are orthonormal, and they span the planted plane
    w = ms.up.linear.weight.double()  # [D, 2]
    u = w / w.norm(dim=0)
    torch.testing.assert_close(u.T @ u, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-6)
    outside = a - u @ (u.T @ a)
    assert float(outside.norm() / a.norm()) < 1e-5
    # every solution comes back through down and up: reconstruction error ~ 0 at d = 2
    with torch.no_grad():
        codes = ms.down(thetas - ms.anchor)
        back = ms.anchor + ms.up(codes)
    assert float((back - thetas).norm() / thetas.norm()) < 1e-5
    # one unit of z is one standard deviation of the bank along its direction: codes of mean 0, mean square 1
    torch.testing.assert_close(codes.mean(0), torch.zeros(2), rtol=0, atol=1e-4)
    torch.testing.assert_close(codes.square().mean(0), torch.ones(2), rtol=0, atol=1e-4)
    assert space.info["explained_total"] == pytest.approx(1.0, abs=1e-9)
    # the plane spans two directions: a third is refused, naming d and what the solutions span
    with pytest.raises(ConfigError, match=r"d=3: the 7 prompt solutions span only 2 directions"):
        _fit(llama, thetas, 3)


def test_the_directions_are_the_svd_of_the_centred_bank(llama, size):
    thetas = torch.randn(6, size, generator=torch.Generator().manual_seed(1))
    space = _fit(llama, thetas, 3)
    w = space["prompt"].up.linear.weight.double()
    _, s, vh = torch.linalg.svd(thetas.double() - thetas.double().mean(0), full_matrices=False)
    for j in range(3):
        column = w[:, j]
        # the j-th right singular vector, scaled by s_j / sqrt(n), its sign fixed by its largest entry
        assert float(column.norm()) == pytest.approx(float(s[j]) / 6 ** 0.5, rel=1e-6)
        assert abs(float(column @ vh[j]) / float(column.norm())) == pytest.approx(1.0, abs=1e-6)
        assert float(column[column.abs().argmax()]) > 0
    explained = (s.square() / s.square().sum())[:3]
    assert space.info["explained_variance"] == pytest.approx(explained.tolist(), abs=1e-9)
    assert space.info["singular_values"] == pytest.approx(s[:3].tolist(), rel=1e-9)
    again = _fit(llama, thetas, 3)  # deterministic: the same numbers, bit for bit
    assert torch.equal(again["prompt"].up.linear.weight, space["prompt"].up.linear.weight)
    assert torch.equal(again["prompt"].anchor, space["prompt"].anchor)
    assert _fit(llama, thetas, 5).d == 5  # n - 1 directions: the most n solutions span around their mean
    with pytest.raises(ConfigError, match=r"d=6: 6 prompt solutions span at most 5 directions"):
        _fit(llama, thetas, 6)


def test_save_load_and_ist_through_it(llama, size, data_dir, tmp_path):
    thetas = torch.randn(5, size, generator=torch.Generator().manual_seed(2)) * 0.5
    space = _fit(llama, thetas, 3)
    folder = tmp_path / "linear"
    space.save(folder)
    meta = json.loads((folder / "subspace.json").read_text())
    assert meta["recipe"] == "linear" and meta["methods"]["prompt"]["down"]["kind"] == "linear"
    loaded = Subspace.load(folder, llama)
    for part in ("up", "down"):
        assert torch.equal(getattr(loaded["prompt"], part).linear.weight, getattr(space["prompt"], part).linear.weight)
    assert torch.equal(loaded["prompt"].anchor, space["prompt"].anchor)
    z = torch.randn(3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(loaded.theta("prompt", z), space.theta("prompt", z))

    run = tmp_path / "ist"
    config = SubspaceTuneConfig(task="glue-sst2", method="prompt", data_dir=str(data_dir), max_test_examples=4,
                                train=TrainConfig(steps=2, eval_every=2, batch_size=4, lr=0.3, progress=False))
    scores = subspace_tune(loaded, folder, config, run)
    assert 0 <= scores["test"] <= 1
    tuned, saved = load_z(run)
    assert tuned.shape == (3,) and saved["subspace"]["recipe"] == "linear"
    torch.testing.assert_close(load_delta(run / "theta", loaded["prompt"].method)[0], loaded.theta("prompt", tuned))

    # the same description but other tensors (a subspace fitted again into its folder): another subspace, refused
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    tensors_file = str(folder / "subspace.safetensors")
    with safe_open(tensors_file, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(tensors_file)
    save_file({**tensors, "anchor.prompt": tensors["anchor.prompt"] + 0.1}, tensors_file, metadata=metadata)
    refitted = Subspace.load(folder, llama)
    with pytest.raises(ConfigError, match="holds a run with a different"):
        subspace_tune(refitted, folder, config, run)
    with pytest.raises(ConfigError, match="was tuned in another subspace than"):
        transfer(refitted, folder, run, selection="source")
    # a run recorded before the tensors' hash was: compared on the description, as then
    record = json.loads((run / "config.json").read_text())
    del record["subspace"]["tensors_sha256"]
    (run / "config.json").write_text(json.dumps(record))
    assert subspace_tune(refitted, folder, config, run) == scores


def test_the_command_refuses_what_the_linear_finder_does_not_take(tmp_path, capsys):
    assert main(["fit-subspace", "--recipe", "linear", "--hidden", "4", "--out", str(tmp_path / "a")]) == 2
    assert "--hidden: not an option of --recipe linear" in capsys.readouterr().err
    assert main(["fit-subspace", "--recipe", "linear", "--tasks", "glue-sst2", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--recipe linear fits a bank's solutions: pass --bank DIR" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
