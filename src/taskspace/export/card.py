"""What an export carries besides its weights: ``taskspace.json``, the record a program reads (the task, the exact
input format, the answer format, the metric and scores, the backbone), and ``README.md``, a model card that says
the same in words, as peft's ``save_pretrained`` writes one.

A delta tuned by taskspace has learnt to answer inputs formatted as taskspace formats them (``[task] input`` in the
backbone's template, cut to its input length); fed the raw text, the same model answers otherwise. :func:`input_ids`
formats an input from the record and the base model's tokenizer alone, exactly as
:class:`taskspace.predict.Predictor` does. The record sits beside ``adapter_config.json`` rather than inside it:
peft reads that file into its config classes, which do not take keys of their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..backbones import Backbone
from ..backbones.templates import Template
from ..errors import DataError
from ..predict import Predictor
from ..store import read_json, write_json, write_text
from ..tasks import Example
from ..tasks.formats import inline_options_suffix

RECORD = "taskspace.json"
CARD = "README.md"
FORMAT = "taskspace.export/1"
#: The recorded backbone settings that ``import-peft`` takes from an export: what the delta's answers depend on
#: besides the weights (the dtype is left to the host, as every command leaves it).
IMPORTED_SETTINGS = ("template", "task_prefix", "max_input_length", "max_output_length", "decode", "similarity_scale")

_TEMPLATE_WORDS = {
    "chat": "the user's turn of the tokenizer's chat template, with the assistant's turn opened after it",
    "boundary": "the input, then a newline and `Answer:`",
    "plain": "nothing around the input but the tokenizer's own special tokens",
}


def _input_format(backbone: Backbone, task: str) -> dict[str, Any]:
    """How an input of ``task`` reaches ``backbone``'s model: the text around it, the token ids around that, where a
    long input is cut."""
    tokenizer = backbone.tokenizer
    prefix = backbone.format_input(Example("", ("",), task=task))
    out: dict[str, Any] = {"task_prefix": prefix, "template": backbone.template,
                           "max_input_length": backbone.max_input_length}
    if backbone.family == "causal":  # the template's ids around the input's; a long input cut where it says
        template = backbone.prompt_template
        out.update(special_tokens=False, head_ids=list(template.head), tail_ids=list(template.tail),
                   truncation=backbone.truncation,
                   text=tokenizer.decode(template.head) + prefix + "{input}" + tokenizer.decode(template.tail))
    else:  # the tokenizer's own special tokens, cut where the tokenizer cuts
        out.update(special_tokens=True, truncation=tokenizer.truncation_side, text=prefix + "{input}")
    return out


def _answer_format(backbone: Backbone) -> dict[str, Any]:
    out: dict[str, Any] = {"decode": backbone.decode, "max_output_length": backbone.max_output_length}
    if backbone.family != "encoder":  # an encoder chooses among options and generates nothing
        out.update(eos_token_id=backbone.eos_id, eos_token=backbone.tokenizer.convert_ids_to_tokens(backbone.eos_id))
    if backbone.family == "causal":
        out["answer_space"] = backbone.prompt_template.answer_space
    return out


def export_record(predictor: Predictor, run_dir: str | Path | None, exported_as: str) -> dict[str, Any]:
    """The record of an export of ``predictor`` (``exported_as``: ``peft`` or ``merged``). With ``run_dir``, the run's
    metric, scores and backbone record (its dtype, its fingerprint) are read from it; without, they are unknown
    (None) and the backbone is the predictor's."""
    p = predictor
    if run_dir is None:
        backbone, scores = {**p.backbone.describe(), "fingerprint": p.backbone.fingerprint()}, None
    else:
        backbone = read_json(Path(run_dir) / "config.json")["backbone"]
        scores = read_json(Path(run_dir) / "scores.json")
    return {
        "format": FORMAT,
        "taskspace_version": __version__,
        "exported_as": exported_as,
        "task": p.task,
        "metric": scores["metric"] if scores else None,
        "scores": {k: scores.get(k) for k in ("dev", "test", "n_dev", "n_test", "n_test_total")} if scores else None,
        "method": p.method.describe(),
        "backbone": backbone,
        "input": {**_input_format(p.backbone, p.task), "inline_choices": p.inline_choices},
        "answer": _answer_format(p.backbone),
    }


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """The record in an exported folder; None where there is none (an adapter that peft itself saved)."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"not a taskspace export record (expected \"format\": \"{FORMAT}\")", path)
    return record


def recorded_backbone_options(record: dict[str, Any] | None) -> dict[str, Any]:
    """The backbone settings of an export that an import takes (:data:`IMPORTED_SETTINGS`); none without a
    record."""
    if record is None:
        return {}
    return {k: record["backbone"][k] for k in IMPORTED_SETTINGS if k in record["backbone"]}


def input_text(record: dict[str, Any], text: str, options: Sequence[str] = ()) -> str:
    """``text`` as the exported model was tuned to read it, before tokenization: ``[task] text`` (or the text alone
    where the backbone had no task prefix), then ``options`` as `` (A) ... (B) ...`` where the task wrote its
    answer choices after each input (``inline_choices``)."""
    choices = inline_options_suffix(options) if options and record["input"].get("inline_choices") else ""
    return record["input"]["task_prefix"] + text + choices


def input_ids(record: dict[str, Any], text: str, tokenizer, options: Sequence[str] = ()) -> list[int]:
    """The token ids taskspace feeds the model for ``text`` (with its answer choices ``options``, for a task that
    wrote them after its inputs), from an export's record and the base model's tokenizer: the formatted text in the
    template's ids (a causal model's) or with the tokenizer's special tokens, a long input cut as taskspace cuts
    it."""
    fmt = record["input"]
    formatted = input_text(record, text, options)
    if fmt["special_tokens"]:
        return tokenizer(formatted, max_length=fmt["max_input_length"], truncation=True).input_ids
    body = tokenizer(formatted, add_special_tokens=False).input_ids
    template = Template(fmt["template"], fmt["head_ids"], fmt["tail_ids"], record["answer"]["answer_space"])
    return template.prompt_ids(body, fmt["max_input_length"], fmt["truncation"])


def write_export_files(out: str | Path, record: dict[str, Any]) -> None:
    """``taskspace.json`` and ``README.md`` in ``out``."""
    write_json(Path(out) / RECORD, record)
    write_text(Path(out) / CARD, card_text(record))


# ----------------------------------------------------------------------------------------------------------------
# The model card


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _scores_section(record: dict[str, Any]) -> list[str]:
    scores = record["scores"]
    if scores is None:
        return ["No scores: exported from a model in memory, not from a run directory."]
    return [f"| split | {record['metric']} | examples |", "| --- | --- | --- |",
            f"| dev | {_pct(scores['dev'])} | {scores['n_dev']} |",
            f"| test | {_pct(scores['test'])} | {scores['n_test']} of {scores['n_test_total']} |", "",
            f"Scored as taskspace scores: decode `{record['answer']['decode']}` (see Answer format)."]


def _input_section(record: dict[str, Any]) -> list[str]:
    fmt = record["input"]
    prefix = fmt["task_prefix"]
    first = (f"1. The text is `{prefix}` followed by the input (the task prefix)." if prefix
             else "1. The text is the input itself (no task prefix).")
    if fmt.get("inline_choices"):
        first += (" The input ends with its answer choices, ` (A) first (B) second ...` (CrossFit's multiple-choice "
                  "form); the answer is the chosen option's text.")
    if fmt["special_tokens"]:
        second = "2. It is tokenized with the tokenizer's own special tokens (`add_special_tokens=True`)."
    else:
        second = (f"2. It is tokenized without special tokens and placed in the `{fmt['template']}` template "
                  f"({_TEMPLATE_WORDS[fmt['template']]}): the token ids `{fmt['head_ids']}` before it and "
                  f"`{fmt['tail_ids']}` after it.")
    where = {"left": "beginning (its end and the template are kept)",
             "right": "end (its beginning and the template are kept)",
             "middle": "middle (the first and last halves of the room left by the template are kept)"}[fmt["truncation"]]
    shown = ("As text, before the tokenizer adds its special tokens:" if fmt["special_tokens"] else
             "As text (for reading: the ids above are exact):")
    return ["The model answers inputs formatted as taskspace formatted them in training; fed the raw text, it "
            "answers otherwise.", "", first, second,
            f"3. An input longer than {fmt['max_input_length']} tokens in all loses its {where}.", "",
            shown, "", "```text", fmt["text"], "```", "",
            "`taskspace.export.input_ids(record, text, tokenizer)` returns these ids from this folder's record "
            "(`taskspace.export.read_record(DIR)`) and the base model's tokenizer."]


def _answer_section(record: dict[str, Any]) -> list[str]:
    ans, family = record["answer"], record["backbone"]["family"]
    if family == "encoder":
        method = record["method"]["method"]
        return [f"The option whose embedding is most similar (cosine) to the input's. Both embeddings are the mean "
                f"of the last hidden states over the text's tokens; the input is embedded with the {method} delta, "
                f"the options by the base model alone, cut to {ans['max_output_length']} tokens."]
    generate = (f"Greedy decoding (no sampling) of at most {ans['max_output_length']} new tokens, stopping after the "
                f"end-of-sequence token `{ans['eos_token']}` (id {ans['eos_token_id']}); the answer is the new tokens "
                "decoded with `skip_special_tokens=True`, surrounding whitespace stripped.")
    if ans["decode"] == "generate":
        return [generate]
    space = " after a space" if ans.get("answer_space") else ""
    return [f"Among the input's options, the one whose tokens (the option{space}, then `{ans['eos_token']}`) have "
            "the highest mean log-probability after the input. An input without options is answered by generation: "
            + generate[0].lower() + generate[1:]]


_AUTO = {"causal": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM"}
#: The peft_type of the adapters import-peft reads, and the method each becomes.
METHOD_OF = {"LORA": "lora", "PROMPT_TUNING": "prompt"}


def _use_section(record: dict[str, Any]) -> list[str]:
    family, merged = record["backbone"]["family"], record["exported_as"] == "merged"
    back = "`taskspace predict RUN` on the run answers the same."
    if not merged and record["method"]["method"] in METHOD_OF.values():
        back = ("`taskspace import-peft DIR` brings the adapter back as a taskspace run in these settings (it reads "
                "this record); `taskspace predict` on that run answers the same.")
    if family not in _AUTO or record["answer"]["decode"] != "generate":
        return [back]
    auto = _AUTO[family]
    imports = ["import torch"]
    if merged:
        imports.append(f"from transformers import AutoTokenizer, {auto}")
        load = ["tokenizer = AutoTokenizer.from_pretrained(DIR)", f"model = {auto}.from_pretrained(DIR).eval()"]
    else:
        imports += ["from peft import PeftModel", f"from transformers import AutoTokenizer, {auto}",
                    "from taskspace.backbones import resolve_backbone_path"]
        load = ["base = resolve_backbone_path(record['backbone']['name'])[0]  # taskspace's name -> the model's folder",
                "tokenizer = AutoTokenizer.from_pretrained(base)",
                f"model = PeftModel.from_pretrained({auto}.from_pretrained(base), DIR).eval()"]
    imports.append("from taskspace.export import input_ids, read_record")
    new_tokens = "out[0, ids.shape[1]:]" if family == "causal" else "out[0]"
    return ["```python", *imports, "", "DIR = 'path/to/this/folder'", "record = read_record(DIR)", *load,
            "ids = torch.tensor([input_ids(record, 'your input', tokenizer)])",
            "out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,",
            "                     max_new_tokens=record['answer']['max_output_length'],",
            "                     eos_token_id=record['answer']['eos_token_id'])",
            f"answer = tokenizer.decode({new_tokens}, skip_special_tokens=True).strip()", "```", "", back]


def _backbone_section(record: dict[str, Any]) -> list[str]:
    b = record["backbone"]
    dtype = f"- computed in: {b.get('dtype')}"
    if record["exported_as"] == "merged" and b.get("dtype") != "float32":
        dtype += (f" (this folder holds the merged weights in float32; load it with `dtype=torch.{b.get('dtype')}` "
                  "to compute as the run did)")
    method = record["method"]
    return [f"- name: `{b['name']}` ({b['family']}, {b['model_type']})",
            f"- weights: sha256 `{b.get('fingerprint')}` (taskspace's fingerprint of the weights)", dtype,
            f"- method: {method['method']} `{json.dumps(method['config'])}` ({method['size']:,} numbers)"]


def card_text(record: dict[str, Any]) -> str:
    """The README.md model card of an export: the record in words."""
    b, method, task = record["backbone"], record["method"]["method"], record["task"]
    merged = record["exported_as"] == "merged"
    what = (f"`{b['name']}` with a {method} delta merged into its weights" if merged else
            f"A PEFT adapter ({method}) for `{b['name']}`; load it with `peft.PeftModel.from_pretrained(base, DIR)`")
    lines = ["---", f"base_model: {json.dumps(b['name'])}", f"library_name: {'transformers' if merged else 'peft'}",
             "tags:", "- taskspace", f"- {method}", "---", "", f"# {task}: {method} on {b['name']}", "",
             f"{what}. Exported by taskspace {record['taskspace_version']} from a {method} delta tuned on the task "
             f"`{task}`. `{RECORD}` records what this card says for programs.", "", "## Scores", "",
             *_scores_section(record), "", "## Input format", "", *_input_section(record), "", "## Answer format", "",
             *_answer_section(record), "", "## Use", "", *_use_section(record), "", "## Backbone", "",
             *_backbone_section(record)]
    return "\n".join(lines) + "\n"
