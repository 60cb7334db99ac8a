"""A fitted subspace: for each delta method, ``theta = anchor + up(z)`` with ``z`` in R^d.

A :class:`Subspace` holds, per method, the method itself (its options and layout on a backbone), an *anchor*
(the common initial theta of the solutions it was fitted to, or zero) and an *up-projection* R^d -> R^D (and,
when the recipe learnt one, the down-projection R^D -> R^d). Every recipe produces one: IPT (an auto-encoder of
prompts or adapters), UDT (joint projections of several methods), its simplified shared-vector variant, and the
random baselines (a random auto-encoder, Fastfood of all weights).

On disk: ``subspace.json`` (recipe, d, methods with options, layout and projection configs, backbone name and
weights hash, training tasks, seeds, library version) and ``subspace.safetensors`` (anchors and the learnt
projection parameters; seeded random parts are rebuilt from their configs). :meth:`Subspace.load` refuses a
backbone or method layout that differs from the saved one and says what differs. Wherever a folder is taken,
``builtin:NAME`` names a subspace that ships with the package (:mod:`taskspace.builtin`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..backbones import Backbone, recorded_settings, scoring_settings
from ..builtin import is_builtin, subspace_folder
from ..deltas import DeltaMethod, build_method
from ..errors import ConfigError, IncompatibleError
from ..projections import Projection, build_projection
from ..store import read_json, read_tensors, write_json, write_tensors
from ..runs import ThetaSource

from .files import SUBSPACE_JSON, SUBSPACE_TENSORS  # noqa: F401 (named here too)


@dataclass
class MethodSpace:
    """One method's part of a subspace: ``theta = anchor + up(z)``."""

    method: DeltaMethod
    anchor: torch.Tensor
    up: Projection
    down: Projection | None = None

    def theta(self, z: torch.Tensor) -> torch.Tensor:
        return self.anchor + self.up(z)


@dataclass
class Subspace:
    recipe: str
    d: int
    methods: dict[str, MethodSpace]
    backbone: Backbone
    info: dict[str, Any] = field(default_factory=dict)
    #: The training tasks' own intrinsic vectors ``[T, d]`` (in ``info["tasks"]`` order), when the finder learnt
    #: them (the shared variant).
    task_vectors: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.task_vectors is not None and (self.task_vectors.dim() != 2 or self.task_vectors.shape[1] != self.d):
            raise ConfigError(f"task vectors of shape {tuple(self.task_vectors.shape)}, expected [tasks, {self.d}]")
        for name, ms in self.methods.items():
            if ms.up.d_in != self.d or ms.up.d_out != ms.method.size:
                raise ConfigError(
                    f"{name}: the up-projection maps R^{ms.up.d_in} -> R^{ms.up.d_out}, the subspace needs "
                    f"R^{self.d} -> R^{ms.method.size}"
                )
            if ms.anchor.shape != (ms.method.size,):
                raise ConfigError(f"{name}: anchor of shape {tuple(ms.anchor.shape)}, expected ({ms.method.size},)")

    def __getitem__(self, method: str) -> MethodSpace:
        if method not in self.methods:
            raise ConfigError(f"the {self.recipe} subspace has no method {method!r}; it has {list(self.methods)}")
        return self.methods[method]

    def theta(self, method: str, z: torch.Tensor) -> torch.Tensor:
        """Decode ``z`` (``[d]`` or ``[B, d]``) into ``method``'s theta."""
        return self[method].theta(z)

    # ------------------------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        tensors: dict[str, torch.Tensor] = {}
        methods = {}
        for name, ms in self.methods.items():
            tensors[f"anchor.{name}"] = ms.anchor
            for part, proj in (("up", ms.up), ("down", ms.down)):
                if proj is not None:
                    for key, value in proj.named_parameters():
                        tensors[f"{part}.{name}.{key}"] = value
            methods[name] = {
                "options": ms.method.config.to_dict(),
                "size": ms.method.size,
                "layout": ms.method.layout.to_json(),
                "up": ms.up.config(),
                "down": None if ms.down is None else ms.down.config(),
            }
        if self.task_vectors is not None:
            tensors["task_vectors"] = self.task_vectors
        write_tensors(folder / SUBSPACE_TENSORS, tensors, {"format": "taskspace.subspace/1", "recipe": self.recipe})
        write_json(folder / SUBSPACE_JSON, {
            "format": "taskspace.subspace/1",
            "taskspace_version": __version__,
            "recipe": self.recipe,
            "d": self.d,
            "backbone": {"name": self.backbone.name, "model_type": self.backbone.model_type,
                         "fingerprint": self.backbone.fingerprint(), "template": self.backbone.template,
                         "settings": scoring_settings(self.backbone)},
            "methods": methods,
            "info": self.info,
        })

    @classmethod
    def load(cls, folder: str | Path, backbone: Backbone) -> "Subspace":
        """The subspace saved in ``folder`` (or the built-in ``builtin:NAME``), on ``backbone``: refused when the
        backbone's weights, its input template or a method's layout differ from the saved ones."""
        shown = folder if is_builtin(folder) else Path(folder) / SUBSPACE_JSON  # how errors name it
        folder = subspace_folder(folder)
        meta = read_json(folder / SUBSPACE_JSON)
        saved_bb = meta["backbone"]
        if saved_bb["fingerprint"] != backbone.fingerprint():
            raise IncompatibleError(
                f"{shown}: the subspace was fitted on backbone {saved_bb['name']!r} (weights sha256 "
                f"{saved_bb['fingerprint'][:12]}...), not on {backbone.name!r} "
                f"({backbone.fingerprint()[:12]}...)"
            )
        template = recorded_settings(saved_bb)["template"]
        if template != backbone.template:
            raise IncompatibleError(f"{shown}: the subspace was fitted to solutions tuned with the "
                                    f"{template} input template; this backbone uses {backbone.template} (load it with "
                                    f"--backbone-opt template={template})")
        tensors = read_tensors(folder / SUBSPACE_TENSORS, backbone.device)
        methods = {}
        for name, m in meta["methods"].items():
            method = build_method(name, backbone, m["options"])
            if method.size != m["size"] or method.layout.to_json() != m["layout"]:
                raise IncompatibleError(
                    f"{shown}: method {name} with options {m['options']} has a layout of size "
                    f"{method.size} on {backbone.name!r}, the subspace was fitted to size {m['size']}"
                    + ("" if method.size != m["size"] else " with other slices")
                )
            parts = {}
            for part in ("up", "down"):
                if m[part] is None:
                    parts[part] = None
                    continue
                proj = build_projection(m[part]).to(backbone.device)
                prefix = f"{part}.{name}."
                learnt = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                expected = {k for k, _ in proj.named_parameters()}
                if set(learnt) != expected:
                    raise IncompatibleError(
                        f"{folder / SUBSPACE_TENSORS}: {part}-projection of {name} has parameters {sorted(learnt)}, "
                        f"expected {sorted(expected)}"
                    )
                with torch.no_grad():
                    for k, p in proj.named_parameters():
                        p.copy_(learnt[k])
                parts[part] = proj.freeze()
            methods[name] = MethodSpace(method, tensors[f"anchor.{name}"], parts["up"], parts["down"])
        return cls(meta["recipe"], meta["d"], methods, backbone, meta.get("info", {}), tensors.get("task_vectors"))


class IntrinsicVector(nn.Module):
    """The trainable part of subspace tuning: one intrinsic vector ``z``."""

    def __init__(self, z: torch.Tensor):
        super().__init__()
        self.z = nn.Parameter(z.detach().clone())


class ProjectedTheta(ThetaSource):
    """``theta = anchor + up(z)`` with only ``z`` trained (IST, UDT subspace optimisation, random baselines).

    The up-projection is frozen. An evaluation (or generation) projects once: it binds the theta of
    :meth:`current` for all its batches.
    """

    def __init__(self, space: MethodSpace, z: torch.Tensor):
        self.space = space
        self.trainable = IntrinsicVector(z)

    def bound(self) -> torch.Tensor:
        return self.space.anchor + self.space.up(self.trainable.z)

    def current(self) -> torch.Tensor:
        with torch.no_grad():
            return (self.space.anchor + self.space.up(self.trainable.z)).detach().clone()
