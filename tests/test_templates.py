"""The input template of causal backbones: SmolLM2 answers after ``Answer:`` by default (measured best) and in its own
chat template when asked, a long input keeps the template
and loses its middle (or an end, as the ``truncation`` setting says), ``plain`` is the form taskspace used before
templates, and an artefact made with one template is never used with another."""

from __future__ import annotations

import json

import pytest
import torch

from taskspace.backbones import load_backbone, reload_backbone
from taskspace.cli import main
from taskspace.errors import ConfigError, IncompatibleError
from taskspace.subspace import Subspace
from taskspace.tasks import Example
from taskspace.tuning import TuneConfig, load_run, tune
from tiny import tiny_backbone

SHORT = Example("The stock market rose today.", ("business",), (), task="ag_news")
LONG = Example("question: Which topic is this? [SEP] " + "filler " * 3000 + "(A) business (B) sports", ("business",), (),
               task="ag_news")


@pytest.fixture(scope="module")
def llama_dir(shared_dir):
    return f"{shared_dir}/models/stories260K"


@pytest.fixture(scope="module")
def smol_chat(smollm2_cache):
    return load_backbone("smollm2", template="chat")


def test_smollm2_defaults_to_the_measured_template_whatever_its_path(smol):
    """SmolLM2's default is docs/budget.md's choice, ``boundary``, though its tokenizer has a chat template; a
    local copy of the same model (or the hub's name) gets it too; another model with a chat template gets ``chat``."""
    from taskspace.backbones.templates import default_template, has_chat_template

    assert smol.template == "boundary" and smol.describe()["template"] == "boundary"
    assert has_chat_template(smol.tokenizer)
    assert smol.tokenizer.decode(smol._prompt_ids(SHORT)) == "[ag_news] The stock market rose today.\nAnswer:"
    for name in ("HuggingFaceTB/SmolLM2-135M-Instruct", "/models/SmolLM2-135M-Instruct/"):
        assert default_template(smol.tokenizer, name) == "boundary"
    assert default_template(smol.tokenizer, "my-org/instruct-model") == "chat"


def test_smollm2_answers_in_its_chat_template_when_asked(smol_chat):
    smol = smol_chat
    assert smol.template == "chat" and smol.describe()["template"] == "chat"
    tok = smol.tokenizer
    expected = tok.apply_chat_template([{"role": "user", "content": "[ag_news] The stock market rose today."}],
                                       tokenize=False, add_generation_prompt=True)
    assert tok.decode(smol._prompt_ids(SHORT)) == expected
    ids = tok.apply_chat_template([{"role": "user", "content": "[ag_news] The stock market rose today."}],
                                  tokenize=True, add_generation_prompt=True)
    assert smol._prompt_ids(SHORT) == list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # the same tokens
    assert smol._answer_ids("business") == tok("business", add_special_tokens=False).input_ids + [smol.eos_id]
    assert tok.convert_ids_to_tokens(smol.eos_id) == "<|im_end|>"  # the assistant's turn ends as the template's


@pytest.mark.parametrize("template", ["chat", "boundary", "plain"])
def test_a_long_input_loses_its_middle_and_keeps_the_template(smol, smol_chat, template):
    """By default both ends of a long input stay: a CrossFit input may put its question first (ropes) and its
    options last (multiple choice)."""
    backbone = {"chat": smol_chat, "boundary": smol}.get(template) or load_backbone("smollm2", template=template)
    assert backbone.truncation == "middle" and backbone.describe()["truncation"] == "middle"
    ids = backbone._prompt_ids(LONG)
    assert len(ids) == backbone.max_input_length
    text = backbone.tokenizer.decode(ids)
    short = backbone.tokenizer.decode(backbone._prompt_ids(SHORT))
    head, tail = short.split("[ag_news] The stock market rose today.")
    assert text.startswith(head + "[ag_news] question: Which topic is this?")  # the template and the beginning
    assert text.endswith("(A) business (B) sports" + tail)  # the options and the boundary
    assert text.count("filler") < 3000
    if template == "boundary":
        assert tail == "\nAnswer:"
    if template == "plain":
        assert (head, tail) == ("", "")


@pytest.mark.parametrize("truncation", ["middle", "left", "right"])
def test_where_a_long_input_is_cut(truncation, shared_dir, llama_dir):
    backbone = load_backbone(llama_dir, template="boundary", max_input_length=40, truncation=truncation)
    tok = backbone.tokenizer
    body = tok(backbone.format_input(LONG), add_special_tokens=False).input_ids
    full = backbone._prompt_ids(Example("x", ("y",), task="ag_news"))
    head_n = len(full) - len(tok(backbone.format_input(Example("x", ("y",), task="ag_news")),
                                 add_special_tokens=False).input_ids) - len(backbone.prompt_template.tail)
    ids = backbone._prompt_ids(LONG)
    room = 40 - head_n - len(backbone.prompt_template.tail)
    kept = ids[head_n: len(ids) - len(backbone.prompt_template.tail)]
    assert len(ids) == 40 and len(kept) == room
    expected = {"left": body[-room:], "right": body[:room],
                "middle": body[: (room + 1) // 2] + body[len(body) - room // 2:]}[truncation]
    assert kept == expected
    assert ids[len(ids) - len(backbone.prompt_template.tail):] == list(backbone.prompt_template.tail)


def test_truncation_a_family_cannot_use_is_refused_and_old_records_reload_as_made(shared_dir, llama_dir):
    from taskspace.backbones import recorded_truncation

    with pytest.raises(ConfigError, match="truncation='middle': the seq2seq family takes right"):
        tiny_backbone("t5", str(shared_dir), truncation="middle")
    with pytest.raises(ConfigError, match="truncation='both'"):
        load_backbone(llama_dir, truncation="both")
    described = load_backbone(llama_dir).describe()
    assert recorded_truncation(described) == "middle"
    described.pop("truncation")  # made while taskspace kept a long input's end (templates, no setting)
    assert recorded_truncation(described) == "left" and reload_backbone(described).truncation == "left"
    described.pop("template")  # made before templates: the beginning was kept
    assert recorded_truncation(described) == "right" and reload_backbone(described).truncation == "right"


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_a_model_without_a_chat_template_gets_the_boundary(kind, shared_dir):
    boundary = tiny_backbone(kind, str(shared_dir))
    assert boundary.template == "boundary"  # no chat template: an explicit boundary, as SmolLM2 measured best
    assert boundary.tokenizer.decode(boundary._prompt_ids(SHORT), skip_special_tokens=True).endswith(
        "today.\nAnswer:")
    plain = tiny_backbone(kind, str(shared_dir), template="plain")  # the form taskspace always used, when asked
    assert plain._prompt_ids(SHORT) == plain.tokenizer(plain.format_input(SHORT)).input_ids


def test_templates_a_family_cannot_use_are_refused(shared_dir, llama_dir):
    with pytest.raises(ConfigError, match="template='chat': this tokenizer has no chat template"):
        load_backbone(llama_dir, template="chat")
    with pytest.raises(ConfigError, match="template='boundary': the seq2seq family takes plain"):
        tiny_backbone("t5", str(shared_dir), template="boundary")
    with pytest.raises(ConfigError, match="template='fancy'"):
        load_backbone(llama_dir, template="fancy")


def test_an_artefact_of_one_template_is_never_used_with_another(tmp_path, llama_dir, data_dir):
    config = TuneConfig(task="glue-sst2", method="lora", data_dir=str(data_dir), backbone=llama_dir,
                        method_options={"r": 2}, max_test_examples=4, zero_shot=False)
    config.train = config.train.replace(steps=2, eval_every=2, progress=False)
    run = tune(config, tmp_path / "r", backbone=load_backbone(llama_dir, template="plain")).run_dir
    with pytest.raises(ConfigError, match="template plain; this backbone's is boundary: pass --backbone-opt "
                                          "template=plain"):
        tune(config, tmp_path / "r", backbone=load_backbone(llama_dir))
    described = dict(json.loads((run / "config.json").read_text())["backbone"])
    described.pop("template")  # a record made before templates: the plain form
    assert reload_backbone(described).template == "plain"
    boundary_run = tune(config, tmp_path / "b", backbone=load_backbone(llama_dir)).run_dir
    assert load_run(boundary_run)[2].backbone.template == "boundary"  # re-scored as it was made

    assert main(["fit-subspace", "--recipe", "fastfood", "--d", "4", "--backbone", llama_dir,
                 "--out", str(tmp_path / "ff")]) == 0
    assert Subspace.load(tmp_path / "ff", load_backbone(llama_dir)).d == 4
    with pytest.raises(IncompatibleError, match="tuned with the boundary input template; this backbone uses plain"):
        Subspace.load(tmp_path / "ff", load_backbone(llama_dir, template="plain"))


def test_the_template_changes_what_the_model_sees(shared_dir):
    """The same example, the same weights: the boundary's tokens reach the model, so the loss differs."""
    plain, boundary = (tiny_backbone("llama", str(shared_dir), template=t) for t in ("plain", "boundary"))
    with torch.no_grad():
        a, b = (bb.loss(bb.collate([SHORT])) for bb in (plain, boundary))
    assert not torch.allclose(a, b)
