"""The report of a recipe file, from its runs' results.json and stages.json alone (and the task files under
``args.data_dir`` for the failure analysis; a report written again trains nothing): a section per part, each
followed by its files."""

from __future__ import annotations

import time
from pathlib import Path

from taskspace.store import read_json, write_text

from smol_settings import RESULTS, STAGES, parts_of

from .analyses import analyses_lines, landscape_lines
from .figures import write_figures
from .sections import report_lines
from .variants import COMPARISONS, variant_lines


def write_report(path: Path, cfg: dict, args) -> None:
    """The report of the recipe file ``cfg`` (``args``: its command line) in ``path``, each part's files beside it."""
    # the date of the newest results (a report written again with --report-only keeps the run's date)
    recorded = [out / RESULTS for _, _, out in parts_of(cfg, Path(args.out)) if (out / RESULTS).is_file()]
    when = time.strftime("%Y-%m-%d", time.localtime(max((f.stat().st_mtime for f in recorded), default=time.time())))
    lines = [f"# {Path(args.config).stem}", "", f"Command (from the repository root, {when}):", "", "```bash",
             f"python recipes/smol.py {args.config} --out {args.out} --report {args.report}", "```", ""]
    png = not getattr(args, "no_png", False)
    for name, part, out in parts_of(cfg, Path(args.out)):
        if not (out / RESULTS).is_file():
            lines += [f"## {name}: no results yet", ""]
            continue
        stages = read_json(out / STAGES) if (out / STAGES).is_file() else {}
        results = read_json(out / RESULTS)
        body = report_lines(part, args, results, stages, f"## {name}" if name else "## Setting")
        # a part's sections go one level down
        lines += [("#" + line) if name and line.startswith("## ") and line != body[0] else line for line in body]
        stem = path.parent / (f"{path.stem}-{name}" if name else path.stem)
        files = write_figures(stem, part, results, png=png)
        more: list[str] = []
        if "analyses" in part and "analyses" in results:
            text, copied = analyses_lines(part, results, out, stem, png=png)
            more += text
            files += copied
        if "landscape" in results:
            text, copied = landscape_lines(results["landscape"], out, stem, png=png)
            more += text
            files += copied
        for comparison in COMPARISONS:  # recipes/fit_variants.py on this run's bank
            folder = out / "variants" / comparison
            if (folder / "results.json").is_file():
                more += variant_lines(comparison, part, read_json(folder / "results.json"),
                                      read_json(folder / "stages.json") if (folder / "stages.json").is_file() else {},
                                      source=args.config, bank_seconds=stages.get("bank: training tasks"))
        lines += [("#" + line) if name and line.startswith("## ") else line for line in more]
        lines += ["Files: " + ", ".join(f"[{f.name}]({f.name})" for f in files) + ".", ""]
        lines += [f"![{f.name}]({f.name})" for f in files if f.suffix == ".png"] + [""]
    write_text(path, "\n".join(lines) + "\n")
    print(f"report: {path}")
