"""Scores computed once and kept in the cache folder: the frozen backbone's, and a fixed theta's.

Every run, bank entry and recipe stage on a task evaluates the frozen model on the same dev and test examples
before it trains (``zero_shot.json``); with generation that costs as much as the training of a short run, since an
untuned model answers with up to ``max_output_length`` tokens. The scores are kept under
``<cache>/frozen-scores/`` and reused only for exactly the same computation: the same weights (the backbone's
fingerprint), the same backbone settings (dtype, decode protocol, lengths, ...) and device type, the same
examples (their content, not a path), metric and batch size, the same versions of torch and transformers, and the
same source of the code that predicts and scores (taskspace's evaluation, backbones and metrics). Anything else
computes them again. The key is stored beside the scores and compared in full when read.

A theta that is evaluated, not trained (UDT's transfer decodes each tuned z by every method's up-projection, at
each of its recorded steps: hours of evaluations in a catalog run) is kept the same way under
``<cache>/theta-scores/``, its key adding the delta method (name, options, size), theta's content (SHA-256 of its
values, dtype and shape) and the source of the delta methods' code; an interrupted transfer computes only what
it had not.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .backbones import Backbone
from .cache import cache_dir
from .deltas import DeltaMethod
from .evaluation import evaluate
from .tasks import Example, examples_digest

FOLDER = "frozen-scores"
THETA_FOLDER = "theta-scores"


@functools.lru_cache(maxsize=2)
def _code_digest(deltas: bool = False) -> str:
    """SHA-256 of the source files that decide what the frozen model answers and how it is scored; with
    ``deltas``, also of those that decide how a delta method's theta changes the backbone."""
    from . import deltas as delta_methods, evaluation
    from .backbones import base
    from .tasks import metrics, settled

    h = hashlib.sha256()
    files = [Path(evaluation.__file__), Path(metrics.__file__), Path(settled.__file__),
             *sorted(Path(base.__file__).parent.glob("*.py"))]
    if deltas:
        files += sorted(Path(delta_methods.__file__).parent.glob("*.py"))
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def frozen_key(backbone: Backbone, examples: Sequence[Example], metric: str, batch_size: int) -> dict:
    """Everything the frozen model's score on ``examples`` depends on."""
    import torch
    import transformers

    return {
        "fingerprint": backbone.fingerprint(),
        "backbone": backbone.describe(),
        "device": backbone.device.type,
        "metric": metric,
        "batch_size": batch_size,
        "examples": examples_digest(examples),
        "code": _code_digest(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def theta_digest(theta: torch.Tensor) -> str:
    """SHA-256 of theta's values, dtype and shape."""
    t = theta.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype} {tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def kept_score(backbone: Backbone, examples: Sequence[Example], metric: str, *, method: DeltaMethod | None = None,
               theta: torch.Tensor | None = None, batch_size: int = 32, progress: bool = False,
               desc: str = "evaluate") -> float:
    """The score on ``examples`` of the frozen backbone, or of ``method`` with ``theta`` (both or neither), from
    the cache when this exact computation was made before."""
    from .store import write_json

    if (method is None) != (theta is None):
        raise ValueError("kept_score: pass method and theta together, or neither (the frozen backbone)")
    key = frozen_key(backbone, examples, metric, batch_size)
    folder = FOLDER
    if method is not None:
        key.update(method=method.describe(), theta=theta_digest(theta), code=_code_digest(deltas=True))
        folder = THETA_FOLDER
    path = cache_dir() / folder / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()}.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key and isinstance(saved.get("score"), (int, float)):
            return saved["score"]
    except (OSError, ValueError, AttributeError):
        pass  # not computed yet, or a damaged file: compute it again
    value = evaluate(backbone, examples, metric, method=method, theta=theta, batch_size=batch_size,
                     progress=progress, desc=desc, settle=True)[0]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"key": key, "score": value})
    except OSError:
        pass  # a read-only cache folder: the score is right, only not kept
    return value


def frozen_score(backbone: Backbone, examples: Sequence[Example], metric: str, *, batch_size: int = 32,
                 progress: bool = False, desc: str = "frozen") -> float:
    """The frozen backbone's score on ``examples``, from the cache when this exact computation was made before."""
    return kept_score(backbone, examples, metric, batch_size=batch_size, progress=progress, desc=desc)


def kept_scores(backbone: Backbone, splits: Mapping[str, Sequence[Example]], metric: str, *,
                method: DeltaMethod | None = None, theta: torch.Tensor | None = None, batch_size: int = 32,
                progress: bool = False) -> dict[str, float | None]:
    """``{split: score}`` (None for an empty split), each as :func:`kept_score`."""
    return {name: kept_score(backbone, examples, metric, method=method, theta=theta, batch_size=batch_size,
                             progress=progress, desc=name) if examples else None for name, examples in splits.items()}


def frozen_scores(backbone: Backbone, splits: Mapping[str, Sequence[Example]], metric: str, *,
                  batch_size: int = 32, progress: bool = False) -> dict[str, float | None]:
    """``{split: score}`` of the frozen backbone (None for an empty split), each as :func:`frozen_score`."""
    return kept_scores(backbone, splits, metric, batch_size=batch_size, progress=progress)
