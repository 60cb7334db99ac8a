"""The dtype of the frozen weights: float32 by default on every CPU host (the same command gives the same numbers
whatever the instruction set), bfloat16 one option away; and what a bfloat16 run does afterwards (its summary,
resume, evaluate, predict, merged and PEFT export, import) with tolerances that fit bfloat16.

``TASKSPACE_FAST_BF16=1`` (or ``0``) makes ``dtype=auto`` resolve as on a CPU with (or without) AVX-512 BF16, so
both kinds of host are checked on either kind."""

from __future__ import annotations

import json
import platform

import pytest
import torch

from taskspace.backbones import dtypes, load_backbone, settled_dtype_option
from taskspace.backbones.base import FAST_BF16_ENV, resolve_dtype
from taskspace.cli import main
from taskspace.errors import ConfigError
from taskspace.evaluation import capped_test_split
from taskspace.predict import Predictor, Query
from taskspace.tasks import load_task
from taskspace.tuning import TuneConfig, default_run_name, tune


@pytest.fixture(scope="module")
def llama_dir(shared_dir):
    return f"{shared_dir}/models/stories260K"


def _argv(llama_dir, data_dir, out, *extra):
    return ["tune", "--task", "glue-sst2", "--method", "lora", "--opt", "r=2", "--opt", "targets=q,v,o",
            "--backbone", llama_dir, "--backbone-opt", "max_output_length=4", "--data-dir", str(data_dir),
            "--out", str(out), "--steps", "4", "--eval-every", "2", "--lr", "0.05", "--max-test-examples", "8",
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, llama_dir, data_dir):
    """A LoRA run whose frozen weights were bfloat16 (answers generated, so they can differ in many ways)."""
    root = tmp_path_factory.mktemp("bf16")
    assert main(_argv(llama_dir, data_dir, root, "--backbone-opt", "dtype=bfloat16", "--run-name", "lora",
                      "--eval-batch-size", "3")) == 0
    return root / "lora"


def _logits(backbone, method=None, theta=None):
    tok = backbone.tokenizer
    batch = tok(["[glue-sst2] a gripping, funny film", "[glue-sst2] dull"], return_tensors="pt", padding=True)
    with torch.no_grad():
        if method is None:
            return backbone.model(**batch).logits.float()
        with method.bind(theta):
            return backbone.model(**batch).logits.float()


# ---------------------------------------------------------------------------------------------------------------
# The default and auto


@pytest.mark.parametrize("fast", ["0", "1"])
def test_the_default_is_float32_on_every_cpu_and_auto_follows_the_hardware(fast, monkeypatch, llama_dir):
    monkeypatch.setenv(FAST_BF16_ENV, fast)
    assert resolve_dtype(None, "cpu") == resolve_dtype("default", "cpu") == torch.float32
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if fast == "1" else torch.float32)
    assert load_backbone(llama_dir).dtype == torch.float32
    assert load_backbone(llama_dir, dtype="auto").dtype == resolve_dtype("auto", "cpu")
    assert load_backbone(llama_dir, dtype="bfloat16").dtype == torch.bfloat16


def test_the_cpu_is_read_from_cpuinfo(monkeypatch, tmp_path):
    """The flags decide ``auto`` and the model name goes into the recipes' documents; a host without
    /proc/cpuinfo has no fast bfloat16 and is named by its architecture."""
    monkeypatch.delenv(FAST_BF16_ENV, raising=False)
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(dtypes, "CPUINFO", str(info))
    for flags, fast in (("fpu avx512f avx512_bf16 amx_tile", True), ("fpu avx512f amx_tile", False)):
        info.write_text(f"processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: {flags}\n\n"
                        f"processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: {flags}\n")
        assert dtypes.cpu_model() == "Example CPU 9000"
        assert dtypes.fast_bfloat16("cpu") is fast
        assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if fast else torch.float32)
    info.unlink()
    assert dtypes.fast_bfloat16("cpu") is False
    assert dtypes.cpu_model() == (platform.processor() or platform.machine())


def test_a_bad_dtype_or_override_is_one_clear_error(monkeypatch, llama_dir):
    with pytest.raises(ConfigError, match="dtype='half': expected auto, default, float32"):
        load_backbone(llama_dir, dtype="half")
    monkeypatch.setenv(FAST_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match=f"{FAST_BF16_ENV}='yes': expected 1 .* or 0"):
        resolve_dtype("auto", "cpu")


def test_auto_is_recorded_as_what_it_resolved_to(monkeypatch, data_dir):
    """A run's settings hold the dtype ``auto`` became on its host, so runs of two hosts never share a name."""
    names = {}
    for fast in ("0", "1"):
        monkeypatch.setenv(FAST_BF16_ENV, fast)
        options = settled_dtype_option({"dtype": "auto", "max_output_length": 4})
        assert options == {"dtype": "bfloat16" if fast == "1" else "float32", "max_output_length": 4}
        config = TuneConfig(task="glue-sst2", method="lora", data_dir=str(data_dir), backbone_options=options)
        names[fast] = default_run_name(config)
    assert names["0"] != names["1"]
    assert settled_dtype_option({"dtype": "default", "decode": "rank"}) == {"decode": "rank"}


# ---------------------------------------------------------------------------------------------------------------
# A bfloat16 run afterwards


def test_the_summary_names_the_dtype_and_the_same_command_returns_the_run(bf16_run, llama_dir, data_dir, capsys):
    assert json.loads((bf16_run / "config.json").read_text())["backbone"]["dtype"] == "bfloat16"
    assert main(_argv(llama_dir, data_dir, bf16_run.parent, "--backbone-opt", "dtype=bfloat16",
                      "--run-name", "lora", "--eval-batch-size", "3")) == 0
    assert "| dtype bfloat16 |" in capsys.readouterr().out.splitlines()[0]


def test_a_run_is_never_returned_for_another_dtype(tmp_path, llama_dir, data_dir):
    config = TuneConfig(task="glue-sst2", method="lora", data_dir=str(data_dir), backbone=llama_dir,
                        method_options={"r": 2}, max_test_examples=4, zero_shot=False,
                        backbone_options={"max_output_length": 2})
    config.train = config.train.replace(steps=2, eval_every=2, progress=False)
    tune(config, tmp_path / "r", backbone=load_backbone(llama_dir, max_output_length=2))
    bf16 = load_backbone(llama_dir, dtype="bfloat16", max_output_length=2)
    with pytest.raises(ConfigError, match="computed with the backbone's dtype float32; this backbone's is "
                                          "bfloat16: pass --backbone-opt dtype=float32"):
        tune(config, tmp_path / "r", backbone=bf16)


def test_an_interrupted_bfloat16_run_resumes_to_the_uninterrupted_one(tmp_path, llama_dir, data_dir, monkeypatch):
    from taskspace import checkpoint as checkpoint_module

    argv = _argv(llama_dir, data_dir, tmp_path / "whole", "--backbone-opt", "dtype=bfloat16", "--run-name", "r")
    assert main(argv) == 0
    real_save = checkpoint_module.Checkpoint.save

    def save_then_die(self, *args):  # the first checkpoint is written, then the process "dies"
        real_save(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", save_then_die)
    cut = [a if a != str(tmp_path / "whole") else str(tmp_path / "cut") for a in argv]
    assert main(cut) == 130  # Ctrl-C: one line, what was saved, exit status 130
    assert json.loads((tmp_path / "cut" / "r" / "checkpoint" / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(checkpoint_module.Checkpoint, "save", real_save)
    assert main(cut) == 0
    for name in ("theta.safetensors", "predictions/dev.jsonl", "predictions/test.jsonl"):
        assert (tmp_path / "whole" / "r" / name).read_bytes() == (tmp_path / "cut" / "r" / name).read_bytes(), name
    whole, cut = (json.loads((tmp_path / run / "r" / "scores.json").read_text()) for run in ("whole", "cut"))
    assert {k: v for k, v in whole.items() if k != "train_seconds"} == {k: v for k, v in cut.items()
                                                                        if k != "train_seconds"}


def test_predict_gives_the_runs_own_test_predictions(bf16_run, data_dir):
    examples = capped_test_split(load_task("glue-sst2", str(data_dir)), 8, 0)
    predictor = Predictor.load(bf16_run)
    assert predictor.backbone.dtype == torch.bfloat16 and predictor.batch_size == 3  # the run's batching
    saved = [json.loads(line)["prediction"] for line in (bf16_run / "predictions" / "test.jsonl").read_text()
             .splitlines()]
    assert predictor.predict([Query(e.input, e.options) for e in examples]) == saved


def test_evaluate_in_another_dtype_says_why_the_scores_differ(bf16_run, capsys):
    assert main(["evaluate", str(bf16_run)]) == 0
    out = capsys.readouterr().out
    assert "identical to the saved scores" in out and "computed in" not in out
    code = main(["evaluate", str(bf16_run), "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code in (0, 1)  # the scores may or may not move; the reason is named either way
    assert ("the run computed in bfloat16 and this evaluation in float32" in out
            and "--dtype bfloat16 evaluates as the run did" in out)


def test_a_bfloat16_run_exports_merged_in_float32(bf16_run, tmp_path):
    from transformers import AutoModelForCausalLM

    assert main(["export", str(bf16_run), "--format", "merged", "--out", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), local_files_only=True).eval()
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    run, fp32 = Predictor.load(bf16_run), Predictor.load(bf16_run, dtype="float32")
    assert fp32.backbone.dtype == torch.float32 and torch.equal(fp32.theta, run.theta)
    batch = fp32.backbone.tokenizer(["[glue-sst2] a gripping, funny film", "[glue-sst2] dull"], return_tensors="pt",
                                    padding=True)
    with torch.no_grad():
        theirs = merged(**batch).logits
    ours_fp32 = _logits(fp32.backbone, fp32.method, fp32.theta)
    torch.testing.assert_close(theirs, ours_fp32, rtol=1e-4, atol=1e-4)  # the run's theta, computed in float32
    assert not torch.allclose(_logits(fp32.backbone), ours_fp32, atol=1e-3)  # the delta moves the model


def test_a_bfloat16_predictor_is_refused_with_the_fix(bf16_run, tmp_path):
    from taskspace.export import export_merged

    with pytest.raises(ConfigError, match=r"merges in float32.*Predictor.load\(run, dtype='float32'\)"):
        export_merged(None, tmp_path / "m", predictor=Predictor.load(bf16_run))
    assert not (tmp_path / "m").exists()


def test_a_bfloat16_run_exports_to_peft_and_imports_back(bf16_run, tmp_path, llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from taskspace.export import export_peft
    from taskspace.export.imports import import_peft

    out = export_peft(bf16_run, tmp_path / "peft")
    run = Predictor.load(bf16_run)
    base = AutoModelForCausalLM.from_pretrained(llama_dir, local_files_only=True, dtype=torch.bfloat16)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    batch = run.backbone.tokenizer(["[glue-sst2] a gripping, funny film", "[glue-sst2] dull"], return_tensors="pt",
                                   padding=True)
    with torch.no_grad():
        theirs = peft_model(**batch).logits.float()
    ours = _logits(run.backbone, run.method, run.theta)
    fp32 = Predictor.load(bf16_run, dtype="float32")
    ours_fp32 = _logits(fp32.backbone, fp32.method, fp32.theta)
    # peft and taskspace, both in bfloat16, agree more closely than bfloat16 agrees with float32 (the 260K
    # model's bfloat16 logits are ~9 % off its float32 ones; peft's ~3 % off taskspace's, measured)
    assert (theirs - ours).norm() < 0.5 * (ours - ours_fp32).norm()
    method, theta, _ = import_peft(out, load_backbone(llama_dir, dtype="bfloat16"))
    assert method.describe() == run.method.describe() and torch.equal(theta, run.theta)
