"""The papers' presets and the authors' code's forms they use (issue 31): MSF's and IST's training as the IPT code
runs them, no clipping under Adafactor, UDT's N(0, 0.02) projections, the single-task and shared settings, step 0
kept out of the best-step selection, the anchor-free shared variant with a prefix of raw keys and values, and the
landscape measured as UDT's Fig. 2 measures it. Tiny backbones, a few steps."""

from __future__ import annotations

import argparse

import pytest
import torch

from taskspace.cli import build_parser
from taskspace.cli.subspace import finder_config_from, finder_method_options, subspace_tune_config_from
from taskspace.cli.tune import tune_config_from
from taskspace.deltas import METHODS, build_method
from taskspace.errors import ConfigError
from taskspace.presets import PRESETS, preset_values
from taskspace.subspace import MSFConfig, SharedConfig, SubspaceTuneConfig, UnifiedConfig
from taskspace.tasks import Example
from taskspace.train import TrainConfig, train
from tiny import tiny_backbone


def _parse(argv):
    return build_parser().parse_args(argv)


def _train_configs(stages: dict):
    """Every training config a preset holds, as the library builds it."""
    yield TrainConfig().updated(stages["tuning"].get("train", {}))
    for values in stages["fit-subspace"].values():
        if "train" in values:  # (the random auto-encoder trains nothing)
            yield TrainConfig().updated(values["train"])
    yield TrainConfig().updated(stages["subspace-tune"].get("train", {}))


# Training settings --------------------------------------------------------------------------------------------


EXAMPLES = [Example(f"x{i}", (f"y{i}",)) for i in range(6)]


def _quadratic_run(scores, **settings):
    theta = torch.nn.Parameter(torch.zeros(2))
    module = torch.nn.Module()
    module.theta = theta
    config = TrainConfig(**{"steps": 6, "batch_size": 2, "lr": 0.1, "eval_every": 2, "progress": False, **settings})
    loss = lambda examples, targets: ((theta - 1.0) ** 2).sum()  # noqa: E731
    return train(module, loss, EXAMPLES, config, evaluate=lambda: next(scores))


def test_without_select_initial_step_0_is_evaluated_but_never_returned():
    """The untrained state scores best here: by default it is returned (step 0); with ``select_initial`` off, the
    best trained state is, and step 0 stays in the history."""
    assert _quadratic_run(iter([0.9, 0.2, 0.5, 0.1])).best_step == 0
    result = _quadratic_run(iter([0.9, 0.2, 0.5, 0.1]), select_initial=False)
    assert (result.best_step, result.best_score) == (4, 0.5)
    assert not torch.equal(result.best_state["theta"], torch.zeros(2))
    assert [h["step"] for h in result.history] == [0, 2, 4, 6] and result.history[0]["dev"] == 0.9


def test_a_warmup_fraction_is_that_share_of_the_steps():
    assert TrainConfig(steps=100_000, warmup_fraction=0.06).warmup() == 6_000
    assert TrainConfig(steps=10, warmup_steps=3).warmup() == 3
    fraction = _quadratic_run(iter([0.0] * 4), warmup_fraction=0.5).history
    steps = _quadratic_run(iter([0.0] * 4), warmup_steps=3).history
    flat = _quadratic_run(iter([0.0] * 4)).history
    assert [h.get("lr") for h in fraction] == [h.get("lr") for h in steps] != [h.get("lr") for h in flat]
    with pytest.raises(ConfigError, match="--warmup-fraction 0.1 and --warmup-steps 5"):
        TrainConfig(warmup_steps=5, warmup_fraction=0.1)
    with pytest.raises(ConfigError, match="--warmup-fraction 1.5: expected a fraction"):
        TrainConfig(warmup_fraction=1.5)
    assert _parse(["tune", "--task", "t", "--method", "lora", "--warmup-fraction", "0.06"]).warmup_fraction == 0.06


def test_the_new_options_leave_existing_identities_unchanged():
    """Options added for the presets are left out of a config's identity at their defaults (runs made before them
    keep their names and resume); set, they are part of it."""
    new = {TrainConfig: ("select_initial", "warmup_fraction"), UnifiedConfig: ("down_init",),
           SharedConfig: ("anchor",), METHODS["prefix"].config_class: ("reparam",)}
    for cls, names in new.items():
        assert not set(names) & set(cls().identity()), cls.__name__
    assert TrainConfig(select_initial=False).identity()["select_initial"] is False
    assert TrainConfig(select_initial=False).resume_key() != TrainConfig().resume_key()
    assert TrainConfig(warmup_fraction=0.06).identity()["warmup_fraction"] == 0.06
    assert SharedConfig(anchor="none").identity()["anchor"] == "none"


# The presets ----------------------------------------------------------------------------------------------------


def test_no_preset_lets_step_0_win_and_udt_presets_never_clip():
    for name, stages in PRESETS.items():
        for config in _train_configs(stages):
            assert config.select_initial is False, name
            if name.startswith("udt"):
                assert (config.optimizer, config.max_grad_norm) == ("adafactor", None), name


def test_ipt_paper_trains_msf_ist_and_prompt_tuning_as_the_code(tmp_path):
    data = str(tmp_path)
    msf = finder_config_from(_parse(["fit-subspace", "--recipe", "ipt", "--out", data, "--preset", "ipt-paper"]))
    t = msf.train
    assert (t.batch_size, t.lr, t.warmup(), t.max_grad_norm, t.steps, t.eval_every) == (64, 3e-5, 6_000, 0.1,
                                                                                       100_000, 5_000)
    assert isinstance(msf, MSFConfig) and msf.lm_loss == "code" and msf.alpha == 200.0
    ist = subspace_tune_config_from(_parse(["subspace-tune", "--subspace", data, "--task", "glue-sst2", "--method",
                                            "prompt", "--out", data, "--data-dir", data, "--preset", "ipt-paper"]))
    assert (ist.train.warmup(), ist.train.max_grad_norm, ist.train.lr, ist.train.batch_size) == (6_000, 0.1, 1e-4, 8)
    prompt = tune_config_from(_parse(["tune", "--task", "glue-sst2", "--method", "prompt", "--data-dir", data,
                                      "--preset", "ipt-paper"]))
    assert (prompt.train.warmup(), prompt.train.max_grad_norm) == (10_000, 0.1)
    # options on the command line win: a warm-up in steps replaces the preset's fraction once that is off
    short = tune_config_from(_parse(["tune", "--task", "glue-sst2", "--method", "prompt", "--data-dir", data,
                                     "--preset", "ipt-paper", "--warmup-fraction", "none", "--warmup-steps", "7"]))
    assert short.train.warmup() == 7


def test_udt_presets_start_the_projections_as_the_code(tmp_path):
    data = str(tmp_path)
    for preset, d, lr, batch in (("udt-paper", 100, 1e-4, 4), ("udt-paper-single", 4, 5e-5, 8)):
        fit = finder_config_from(_parse(["fit-subspace", "--recipe", "unified", "--out", data, "--preset", preset]))
        assert (fit.up_init, fit.down_init, fit.dist_weight, fit.distance) == ("normal", "normal", 10.0, "paper")
        assert (fit.d, fit.train.lr, fit.train.batch_size) == (d, lr, batch), preset
    assert preset_values("udt-paper-single", "fit-subspace", "unified")["train"]["steps"] == 100_000


def test_the_shared_preset_passes_its_method_sizes_and_optimisation_settings(tmp_path):
    data = str(tmp_path)
    args = _parse(["fit-subspace", "--recipe", "shared", "--out", data, "--preset", "udt-paper-shared",
                   "--opt", "lora.r=3"])
    assert finder_config_from(args).train.batch_size == 8 and finder_config_from(args).vector_lr_scale == 0.5
    options = finder_method_options(args, ["adapter", "prefix", "lora"])
    assert options["prefix"] == {"n_tokens": 24, "hidden": 120} and options["adapter"]["r"] == 12
    assert options["lora"]["r"] == 3  # --opt wins
    tune = subspace_tune_config_from(_parse(["subspace-tune", "--subspace", data, "--task", "glue-sst2", "--method",
                                             "lora", "--out", data, "--data-dir", data, "--preset",
                                             "udt-paper-shared"]))
    assert (tune.train.batch_size, tune.train.lr, tune.train.optimizer) == (16, 1e-2, "adafactor")
    with pytest.raises(ConfigError, match="has settings for --recipe unified, not for shared"):
        preset_values("udt-paper", "fit-subspace", "shared")


def test_subspace_tune_without_a_preset_says_it_uses_adamw():
    defaults = SubspaceTuneConfig(task="t", method="prompt", data_dir="d").train
    assert (defaults.optimizer, defaults.schedule) == ("adamw", "linear")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "AdamW and linear decay" in sub.choices["subspace-tune"].description


# The authors' code's forms ------------------------------------------------------------------------------------


def test_a_prefix_without_its_reparameterisation_holds_the_keys_and_values(shared_dir, data_dir):
    """``reparam=False``: theta is every layer's keys and values; binding the MLP's output of a re-parameterised
    theta computes exactly what that theta computes."""
    from taskspace.tasks import load_task

    backbone = tiny_backbone("t5", str(shared_dir))
    mlp = build_method("prefix", backbone, {"n_tokens": 2, "hidden": 4})
    direct = build_method("prefix", backbone, {"n_tokens": 2, "reparam": False})
    assert [s.name for s in direct.layout.slices] == ["encoder.prefix.KV", "decoder.prefix.KV"]
    theta = mlp.init(torch.Generator().manual_seed(0))
    parts = mlp.layout.unflatten(theta)
    raw = direct.layout.flatten({f"{s}.prefix.KV": torch.tanh(parts[f"{s}.prefix.P"] @ parts[f"{s}.prefix.W1"])
                                 @ parts[f"{s}.prefix.W2"] for s in mlp.stacks()})
    batch = backbone.collate(load_task("glue-sst2", data_dir).train[:3])
    with torch.no_grad():
        with mlp.bind(theta):
            reparameterised = backbone.loss(batch)
        with direct.bind(raw):
            raw_loss = backbone.loss(batch)
    torch.testing.assert_close(raw_loss, reparameterised)


def test_the_shared_variant_in_the_authors_code_form(shared_dir, data_dir):
    """``anchor="none"``: theta = up(z) (a zero anchor), every hypernetwork weight from N(0, 0.02), a bias only for
    the prefix, whose keys and values it generates directly (a re-parameterised prefix is refused)."""
    from taskspace.subspace import FitData, build_finder

    backbone = tiny_backbone("t5", str(shared_dir), decode="rank")
    config = SharedConfig(methods=("lora", "prefix"), d=3, anchor="none",
                          train=TrainConfig(steps=1, eval_every=1, lr=1e-6, progress=False))
    data = FitData(backbone, ["glue-sst2"], data_dir=str(data_dir),
                   method_options={"lora": {"r": 1}, "prefix": {"n_tokens": 2, "reparam": False}})
    space = build_finder("shared", config).fit(data)
    for name, ms in space.methods.items():
        assert not bool(ms.anchor.any())
        assert 0.015 < float(ms.up.linear.weight.std()) < 0.025
        assert (ms.up.linear.bias is not None) == (name == "prefix")
    data.method_options["prefix"] = {"n_tokens": 2}
    with pytest.raises(ConfigError, match="--opt prefix.reparam=false"):
        build_finder("shared", config).fit(data)


# The landscape's measure ----------------------------------------------------------------------------------------


def test_the_landscape_divides_by_one_e_pet(monkeypatch, tmp_path):
    """UDT's Fig. 2: P = mean over methods of E_m(point) / E_PET, E_PET the mean original-space score; each
    method's own ratio is kept beside it. Scores 0.4 everywhere against references 0.2, 0.4, 0.8: P = 0.4 / (1.4 / 3)
    = 85.7 %, where the mean of the per-method ratios would be (200 + 100 + 50) / 3 = 116.7 %."""
    import taskspace.analysis.landscape as landscape

    monkeypatch.setattr(landscape, "evaluate_points", lambda ms, examples, metric, zs, batch_size: [0.4] * len(zs))

    class Space:
        methods = {"adapter": None, "prefix": None, "lora": None}

        def __getitem__(self, name):
            return name

    runs = {"adapter": torch.tensor([0.0, 0.0]), "prefix": torch.tensor([1.0, 0.0]), "lora": torch.tensor([0.0, 1.0])}
    result = landscape.landscape(Space(), runs, ["adapter", "prefix", "lora"], [Example("x", ("y",))], "ACC",
                                 {"adapter": 0.2, "prefix": 0.4, "lora": 0.8}, tmp_path, span=0.4, step=0.4,
                                 report=lambda line: None)
    assert result["e_pet"] == pytest.approx(1.4 / 3)
    assert all(v == pytest.approx(100 * 0.4 / (1.4 / 3)) for row in result["overall"] for v in row)
    assert result["relative"]["adapter"][0][0] == pytest.approx(200)
    assert result["relative"]["lora"][1][2] == pytest.approx(50)
    assert "mean" not in result  # the mean of per-method ratios is not the landscape any more


def test_the_report_gives_the_papers_landscape_measure(tmp_path):
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    try:
        analyses = importlib.import_module("smol_report.analyses")
        stage = importlib.import_module("smol_stages.landscape")
    finally:
        sys.path.remove(sys.path[0])
    result = {"axis": [-1.0, 0.0, 1.0], "overall": [[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [70.0, 80.0, 90.0]],
              "marks": {"adapter": (0.0, 0.0), "prefix": (0.9, 0.0), "lora": (0.0, -1.2)}}
    at_marks = stage.landscape_at_marks(result)
    assert at_marks == {"adapter": 50.0, "prefix": 60.0, "lora": 20.0}
    land = {"task": "t", "split": "dev", "seed": 0, "axis": result["axis"], "order": list(at_marks),
            "origin_score": {"adapter": 0.5, "prefix": 0.25, "lora": 0.5}, "e_pet": 0.4, "overall_at_marks": at_marks}
    text = "\n".join(analyses.landscape_lines(land, tmp_path, tmp_path / "report", png=False)[0])
    assert "E_PET, the mean of their original-space scores (40.0)" in text
    assert "P (%) at the grid point nearest each method's solution: adapter 50.0, prefix 60.0, lora 20.0." in text
