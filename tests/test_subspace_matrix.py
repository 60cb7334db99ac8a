"""The subspace matrix: every finder with every method it can take (fine-tuning included) on the 260K-parameter
Llama: fit, save, load (decoding identically), tune a fresh z, and transfer between the subspace's methods."""

from __future__ import annotations

import pytest
import torch

from taskspace.backbones import load_backbone
from taskspace.projections import build_projection
from taskspace.subspace import (BankSpec, FastfoodConfig, FitData, LinearConfig, MSFConfig, RandomAEConfig,
                                SharedConfig, Subspace, SubspaceTuneConfig, UnifiedConfig, build_bank, build_finder,
                                fit_subspace, load_z, subspace_tune, transfer)
from taskspace.train import TrainConfig

#: Every test here trains or fits for seconds to minutes: the fast tier (-m "not slow") leaves them out.
pytestmark = pytest.mark.slow

TASKS = ["glue-sst2", "superglue-copa"]
OPTIONS = {"prompt": {"n_tokens": 2}, "lora": {"r": 2}, "adapter": {"r": 2}, "prefix": {"n_tokens": 2, "hidden": 4},
           "bitfit": {}, "finetune": {}}


def quick(steps=2, **kw):
    return TrainConfig(steps=steps, eval_every=2, batch_size=4, progress=False, **kw)


@pytest.fixture(scope="module")
def llama(shared_dir):
    return load_backbone(f"{shared_dir}/models/stories260K")


@pytest.fixture(scope="module")
def bank(llama, data_dir, tmp_path_factory):
    spec = BankSpec(tasks=TASKS, methods=OPTIONS, data_dir=str(data_dir), train=quick(), max_test_examples=4)
    return build_bank(tmp_path_factory.mktemp("bank"), spec, llama)


CASES = [
    *[("ipt", MSFConfig(method=m, d=2, hidden=4, train=quick())) for m in OPTIONS],
    ("unified", UnifiedConfig(methods=("lora", "adapter"), d=2, train=quick())),
    ("unified", UnifiedConfig(methods=("prefix", "finetune"), d=2, train=quick())),
    ("unified", UnifiedConfig(methods=("lora", "adapter"), d=2, distance="code", train=quick())),
    ("shared", SharedConfig(methods=("lora", "finetune"), d=2, train=quick())),
    ("shared", SharedConfig(methods=("prompt", "bitfit"), d=2, train=quick())),
    *[("random-ae", RandomAEConfig(method=m, d=2, hidden=4)) for m in ("prompt", "lora", "finetune")],
    ("fastfood", FastfoodConfig(d=3)),
    ("fastfood", FastfoodConfig(d=3, fastfood_mode="global", said=True)),
    # two training tasks span one direction around their mean
    *[("linear", LinearConfig(method=m, d=1)) for m in ("prompt", "lora", "finetune")],
]


@pytest.mark.parametrize("finder,config", CASES, ids=lambda c: c if isinstance(c, str) else
                         "-".join(getattr(c, "methods", None) or [getattr(c, "method", getattr(c, "fastfood_mode", ""))]))
def test_fit_save_load_tune_transfer(finder, config, bank, llama, data_dir, tmp_path, monkeypatch):
    data = bank if build_finder(finder, config).needs_bank else FitData(
        llama, TASKS, data_dir=str(data_dir), method_options=OPTIONS)
    space = fit_subspace(finder, data, config=config, out=tmp_path / "space")
    loaded = Subspace.load(tmp_path / "space", llama)
    assert list(loaded.methods) == list(space.methods) and loaded.d == config.d
    z = torch.randn(config.d, generator=torch.Generator().manual_seed(1))
    for name in space.methods:
        with torch.no_grad():
            torch.testing.assert_close(loaded.theta(name, z), space.theta(name, z))
    # a fit that trains or computes its up-projections moved them away from the start their config rebuilds
    fitted = hasattr(config, "train") or build_finder(finder, config).needs_bank
    for name, ms in space.methods.items():
        fresh = build_projection(ms.up.config())
        same = all(torch.equal(p, q) for p, q in zip(ms.up.parameters(), fresh.parameters()))
        assert same != fitted, name

    source = next(iter(space.methods))
    run = tmp_path / "run"
    scores = subspace_tune(loaded, tmp_path / "space", SubspaceTuneConfig(
        task="glue-sst2", method=source, data_dir=str(data_dir), train=quick(lr=0.1), max_test_examples=4), run)
    assert 0 <= scores["test"] <= 1
    tuned, _ = load_z(run)
    assert tuned.shape == (config.d,)
    out = transfer(loaded, tmp_path / "space", run)
    assert set(out) == set(space.methods) and out[source]["test"] == scores["test"]
    # made again (an interrupted recipe stage resumed), it evaluates nothing: every score is kept
    from taskspace import evaluation

    monkeypatch.setattr(evaluation, "predict", lambda *a, **k: pytest.fail("evaluated again"))
    assert transfer(loaded, tmp_path / "space", run) == out
