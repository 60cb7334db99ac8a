"""The input template: how a causal backbone lays out ``[task] input`` before the answer it continues with.

A decoder-only model answers after the input's last token, so what stands between the input and the answer
decides what it has learnt to continue with there. Three templates:

- ``chat``: the tokenizer's own chat template (instruct models): the formatted input is the user's turn, the
  answer the assistant's turn (then the end-of-turn token, the tokenizer's EOS). The default of a backbone whose
  tokenizer has one, unless measurements chose another for that model (:data:`MEASURED`).
- ``boundary``: the formatted input, a newline and ``Answer:``, then the answer after a space. The default of
  SmolLM2-135M-Instruct: in docs/budget.md's sweep prompt tuning and LoRA each reach their best mean dev score in it
  (or within the tie of the chat template, with 1.6x shorter examples), and it beats the bare form by 14 points
  (docs/templates.md). Also the default of causal backbones without a chat template: there the model sees plain
  text either way, as SmolLM2 does under ``boundary``, where an explicit boundary beat none (no base model of real
  size is at hand to measure it on; ``plain`` stays one option away).
- ``plain``: the formatted input and the answer right after it, with no boundary: taskspace's form before
  templates (and the papers' text-to-text form, the only one of the seq2seq and encoder families).

A template is split once into the token ids before and after the formatted input (:class:`Template`), so that an
input longer than ``max_input_length`` is cut inside and keeps both sides of the template. Where the formatted input
is cut is the ``truncation`` setting (:data:`TRUNCATIONS`): ``middle`` (the default of causal backbones) keeps its
beginning and its end, ``left`` keeps its end, ``right`` keeps its beginning (what the tokenizers of seq2seq and
encoder backbones do, and the only choice there). A causal model answers after the input's last token, but
CrossFit's inputs do not put the question last: ropes writes ``question: ... [SEP] situation: ... [SEP]
background: ...`` and a multiple-choice input ends with its options, so keeping either end alone loses what the
other holds (measured in docs/backbones.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

#: The templates of causal backbones; seq2seq and encoder backbones take ``plain`` only.
TEMPLATES = ("chat", "boundary", "plain")
#: Where a causal backbone cuts an input longer than ``max_input_length``: the middle, the left (beginning) or the
#: right (end) of the formatted input.
TRUNCATIONS = ("middle", "left", "right")
#: What ``boundary`` puts between the input and the answer.
BOUNDARY = "\nAnswer:"
#: Stands for the user's message while the chat template is rendered (split at it afterwards).
_SLOT = "\u2063TASKSPACE-INPUT\u2063"


def has_chat_template(tokenizer) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


#: The template measured best for a model, by the name it is recorded under (its last path part, so that a local
#: copy or the hub's name of the same model counts): docs/budget.md.
MEASURED = {"SmolLM2-135M-Instruct": "boundary"}


def default_template(tokenizer, name: str = "") -> str:
    """The template measured best for the model named ``name`` (:data:`MEASURED`); else ``chat`` where the tokenizer
    has a chat template, else ``boundary``."""
    measured = MEASURED.get(name.rstrip("/").rsplit("/", 1)[-1])
    return measured or ("chat" if has_chat_template(tokenizer) else "boundary")


def _special_sides(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer adds before and after a text of its own (e.g. Llama's BOS)."""
    plain = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a", add_special_tokens=True).input_ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def _continuation(tokenizer, text: str) -> list[int]:
    """The ids of ``text`` as it is tokenized after other text (a sentencepiece tokenizer marks the start of a text
    with a space of its own, which a continuation does not have)."""
    if not text:
        return []
    lead = tokenizer("a", add_special_tokens=False).input_ids
    both = tokenizer("a" + text, add_special_tokens=False).input_ids
    if both[: len(lead)] == lead:
        return both[len(lead) :]
    return tokenizer(text, add_special_tokens=False).input_ids


@dataclass(frozen=True)
class Template:
    """A template's fixed token ids: ``head`` before the formatted input, ``tail`` after it; and whether an answer
    starts with a space (a byte-level BPE tokenizer needs it written out after a word, not after a chat turn)."""

    name: str
    head: list[int]
    tail: list[int]
    answer_space: bool

    @classmethod
    def build(cls, name: str, tokenizer, write_space: bool) -> "Template":
        if name not in TEMPLATES:
            raise ConfigError(f"template={name!r}: expected {', '.join(TEMPLATES)}")

        def ids(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False).input_ids if text else []

        if name == "chat":
            if not has_chat_template(tokenizer):
                raise ConfigError("template='chat': this tokenizer has no chat template; use template=boundary or "
                                  "template=plain")
            text = tokenizer.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                                 add_generation_prompt=True)
            if text.count(_SLOT) != 1:
                raise ConfigError("template='chat': this tokenizer's chat template does not place the user's message "
                                  "as it is; use template=boundary")
            before, after = text.split(_SLOT)
            return cls(name, ids(before), _continuation(tokenizer, after), answer_space=False)
        head, tail = _special_sides(tokenizer)
        if name == "boundary":
            tail = _continuation(tokenizer, BOUNDARY) + tail
        return cls(name, head, tail, answer_space=write_space)

    def prompt_ids(self, body: list[int], max_length: int, truncation: str = "middle") -> list[int]:
        """``head + body + tail`` within ``max_length`` tokens: a long body loses its middle (its first and last
        halves of the room are kept; the beginning gets the odd token), its beginning (``left``) or its end
        (``right``)."""
        room = max_length - len(self.head) - len(self.tail)
        if room < 1:
            raise ConfigError(f"max_input_length={max_length}: the {self.name} template alone takes "
                              f"{len(self.head) + len(self.tail)} tokens; expected a larger max_input_length")
        if len(body) > room:
            if truncation == "left":
                body = body[-room:]
            elif truncation == "right":
                body = body[:room]
            else:
                first = (room + 1) // 2
                body = body[:first] + body[len(body) - (room - first):]
        return self.head + body + self.tail
