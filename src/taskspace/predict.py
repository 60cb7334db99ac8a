"""Use a tuned result: load a finished run (``tune`` or ``subspace-tune``) and answer new inputs with it.

    from taskspace.predict import Predictor
    predictions = Predictor.load("runs/ag_news-lora-...").predict(["Stocks fell ...", "The match ended ..."])

The run's backbone is loaded with the settings it recorded (the decode protocol, input and output lengths, the
dtype, the input template), its delta is read and checked against it, and every input is formatted as the run's
task formatted its own (``[task] input``, in the run's template). An input may come with options: with the
``rank`` protocol the most likely option is the answer, with ``generate`` the options only reach the model as part
of the input text, as in training: a run whose task wrote its answer choices after each input (multiple-choice
QA, :func:`taskspace.tasks.task.with_inline_choices`) writes a query's options after it the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .backbones import Backbone, reload_backbone
from .deltas import DeltaMethod, build_method
from .errors import DataError
from .evaluation import predict
from .runs import is_finished
from .store import load_delta, read_json
from .tasks import Example
from .tasks.formats import inline_options_suffix


@dataclass
class Query:
    """One input to answer, with the options to choose among (if any)."""

    input: str
    options: tuple[str, ...] = ()


class Predictor:
    """A finished run's theta bound to its backbone."""

    def __init__(self, backbone: Backbone, method: DeltaMethod, theta: torch.Tensor, task: str,
                 batch_size: int = 32, inline_choices: bool = False):
        self.backbone = backbone
        self.method = method
        self.theta = theta
        self.task = task
        #: Whether a query's options are written after its input, as the run's task wrote its answer choices.
        self.inline_choices = inline_choices
        #: Inputs per batch unless :meth:`predict` is told otherwise: a run's own evaluation batch size.
        self.batch_size = batch_size

    @classmethod
    def load(cls, run_dir: str | Path, *, backbone: Backbone | None = None, dtype: str | None = None) -> "Predictor":
        """The run in ``run_dir``; its backbone is loaded as recorded (in ``dtype`` if given, else the recorded
        one) unless one is given. Its batch size is the run's evaluation batch size: in bfloat16 an answer can
        depend on the other inputs of its batch (their padded length changes how products round), so the run's
        batching is what gives back its own test predictions exactly."""
        run_dir = Path(run_dir)
        config = read_json(run_dir / "config.json")
        if not is_finished(run_dir):
            raise DataError("the run is not finished (no scores.json); run its command again to finish it", run_dir)
        if "method" not in config or "backbone" not in config or "task" not in config.get("run", {}):
            raise DataError("not a run directory's config (expected run, backbone and method records)",
                            run_dir / "config.json")
        if backbone is None:
            backbone = reload_backbone(config["backbone"], **({"dtype": dtype} if dtype is not None else {}))
        method = build_method(config["method"]["method"], backbone, config["method"]["config"])
        theta = load_delta(run_dir / "theta", method)[0]
        return cls(backbone, method, theta, config["run"]["task"],
                   batch_size=config["run"].get("eval_batch_size", 32),
                   inline_choices=config.get("data", {}).get("inline_choices", False))  # False: made before

    def predict(self, inputs: Iterable[str | Query], *, batch_size: int | None = None,
                progress: bool = False) -> list[str]:
        """One answer per input (a string, or a :class:`Query` with options), in batches of ``batch_size``
        (default: :attr:`batch_size`, the run's)."""
        examples = [self._example(q if isinstance(q, Query) else Query(q)) for q in inputs]
        return predict(self.backbone, examples, method=self.method, theta=self.theta,
                       batch_size=batch_size or self.batch_size, progress=progress)

    def _example(self, query: Query) -> Example:
        # An Example needs a reference; prediction never reads it.
        reference = query.options[0] if query.options else ""
        text = query.input + (inline_options_suffix(query.options) if self.inline_choices and query.options else "")
        return Example(text, (reference,), tuple(query.options), task=self.task)


def read_queries(lines: Sequence[str], source: str) -> list[Query]:
    """Queries from text lines: a JSON object ``{"input": ..., "options": [...]}`` per line, or plain text (one
    input per line); blank lines are skipped. ``source`` names the file in errors."""
    queries = []
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.lstrip().startswith("{"):
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg}); expected {{\"input\": ..., \"options\": [...]}} or a "
                                "plain line of text", source, number) from None
            if not isinstance(record.get("input"), str):
                raise DataError("expected a string \"input\"", source, number)
            options = record.get("options", [])
            if not isinstance(options, list) or not all(isinstance(o, str) and o for o in options):
                raise DataError("\"options\" must be a list of non-empty strings", source, number)
            queries.append(Query(record["input"], tuple(dict.fromkeys(options))))
        else:
            queries.append(Query(text))
    return queries
