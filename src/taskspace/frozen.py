"""The frozen backbone's scores, computed once and kept in the cache folder.

Every run, bank entry and recipe stage on a task evaluates the frozen model on the same dev and test examples
before it trains (``zero_shot.json``); with generation that costs as much as the training of a short run, since an
untuned model answers with up to ``max_output_length`` tokens. The scores are kept under
``<cache>/frozen-scores/`` and reused only for exactly the same computation: the same weights (the backbone's
fingerprint), the same backbone settings (dtype, decode protocol, lengths, ...) and device type, the same
examples (their content, not a path), metric and batch size, the same versions of torch and transformers, and the
same source of the code that predicts and scores (taskspace's evaluation, backbones and metrics). Anything else
computes them again. The key is stored beside the scores and compared in full when read.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

from .backbones import Backbone
from .cache import cache_dir
from .evaluation import evaluate
from .tasks import Example
from .tasks.example import examples_digest

FOLDER = "frozen-scores"


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 of the source files that decide what the frozen model answers and how it is scored."""
    from . import evaluation
    from .backbones import base
    from .tasks import metrics, settled

    h = hashlib.sha256()
    files = [Path(evaluation.__file__), Path(metrics.__file__), Path(settled.__file__),
             *sorted(Path(base.__file__).parent.glob("*.py"))]
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


def frozen_score(backbone: Backbone, examples: Sequence[Example], metric: str, *, batch_size: int = 32,
                 progress: bool = False, desc: str = "frozen") -> float:
    """The frozen backbone's score on ``examples``, from the cache when this exact computation was made before."""
    from .store import write_json

    key = frozen_key(backbone, examples, metric, batch_size)
    path = cache_dir() / FOLDER / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()}.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key and isinstance(saved.get("score"), (int, float)):
            return saved["score"]
    except (OSError, ValueError, AttributeError):
        pass  # not computed yet, or a damaged file: compute it again
    value = evaluate(backbone, examples, metric, batch_size=batch_size, progress=progress, desc=desc, settle=True)[0]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"key": key, "score": value})
    except OSError:
        pass  # a read-only cache folder: the score is right, only not kept
    return value


def frozen_scores(backbone: Backbone, splits: Mapping[str, Sequence[Example]], metric: str, *,
                  batch_size: int = 32, progress: bool = False) -> dict[str, float | None]:
    """``{split: score}`` of the frozen backbone (None for an empty split), each as :func:`frozen_score`."""
    return {name: frozen_score(backbone, examples, metric, batch_size=batch_size, progress=progress, desc=name)
            if examples else None for name, examples in splits.items()}
