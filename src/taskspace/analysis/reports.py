"""The tables that the subspace commands write: bank scores, reconstruction, subspace tuning and transfer. They
render stored results and scores computed elsewhere; nothing here runs a model.

Every relative figure divides a test score by the test score of the same task tuned in the original space with
the same method (the bank entry), and where the papers do, by prompt tuning or fine-tuning of the same task.
"""

from __future__ import annotations

from typing import Sequence

from ..subspace.bank import Bank
from .relative import Table, mean, relative_table, transfer_matrix

#: The papers' reference methods, with the name of their relative measure.
REFERENCES = {"prompt": "E_rel^PT", "finetune": "E_rel^FT"}


def bank_tables(bank: Bank, tasks: Sequence[str], split: str = "test") -> list[Table]:
    """Absolute scores per task and method; and each method relative to prompt tuning / fine-tuning if banked."""
    methods = list(bank.spec.methods)
    scores = {m: [bank.score(t, m, split) for t in tasks] for m in methods}
    rows = [[t] + [None if scores[m][i] is None else 100 * scores[m][i] for m in methods] for i, t in enumerate(tasks)]
    rows.append(["average"] + [None if mean(scores[m]) is None else 100 * mean(scores[m]) for m in methods])
    tables = [Table(f"Bank: {split} scores (%)", ["task"] + methods, rows)]
    for ref, measure in REFERENCES.items():
        if ref not in methods:
            continue
        for m in methods:
            if m != ref:
                tables.append(relative_table(f"{m} relative to {ref} ({measure}), {split}", tasks, scores[m],
                                             scores[ref], score_name=m, reference_name=ref))
    return tables


def reconstruction_table(method: str, recipe: str, d: int, tasks: Sequence[str], scores: Sequence[float | None],
                         refs: Sequence[float | None]) -> Table:
    """Test scores of solutions reconstructed through a subspace against the solutions themselves."""
    return relative_table(f"{method}: solutions reconstructed through the {recipe} subspace (d = {d})", tasks,
                          scores, refs, score_name="reconstructed", reference_name="original")


def shared_table(method: str, d: int, tasks: Sequence[str], scores: Sequence[float | None],
                 refs: Sequence[float | None]) -> Table:
    """UDT's simplified variant: the training tasks' shared vectors decoded with ``method``, against that method
    tuned in its original space."""
    return relative_table(f"{method}: training tasks' shared vectors (d = {d})", tasks, scores, refs,
                          score_name="shared subspace", reference_name="original")


def tuning_tables(title: str, tasks: Sequence[str], method: str, scores: Sequence[float | None],
                  bank: Bank | None) -> list[Table]:
    """Subspace-tuning test scores relative to the same method in its original space, and to PT / FT."""
    if bank is None:
        rows = [[t, None if s is None else 100 * s] for t, s in zip(tasks, scores)]
        return [Table(title, ["task", "test %"], rows, "No bank given: no reference scores.")]
    tables = []
    if method in bank.spec.methods:
        refs = [bank.score(t, method) for t in tasks]
        tables.append(relative_table(f"{title}: relative to {method} in its original space", tasks, scores, refs,
                                     reference_name=f"{method} original"))
    for ref, measure in REFERENCES.items():
        if ref in bank.spec.methods and ref != method:
            refs = [bank.score(t, ref) for t in tasks]
            tables.append(relative_table(f"{title}: relative to {ref} ({measure})", tasks, scores, refs,
                                         reference_name=ref))
    return tables


def transfer_tables(results: dict[str, dict[str, dict[str, dict]]], bank: Bank | None,
                    split: str = "test") -> list[Table]:
    """``results[task][source][target] = {"dev": ..., "test": ...}`` to a source x target matrix of the average
    relative performance (target method's original-space score as reference) and one table per pair."""
    scores: dict[str, dict[str, dict[str, float | None]]] = {}
    for task, sources in results.items():
        for source, targets in sources.items():
            for target, values in targets.items():
                scores.setdefault(source, {}).setdefault(target, {})[task] = values[split]
    targets = sorted({t for by_target in scores.values() for t in by_target})
    references = None if bank is None else {
        t: {task: bank.score(task, t) for task in results} for t in targets if t in bank.spec.methods}
    methods, matrix_rows = transfer_matrix(scores, references)
    tables = []
    for source in methods:
        for target in methods:
            pairs = scores.get(source, {}).get(target)
            if source != target and pairs and references is not None and target in references:
                tables.append(relative_table(f"transfer {source} -> {target}, {split}", list(pairs),
                                             list(pairs.values()), [references[target][t] for t in pairs],
                                             score_name="transferred", reference_name=f"{target} original"))
    notes = ("Rows: the method whose subspace vector was tuned (source); columns: the method it is decoded into "
             "(target); cells: mean over tasks of E(target, decoded) / E(target, original space), %. The "
             "diagonal is subspace optimisation itself.")
    return [Table(f"Transfer matrix ({split})", ["source \\ target"] + methods, matrix_rows, notes)] + tables
