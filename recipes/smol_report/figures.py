"""The files beside the report of one recipe (or part): the relative-performance CSV, E_rel against d and UDT's
transfer heat map."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from taskspace.analysis.plots import heatmap, interval_lines
from taskspace.store import write_text

from .relative import RELATIVE_COLUMNS, relative_records, seeds_text, transfer_cells


def write_figures(stem: Path, cfg: dict, results: dict, *, png: bool = True) -> list[Path]:
    """Next to the report: ``<stem>.csv`` (the relative-performance records), and with ``png`` the intrinsic
    dimension plot (``<stem>-d.png``: E_rel against d, learnt vs random, with the intervals; IPT's Fig. 3 and 5;
    only when the runs have two d or more)
    and the transfer heat map (``<stem>-transfer.png``: UDT's Table 4). Returns the files written."""
    records = relative_records(cfg, results)
    written = [stem.with_suffix(".csv")]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(RELATIVE_COLUMNS)
    writer.writerows([["" if r[c] is None else r[c] for c in RELATIVE_COLUMNS] for r in records])
    write_text(written[0], table.getvalue())
    if not png:
        return written
    series: dict[str, list[tuple]] = {}
    for r in records:
        if r["d"] is not None and r["e_rel"] is not None and not r["key"].startswith("udt/"):
            label = {"ipt": "IPT (learnt auto-encoder)", "random-ae": "random auto-encoder",
                     "fastfood": "Fastfood (DID, all weights)",
                     "linear": "linear subspace (the bank's principal directions)"}[r["key"].split("/")[0]]
            series.setdefault(label, []).append((r["d"], 100 * r["e_rel"], None if r["e_rel_half"] is None
                                                 else 100 * r["e_rel_half"]))
    if len({x for points in series.values() for x, _, _ in points}) > 1:  # a line needs two d: none for one
        method = cfg.get("ipt", {}).get("method", "prompt")
        frozen = next((r["e_rel"] for r in records if r["key"] == "frozen" and r["method"] == method), None)
        lines = {f"{method} tuning (the reference)": 100.0}
        if frozen is not None:
            lines["frozen backbone"] = 100 * frozen
        written.append(interval_lines(
            f"unseen tasks ({len(cfg['unseen_tasks'])}), {seeds_text(len(cfg['seeds']))}, 95 % intervals", series,
            stem.parent / f"{stem.name}-d.png", xlabel="intrinsic dimension d", ylabel=f"E_rel to {method} (%)",
            lines=lines))
    if "udt" in cfg and any(k.startswith("transfer/") for k in results.get("scores", {})):
        ms, cells = transfer_cells(cfg, results)
        values = [[None if cells[a][b][0] is None else 100 * cells[a][b][0] for b in ms] for a in ms]
        written.append(heatmap("UDT transfer: E_rel (%) of the source's vectors decoded by the target",
                               [f"from {m}" for m in ms], [f"to {m}" for m in ms], values,
                               stem.parent / f"{stem.name}-transfer.png"))
    return written
