"""The checkpoint of a training run: what :func:`taskspace.train.train` saves after every evaluation and resumes
from (the trainable, the best and untrained states, the optimiser's state, the random number generators), as
safetensors + JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .errors import ConfigError, DataError, Interrupted
from .store import read_json, read_tensors, write_json, write_tensors


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's state as tensors (``optim.<param>.<key>``) and JSON-ready metadata (parameter groups, scalars)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Load into ``opt`` the state that :func:`optimizer_to_files` split into ``tensors`` and ``meta``."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Checkpoint:
    """``<run_dir>/checkpoint/``: ``state-<step>.safetensors`` and ``state.json``, which names it and is written last.

    A new state goes to a new file and the JSON is replaced after it, so a process killed at any moment leaves the
    previous pair whole (the older tensor file is deleted only once the new JSON is in place)."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "checkpoint"
        self.meta = self.dir / "state.json"

    def exists(self) -> bool:
        return self.meta.is_file()

    def saved_step(self) -> int | None:
        """The step of the saved state (None when none is saved, or its description cannot be read)."""
        try:
            return int(read_json(self.meta)["step"])
        except (DataError, KeyError, TypeError, ValueError):
            return None

    def save(self, trainable, opt, step, best, initial, history, bad_evals, key, shapes, data) -> None:
        """Save the training state; ``key``: the settings, ``shapes``: the trainable's, ``data``: the digest of
        the training examples (:func:`taskspace.tasks.example.examples_digest`), all checked by :meth:`load`."""
        from .cache import file_sha256

        best_step, best_score, best_state = best
        tensors = {f"param.{k}": v for k, v in trainable.state_dict().items()}
        tensors.update({f"best.{k}": v for k, v in (best_state or {}).items()})
        initial_score, initial_state = initial if initial is not None else (None, {})
        tensors.update({f"initial.{k}": v for k, v in initial_state.items()})
        opt_tensors, opt_meta = optimizer_to_files(opt)
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = state
        name = f"state-{step}.safetensors"
        write_tensors(self.dir / name, tensors)
        write_json(self.meta, {
            "step": step, "best_step": best_step, "best_score": best_score, "bad_evals": bad_evals,
            "initial_score": initial_score,
            "history": history, "optimizer": opt_meta, "config": key, "shapes": shapes, "data": data,
            "tensors": name, "tensors_sha256": file_sha256(self.dir / name, remember=False),
        })
        for old in self.dir.glob("state*.safetensors"):
            if old.name != name:
                old.unlink()

    def load(self, key: str, shapes: dict, data: str) -> tuple[dict, dict[str, torch.Tensor]]:
        """The saved state, refused when it was made with other settings, parameters or training examples (a
        checkpoint saved before the examples' digest was recorded is not checked on them)."""
        from .cache import file_sha256

        meta = read_json(self.meta)
        if meta.get("config") != key or meta.get("shapes") != shapes:
            raise ConfigError(
                f"{self.meta}: this checkpoint was made with different training settings or parameters; "
                "resume with the same settings, or start a fresh run directory (--overwrite)"
            )
        if meta.get("data", data) != data:
            raise ConfigError(f"{self.meta}: this checkpoint was trained on other training examples (the data "
                              "changed since); resume on the data it was trained on, or start a fresh run directory "
                              "(--overwrite)")
        tensors = self.dir / meta.get("tensors", "state.safetensors")
        if not tensors.is_file() or file_sha256(tensors, remember=False) != meta["tensors_sha256"]:
            raise DataError(f"does not match {self.meta.name} (changed or damaged after it was written); delete "
                            "the checkpoint folder to restart the run from scratch", tensors)
        return meta, read_tensors(tensors)


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    """The random number generators as a checkpoint saved them. CUDA states are restored when this process sees
    as many CUDA devices as the saving one did (a run resumed on other hardware cannot replay its kernels exactly
    anyway; with the backbone's dropout off, taskspace's steps draw no CUDA random numbers)."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def interrupted(runs: Sequence[tuple[str | Path | None, int]]) -> KeyboardInterrupt:
    """What Ctrl-C during training leaves, for ``(run_dir, eval_every)`` of each run being trained: an
    :class:`~taskspace.errors.Interrupted` naming the checkpoint each run directory holds, which its command resumes
    from (a plain KeyboardInterrupt when none checkpoints)."""
    saved = []
    for run_dir, eval_every in runs:
        if run_dir is None:
            continue
        ckpt = Checkpoint(Path(run_dir))
        step = ckpt.saved_step()
        saved.append(f"the training state of step {step} is saved in {ckpt.dir}" if step is not None else
                     f"no training step of {run_dir} is saved yet (the first checkpoint comes at step {eval_every})")
    return Interrupted("; ".join(saved)) if saved else KeyboardInterrupt()
