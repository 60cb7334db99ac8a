"""What an export carries besides its weights (taskspace.json and a README.md model card: the exact input format, the
answer format, the task, metric and scores), so that a model served without taskspace answers as `taskspace predict`
does; and import-peft's base model (the adapter's own, another one refused, one out of reach named)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from taskspace.cli import main
from taskspace.deltas import build_method
from taskspace.export import input_ids, input_text, read_record
from taskspace.export.card import card_text, export_record
from taskspace.predict import Predictor
from taskspace.tasks import Example
from test_export import _peft_lora
from tiny import tiny_backbone

INPUTS = ["sentence: a gripping, funny film", "sentence: dull and far too long",
          "sentence: the cast is fine but the story goes nowhere"]


@pytest.fixture(scope="module")
def llama_dir(shared_dir):
    return f"{shared_dir}/models/stories260K"


@pytest.fixture(scope="module")
def boundary_run(tmp_path_factory, data_dir, llama_dir):
    """A LoRA run in the boundary template with answers of at most 6 tokens: settings an export must carry."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["tune", "--task", "glue-sst2", "--method", "lora", "--opt", "r=2", "--backbone", llama_dir,
                 "--backbone-opt", "template=boundary", "--backbone-opt", "max_output_length=6",
                 "--data-dir", str(data_dir), "--out", str(out), "--run-name", "run", "--steps", "3",
                 "--eval-every", "3", "--lr", "0.05", "--max-test-examples", "4", "--no-progress"]) == 0
    return out / "run"


def _predicted(run: Path, tmp_path: Path) -> list[str]:
    """`taskspace predict`'s answers to INPUTS (JSON lines: exact)."""
    (tmp_path / "in.txt").write_text("\n".join(INPUTS) + "\n")
    assert main(["predict", str(run), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.jsonl"),
                 "--no-progress"]) == 0
    return [json.loads(line)["prediction"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]


def _generated(model, tokenizer, record) -> list[str]:
    """Answers to INPUTS by transformers' greedy ``generate``, each input formatted from the record alone."""
    answers = []
    for text in INPUTS:
        ids = torch.tensor([input_ids(record, text, tokenizer)])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=record["answer"]["max_output_length"],
                                 eos_token_id=record["answer"]["eos_token_id"], pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return answers


@pytest.mark.parametrize("fmt", ["peft", "merged"])
def test_an_export_answers_as_predict_does_from_what_it_records(fmt, boundary_run, tmp_path, llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / fmt
    assert main(["export", str(boundary_run), "--format", fmt, "--out", str(out)]) == 0
    record = read_record(out)
    scores = json.loads((boundary_run / "scores.json").read_text())
    backbone = json.loads((boundary_run / "config.json").read_text())["backbone"]
    assert record["task"] == "glue-sst2" and record["exported_as"] == fmt and record["method"]["method"] == "lora"
    assert record["metric"] == scores["metric"]
    assert (record["scores"]["dev"], record["scores"]["test"], record["scores"]["n_test"]) == (
        scores["dev"], scores["test"], 4)
    assert record["backbone"]["fingerprint"] == backbone["fingerprint"]
    assert record["backbone"]["dtype"] == backbone["dtype"]  # the run's, also where merged weights are float32
    assert record["input"]["template"] == "boundary" and record["input"]["task_prefix"] == "[glue-sst2] "
    assert record["input"]["tail_ids"]  # the boundary after the input
    assert (record["answer"]["decode"], record["answer"]["max_output_length"]) == ("generate", 6)
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "[glue-sst2] {input}" in card and "`boundary` template" in card
    assert scores["metric"] in card and f"{100 * scores['dev']:.2f}" in card and "at most 6 new tokens" in card

    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    if fmt == "peft":
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(llama_dir, local_files_only=True)
        model = PeftModel.from_pretrained(base, str(out)).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).eval()
    predicted = _predicted(boundary_run, tmp_path)
    assert any(predicted)  # answers with text in them: the comparison means something
    assert _generated(model, tokenizer, record) == predicted


@pytest.mark.parametrize("kind,options", [("llama", {"template": "boundary"}), ("llama", {}), ("gpt2", {}),
                                          ("t5", {}), ("bart", {}), ("minilm", {})])
def test_the_recorded_format_gives_the_ids_each_family_feeds_its_model(kind, options, shared_dir):
    """From the record and the tokenizer alone: the ids the backbone itself builds, a long input cut as it cuts."""
    backbone = tiny_backbone(kind, str(shared_dir), max_input_length=12, **options)
    method = build_method("lora", backbone, {"r": 2})
    record = export_record(Predictor(backbone, method, method.init(torch.Generator().manual_seed(0)), "glue-sst2"),
                           None, "peft")
    text = "sentence: " + "a long and winding review that says the film is good " * 4
    example = Example(text, ("positive",), ("negative", "positive"), task="glue-sst2")
    batch = backbone.collate([example])
    if backbone.family == "causal":  # the prompt, before the answer that collate appends
        expected = batch["input_ids"][0, : int(batch["answer_start"])].tolist()
    else:
        expected = batch["input_ids"][0].tolist()
    assert len(expected) == 12  # cut
    assert input_ids(record, text, backbone.tokenizer) == expected
    assert input_text(record, text) == backbone.format_input(example)  # no task prefix on the encoder
    assert record["scores"] is None and record["metric"] is None  # no run directory: nothing to say
    for exported_as in ("peft", "merged"):
        assert "## Input format" in card_text({**record, "exported_as": exported_as})


# ---------------------------------------------------------------------------------------------------------------
# import-peft: the adapter's base model


def _refused(argv: list[str], capsys, folder: Path) -> str:
    """The command's one-line error (exit status 2, no traceback, ``folder`` not created)."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("taskspace import-peft: error: "), lines[0]
    assert not folder.exists()
    return lines[0]


def test_import_peft_loads_the_adapters_base_model(tmp_path, data_dir, llama_dir):
    _peft_lora(llama_dir, tmp_path / "adapter", r=2, target_modules=["q_proj", "v_proj"])
    base = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).resolve() == Path(llama_dir).resolve()  # peft records where the base model came from
    assert main(["import-peft", str(tmp_path / "adapter"), "--task", "glue-sst2", "--data-dir", str(data_dir),
                 "--max-test-examples", "4", "--out", str(tmp_path / "runs"), "--run-name", "imp",
                 "--no-progress"]) == 0  # no --backbone: not the default backbone, the adapter's
    config = json.loads((tmp_path / "runs" / "imp" / "config.json").read_text())
    assert config["backbone"]["name"] == base


def test_another_base_model_is_refused_naming_both(tmp_path, data_dir, llama_dir, capsys):
    _peft_lora(llama_dir, tmp_path / "adapter", r=2, target_modules=["q_proj"])
    line = _refused(["import-peft", str(tmp_path / "adapter"), "--task", "glue-sst2", "--backbone", "smollm2",
                     "--data-dir", str(data_dir), "--out", str(tmp_path / "runs")], capsys, tmp_path / "runs")
    assert "--backbone smollm2 is another model" in line and "stories260K" in line


def test_a_base_model_out_of_reach_is_named_with_the_fix(tmp_path, data_dir, llama_dir, capsys):
    _peft_lora(llama_dir, tmp_path / "adapter", r=2, target_modules=["q_proj"])
    path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = "no-such-org/no-such-model"  # a hub name never downloaded here
    path.write_text(json.dumps(config))
    args = ["import-peft", str(tmp_path / "adapter"), "--task", "glue-sst2", "--data-dir", str(data_dir),
            "--max-test-examples", "4", "--out", str(tmp_path / "runs"), "--no-progress"]
    line = _refused(args, capsys, tmp_path / "runs")
    assert "'no-such-org/no-such-model'" in line and "pass --backbone" in line
    assert main([*args, "--backbone", llama_dir]) == 0  # the fix it names: a base that cannot be compared is trusted


def test_a_taskspace_export_comes_back_in_its_own_settings(boundary_run, tmp_path, data_dir, llama_dir, capsys):
    """No --task, no --backbone, no --backbone-opt: the export's record gives them, and the scores come back."""
    assert main(["export", str(boundary_run), "--out", str(tmp_path / "peft")]) == 0
    assert main(["import-peft", str(tmp_path / "peft"), "--data-dir", str(data_dir), "--max-test-examples", "4",
                 "--out", str(tmp_path / "runs"), "--run-name", "back", "--no-progress"]) == 0
    back = tmp_path / "runs" / "back"
    saved, again = (json.loads((r / "config.json").read_text()) for r in (boundary_run, back))
    assert again["run"]["task"] == "glue-sst2" and again["backbone"]["name"] == saved["backbone"]["name"]
    assert (again["backbone"]["template"], again["backbone"]["max_output_length"]) == ("boundary", 6)
    old, new = (json.loads((r / "scores.json").read_text()) for r in (boundary_run, back))
    assert (new["dev"], new["test"]) == (old["dev"], old["test"])
    # another template than the adapter was tuned with is refused, before anything is written
    line = _refused(["import-peft", str(tmp_path / "peft"), "--data-dir", str(data_dir), "--backbone-opt",
                     "template=plain", "--out", str(tmp_path / "plain")], capsys, tmp_path / "plain")
    assert "tuned with template='boundary'" in line and "template='plain'" in line
