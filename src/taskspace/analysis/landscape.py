"""UDT's performance landscape (Fig. 2): a 2-d slice of the unified subspace through three methods' solutions.

Given the intrinsic vectors that subspace optimisation found for one task with three methods (the paper's I_A,
I_P, I_L for adapter, prefix and LoRA), the plane is spanned from the origin ``I_A`` by ``u = unit(I_P - I_A)``
and ``v = unit(the part of I_L - I_A orthogonal to u)``; a grid point ``(alpha, beta)`` is
``z = I_A + alpha u + beta v``. Each method m decodes every grid point (``anchor_m + up_m(z)``) and scores it on
the task's dev or test split. The landscape is the paper's measure, ``P = 1/M sum_m E_m(z) / E_PET`` with one
divisor for all methods, ``E_PET``, the mean of the methods' scores in their original spaces (from the bank): the
mean score of a point relative to the mean original score. Beside it, each method's own map,
``E_m(z) / E_m(original)``.

Grid points are evaluated many at a time: one batch holds several points' copies of the split's examples, each
row bound to its own point's theta (per-example theta); a method without per-example theta (fine-tuning) is
evaluated point by point. Finished points are appended to ``landscape.jsonl`` with the digest of the examples they
were scored on, so an interrupted run resumes (on the same examples only); the number of forward passes is printed
before the work starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import ConfigError, DataError
from ..evaluation import score
from ..store import append_jsonl
from ..tasks import Example
from ..tasks.example import examples_digest
from ..tasks.settled import settled_check

POINTS_FILE = "landscape.jsonl"


@dataclass
class Plane:
    origin: torch.Tensor  # [d]
    u: torch.Tensor  # [d], unit
    v: torch.Tensor  # [d], unit, orthogonal to u

    def point(self, alpha: float, beta: float) -> torch.Tensor:
        return self.origin + alpha * self.u + beta * self.v

    def coordinates(self, z: torch.Tensor) -> tuple[float, float]:
        rel = z - self.origin
        return float(rel @ self.u), float(rel @ self.v)


def plane(origin: torch.Tensor, towards_u: torch.Tensor, towards_v: torch.Tensor) -> Plane:
    """The plane through three intrinsic vectors (Gram-Schmidt from ``origin``)."""
    a = towards_u - origin
    if float(a.norm()) == 0.0:
        raise ConfigError("the first two intrinsic vectors are equal: they span no direction")
    u = a / a.norm()
    b = towards_v - origin
    b = b - (b @ u) * u
    if float(b.norm()) <= 1e-5 * float(a.norm()):
        raise ConfigError("the three intrinsic vectors lie on one line: they span no plane")
    return Plane(origin.clone(), u, b / b.norm())


def grid(span: float, step: float) -> list[float]:
    """-span .. span in steps of ``step`` (both ends included when span is a multiple of step)."""
    if span <= 0 or step <= 0:
        raise ConfigError(f"--span {span} and --step {step}: expected positive numbers")
    n = int(math.floor(span / step + 1e-9))
    return [round(i * step, 10) for i in range(-n, n + 1)]


def _done(path: Path, data: str) -> dict[tuple[str, float, float], float]:
    """The points already scored, refused when they were scored on other examples than ``data`` (their digest; a
    line written before digests were recorded is not checked)."""
    out = {}
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                out[(r["method"], r["alpha"], r["beta"])] = r["score"]
            except (json.JSONDecodeError, KeyError):
                raise DataError("damaged line; delete the file to start the landscape again", path, number) from None
            if r.get("data", data) != data:
                raise ConfigError(f"{path} holds points scored on other examples (the task's data changed since); "
                                  "delete it to start the landscape again, or choose another --out")
    return out


def evaluate_points(method_space, examples: Sequence[Example], metric: str, zs: list[torch.Tensor], *,
                    batch_size: int = 32) -> list[float]:
    """The score of each intrinsic vector in ``zs`` decoded by ``method_space``, on ``examples``: many points in
    one batch when the method binds per-example theta."""
    method, backbone = method_space.method, method_space.method.backbone
    with torch.no_grad():
        thetas = [method_space.theta(z.to(backbone.device)) for z in zs]
    n = len(examples)
    settle = settled_check(metric)  # only the scores are kept: answers stop once their scores are settled
    predictions: list[list[str]] = [[""] * n for _ in zs]
    if method.supports_per_example:
        rows = [(p, i) for p in range(len(zs)) for i in range(n)]
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                theta = torch.stack([thetas[p] for p, _ in chunk])
                with method.bind(theta):
                    answers = backbone.predict(backbone.collate([examples[i] for _, i in chunk]), settle)
                for (p, i), a in zip(chunk, answers):
                    predictions[p][i] = a
    else:
        from ..evaluation import predict

        predictions = [predict(backbone, examples, method=method, theta=t, batch_size=batch_size, settle=settle)
                       for t in thetas]
    return [score(metric, examples, preds) for preds in predictions]


def landscape(space, runs: dict[str, torch.Tensor], order: Sequence[str], examples: Sequence[Example], metric: str,
              references: dict[str, float], out: str | Path, *, span: float = 4.0, step: float = 0.4,
              points_per_pass: int = 8, batch_size: int = 32,
              report: Callable[[str], None] = print) -> dict:
    """Evaluate the grid (resuming from ``out/landscape.jsonl``); returns the plane, the axes and the values.

    ``runs`` maps each method to its intrinsic vector; ``order`` names the origin, the u and the v method (the
    paper: adapter, prefix, LoRA); ``references`` each method's original-space score on the same split. The result
    holds ``overall`` (the paper's P, % of ``e_pet``, the mean reference) and ``relative`` (per method, % of its own
    reference), both ``[beta][alpha]`` over ``axis``.
    """
    if len(order) != 3 or set(order) - set(runs):
        raise ConfigError(f"the landscape needs three methods' vectors in order (origin, u, v); got {list(order)}")
    for m in order:
        if m not in space.methods:
            raise ConfigError(f"the subspace has no {m} up-projection (it has {', '.join(space.methods)})")
        if not references.get(m):
            raise ConfigError(f"no original-space score of {m} to divide by (or it is 0)")
    p = plane(runs[order[0]], runs[order[1]], runs[order[2]])
    axis = grid(span, step)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = examples_digest(examples)
    done = _done(out / POINTS_FILE, data)
    todo = [(m, a, b) for m in order for a in axis for b in axis if (m, a, b) not in done]
    examples_per_point = len(examples)
    report(f"landscape: {len(axis)} x {len(axis)} points x {len(order)} methods x {examples_per_point} examples; "
           f"{len(todo)} point-method pairs to evaluate ({len(done)} done), about "
           f"{math.ceil(len(todo) * examples_per_point / batch_size)} batches of {batch_size}")
    for m in order:
        pending = [(a, b) for (mm, a, b) in todo if mm == m]
        for start in range(0, len(pending), points_per_pass):
            chunk = pending[start:start + points_per_pass]
            values = evaluate_points(space[m], examples, metric, [p.point(a, b) for a, b in chunk],
                                     batch_size=batch_size)
            for (a, b), value in zip(chunk, values):
                append_jsonl(out / POINTS_FILE, {"method": m, "alpha": a, "beta": b, "score": value, "data": data})
                done[(m, a, b)] = value
    relative = {m: [[100 * done[(m, a, b)] / references[m] for a in axis] for b in axis] for m in order}
    e_pet = sum(references[m] for m in order) / len(order)
    overall = [[100 * sum(done[(m, a, b)] for m in order) / len(order) / e_pet for a in axis] for b in axis]
    marks = {m: p.coordinates(runs[m]) for m in order}
    return {"axis": axis, "overall": overall, "e_pet": e_pet, "relative": relative, "marks": marks,
            "order": list(order), "origin_score": {m: done[(m, 0.0, 0.0)] for m in order} if 0.0 in axis else {}}


def plot_landscape(result: dict, path: str | Path, title: str) -> Path:
    """One heat map per method (% of its own original score) and the paper's P (% of E_PET), with the three
    methods' points marked."""
    from .plots import pyplot, save_figure

    plt = pyplot("the landscape plot", " (or --no-png)")

    axis, order = result["axis"], result["order"]
    panels = ([(m, result["relative"][m], "% of its original") for m in order]
              + [("P (UDT Fig. 2)", result["overall"], "% of E_PET")])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8))
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    for ax, (name, values, unit) in zip(axes, panels):
        image = ax.imshow(values, origin="lower", extent=extent, cmap="viridis", vmin=0)
        for m, marker in zip(order, ("o", "s", "^")):
            a, b = result["marks"][m]
            ax.scatter([a], [b], marker=marker, c="red", edgecolors="white", label=m)
        ax.set(title=name, xlabel="alpha (u)", ylabel="beta (v)")
        fig.colorbar(image, ax=ax, fraction=0.046, label=unit)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=100)
