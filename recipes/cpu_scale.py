"""CPU-scale reproduction of IPT and UDT: banks, subspaces, tuning in them, transfer, and a Markdown report.

    python recipes/cpu_scale.py recipes/cpu_scale.yaml --out runs/cpu-scale --report reports/cpu-scale.md

Each stage's settings in the YAML file are the fields of its library config (``Config.from_dict``: BankSpec,
MSFConfig, RandomAEConfig, FastfoodConfig, UnifiedConfig, TrainConfig), so a misspelt key is refused by name.
Every stage is resumable: run the same command again after an interruption and finished work is verified and
reused (banks and runs check their files; fits resume from their checkpoints). The report lists every number
and how long each stage took in this invocation.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from taskspace import __version__
from taskspace.analysis import Table, gain_kept, mean, relative_mean, relative_table, transfer_matrix
from taskspace.backbones import load_backbone
from taskspace.evaluation import evaluate
from taskspace.store import read_json, write_json
from taskspace.subspace import (BankSpec, FastfoodConfig, FitData, MSFConfig, RandomAEConfig, Subspace,
                                SubspaceTuneConfig, UnifiedConfig, build_bank, subspace_tune, transfer)
from taskspace.subspace.reconstruction import reconstruction_scores
from taskspace.tasks import CATALOG

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared module, also when imported
from recipe_common import (Stages, fit_saved, read_recipe, recipe_arguments, run_main, stage_config,  # noqa: E402
                           train_config)

PAPER = {
    "ipt_seen_d250": 97.0, "ipt_unseen_d250": 83.0,
    "udt_optimisation": 88.7, "udt_transfer": 84.7,
}


def recon_mean(space: Subspace, bank, tasks: list[str], method: str) -> float | None:
    """Mean relative score (%) of the bank's solutions of ``tasks`` reconstructed through ``space``."""
    return _pct(relative_mean(*reconstruction_scores(space, bank, tasks, method)))


def tune_in(space: Subspace, folder: Path, tasks: list[str], method: str, cfg: dict, out: Path, *,
            data_dir: str, data_seed: int, max_test: int, z_init: str = "normal", z_std: float = 0.02) -> dict:
    """Subspace tuning of ``method`` for every task; returns {task: scores}."""
    results = {}
    for task in tasks:
        config = SubspaceTuneConfig(task=task, method=method, data_dir=data_dir, data_seed=data_seed,
                                    z_init=z_init, z_std=z_std, train=train_config(cfg), max_test_examples=max_test)
        results[task] = subspace_tune(space, folder, config, out / f"{task}-d{data_seed}-{method}")
        print(f"    {task:34s} {method:8s} test {_fmt(results[task]['test'])}", flush=True)
    return results


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def relative_rows(tasks, scores: dict[str, float | None], refs: dict[str, float | None]) -> tuple[list[list], float | None]:
    """The per-task rows (with each task's category) and the mean ratio of ``scores`` against ``refs``."""
    table = relative_table("", tasks, [scores.get(t) for t in tasks], [refs.get(t) for t in tasks],
                           columns={"category": [CATALOG[t].category for t in tasks]})
    return table.rows, relative_mean([scores.get(t) for t in tasks], [refs.get(t) for t in tasks])


def _pct(x):
    return None if x is None else 100 * x


def main() -> None:
    args = recipe_arguments(__doc__.split("\n\n")[0])
    cfg = read_recipe(args.config)
    out = Path(args.out)
    if args.report_only:
        results = read_json(out / "results.json")
        for key in ("ipt", "random_ae", "msf"):     # JSON keys are strings; the dimensions are numbers
            results[key] = {int(d): v for d, v in results[key].items()}
        stages = Stages()
        stages.seconds = read_json(out / "stages.json")
        write_report(Path(args.report), cfg, args, results, stages)
        return
    data_dir = args.data_dir
    stages = Stages()
    torch.manual_seed(0)

    backbone = load_backbone(cfg["backbone"], **cfg["backbone_options"])
    train_tasks, unseen = cfg["train_tasks"], cfg["unseen_tasks"]
    max_test = cfg["max_test_examples"]
    seed = cfg["data_seed"]

    # 1. Banks ----------------------------------------------------------------------------------------------------
    b = cfg["bank"]
    spec = BankSpec.from_dict({**b, "train": train_config(b["train"])}, tasks=train_tasks + unseen, data_dir=data_dir,
                              data_seed=seed, max_test_examples=max_test, zero_shot=False)
    bank = stages.run("bank", build_bank, out / "bank", spec, backbone,
                      report=lambda t, m, s, sc: print(f"    {t:34s} {m:8s} test {_fmt(sc['test'])}", flush=True))

    def bank_scores(method: str, tasks: list[str]) -> dict[str, float | None]:
        return {t: bank.score(t, method) for t in tasks}

    def frozen_scores() -> dict[str, float]:
        scores = {}
        for t in unseen:
            task, test = spec.test_split(t)  # the examples the bank's entries were scored on
            scores[t] = evaluate(backbone, test, task.metric)[0]
        return scores

    frozen = stages.run("frozen backbone on unseen tasks", frozen_scores)
    results: dict[str, Any] = {
        "setting": {"backbone": backbone.name, "fingerprint": backbone.fingerprint(), "threads": torch.get_num_threads(),
                    "sizes": {m: bank.method(m).size for m in b["methods"]}},
        "frozen": frozen, "bank": {m: bank_scores(m, train_tasks + unseen) for m in b["methods"]},
    }

    # 2. IPT ------------------------------------------------------------------------------------------------------
    i = cfg["ipt"]
    ist = cfg["ist"]
    results["ipt"], results["random_ae"], results["msf"] = {}, {}, {}
    for d in i["dims"]:
        folder = out / f"ipt-d{d}"
        msf = stage_config(MSFConfig, i["msf"], method="prompt", d=d)
        space = stages.run(f"IPT MSF d={d}", fit_saved, "ipt", msf, FitData.from_bank(bank, train_tasks), folder)
        results["msf"][d] = {
            "train": stages.run(f"IPT MSF d={d}: reconstruction of training tasks", recon_mean, space, bank,
                                train_tasks, "prompt"),
            "unseen": stages.run(f"IPT MSF d={d}: reconstruction of unseen tasks", recon_mean, space, bank, unseen,
                                 "prompt")}
        results["ipt"][d] = {"unseen": stages.run(
            f"IPT IST d={d}, unseen tasks", tune_in, space, folder, unseen, "prompt", ist["train"], folder / "ist",
            data_dir=data_dir, data_seed=seed, max_test=max_test, z_std=ist["z_std"])}
        random_folder = out / f"random-ae-d{d}"
        random_space = fit_saved("random-ae", RandomAEConfig(method="prompt", d=d, hidden=msf.hidden, seed=17),
                                 FitData.from_bank(bank, []), random_folder)
        results["random_ae"][d] = stages.run(
            f"random auto-encoder d={d}, unseen tasks", tune_in, random_space, random_folder, unseen, "prompt",
            ist["train"], random_folder / "ist", data_dir=data_dir, data_seed=seed, max_test=max_test,
            z_std=ist["z_std"])
    d_top = max(i["dims"])
    seen = train_tasks[: i["same_diff_tasks"]]
    folder = out / f"ipt-d{d_top}"
    space = Subspace.load(folder, backbone)
    results["ipt"][d_top]["same"] = stages.run(
        f"IPT IST d={d_top}, training tasks, same data", tune_in, space, folder, seen, "prompt", ist["train"],
        folder / "ist", data_dir=data_dir, data_seed=seed, max_test=max_test, z_std=ist["z_std"])
    results["ipt"][d_top]["diff"] = stages.run(
        f"IPT IST d={d_top}, training tasks, other data", tune_in, space, folder, seen, "prompt", ist["train"],
        folder / "ist", data_dir=data_dir, data_seed=cfg["other_data_seed"], max_test=max_test, z_std=ist["z_std"])

    # IPT's category challenges: a subspace found on one category's training tasks, tuned on unseen tasks of the
    # same category (in-category) and of the other (out-of-category).
    results["category"] = {}
    d_cat = i.get("category_d")
    for category in (("cls", "non-cls") if d_cat else ()):
        cat_train = [t for t in train_tasks if CATALOG[t].category == category]
        cat_folder = out / f"ipt-{category}-d{d_cat}"
        msf = stage_config(MSFConfig, i["msf"], method="prompt", d=d_cat)
        cat_space = stages.run(f"IPT MSF d={d_cat} on the {len(cat_train)} {category} training tasks", fit_saved,
                               "ipt", msf, FitData.from_bank(bank, cat_train), cat_folder)
        results["category"][category] = stages.run(
            f"IPT IST d={d_cat} ({category} subspace), unseen tasks", tune_in, cat_space, cat_folder, unseen,
            "prompt", ist["train"], cat_folder / "ist", data_dir=data_dir, data_seed=seed, max_test=max_test,
            z_std=ist["z_std"])

    # 3. Fastfood over all weights ----------------------------------------------------------------------------------
    f = cfg["fastfood"]
    results["fastfood"] = {}
    for d in f["dims"]:
        for said in f["said"]:
            name = f"fastfood-{'said' if said else 'did'}-d{d}"
            ff_folder = out / name
            ff_space = fit_saved("fastfood", FastfoodConfig(d=d, said=said, seed=23), FitData(backbone, []), ff_folder)
            results["fastfood"][name] = stages.run(
                f"Fastfood {'SAID' if said else 'DID'} d={d}, unseen tasks", tune_in, ff_space, ff_folder, unseen,
                "finetune", f["train"], ff_folder / "runs", data_dir=data_dir, data_seed=seed, max_test=max_test,
                z_init="zeros")

    # 4. UDT ------------------------------------------------------------------------------------------------------
    u = cfg["udt"]
    udt_folder = out / "udt"
    ucfg = stage_config(UnifiedConfig, u["fit"])
    udt = stages.run("UDT subspace approximation", fit_saved, "unified", ucfg, FitData.from_bank(bank, train_tasks),
                     udt_folder)
    results["udt_recon"] = {m: stages.run(f"UDT reconstruction of training tasks, {m}", recon_mean, udt, bank,
                                          train_tasks, m) for m in ucfg.methods}
    results["udt"] = {m: stages.run(f"UDT subspace optimisation, {m}", tune_in, udt, udt_folder, unseen, m,
                                    u["subspace_train"], udt_folder / "opt", data_dir=data_dir, data_seed=seed,
                                    max_test=max_test) for m in ucfg.methods}

    def run_transfer():
        matrix: dict[str, dict[str, dict[str, float | None]]] = {}
        for m in ucfg.methods:
            for t in unseen:
                out_t = transfer(udt, udt_folder, udt_folder / "opt" / f"{t}-d{seed}-{m}")
                for target, sc in out_t.items():
                    matrix.setdefault(m, {}).setdefault(target, {})[t] = sc["test"]
        return matrix

    results["transfer"] = stages.run("UDT transfer", run_transfer)
    write_json(out / "results.json", results)  # JSON turns the dimensions (int keys) into strings
    write_json(out / "stages.json", stages.seconds)
    write_report(Path(args.report), cfg, args, results, stages)


def write_report(path: Path, cfg: dict, args, results: dict, stages: Stages) -> None:
    unseen, train_tasks = cfg["unseen_tasks"], cfg["train_tasks"]
    pt = results["bank"]["prompt"]
    lines: list[str] = []
    total = sum(stages.seconds.values())
    setting = results["setting"]
    sizes = ", ".join(f"{m} D = {size:,}" for m, size in setting["sizes"].items())
    data_dir = os.path.relpath(args.data_dir)
    lines += [
        "# CPU-scale reproduction of IPT and UDT",
        "",
        f"Command (from the repository root, {time.strftime('%Y-%m-%d')}):",
        "",
        "```bash",
        f"python recipes/cpu_scale.py {args.config} --out {args.out} --report {args.report}",
        "```",
        "",
        f"taskspace {__version__}, backbone {setting['backbone']} (all weights sha256 {setting['fingerprint'][:16]}...), "
        f"{setting['threads']} CPU threads, Python {platform.python_version()}, torch {torch.__version__}. "
        f"Total wall time of the run: **{total / 60:.1f} minutes** (of its last invocation, if it was resumed).",
        "",
        "Setting: " + f"{len(train_tasks)} training tasks and {len(unseen)} unseen tasks from {data_dir} "
        f"(16-shot files of seed {cfg['data_seed']}; the lists are in {args.config}); test scores on a fixed random "
        f"subset of at most {cfg['max_test_examples']} test examples per task; inputs truncated to "
        f"{cfg['backbone_options']['max_input_length']} tokens. The bank tunes every task with prompt tuning "
        f"({cfg['bank']['methods']['prompt']}), adapters, prefix-tuning and LoRA ({sizes}), "
        f"{cfg['bank']['train']['steps']} steps each. Relative performance is the mean over tasks of "
        "E_subspace / E_reference, per task.",
        "",
    ]
    # Summary ---------------------------------------------------------------------------------------------------
    summary = []
    for d, r in results["ipt"].items():
        _, avg = relative_rows(unseen, {t: s["test"] for t, s in r["unseen"].items()}, pt)
        summary.append([f"IPT, IST on unseen tasks, d = {d} (E_rel^PT)", _pct(avg), PAPER["ipt_unseen_d250"],
                        "≥ 90"])
    d_top = max(results["ipt"])
    for key, label in (("same", "same data"), ("diff", "other data")):
        scores = {t: s["test"] for t, s in results["ipt"][d_top][key].items()}
        _, avg = relative_rows(list(scores), scores, pt)
        summary.append([f"IPT, IST on training tasks, {label}, d = {d_top} (E_rel^PT)", _pct(avg),
                        PAPER["ipt_seen_d250"] if key == "diff" else None, ""])
    for d, r in results["random_ae"].items():
        _, avg = relative_rows(unseen, {t: s["test"] for t, s in r.items()}, pt)
        summary.append([f"random auto-encoder, unseen tasks, d = {d} (E_rel^PT)", _pct(avg), None, ""])
    for category, r in results["category"].items():
        for label, same in (("in-category", True), ("out-of-category", False)):
            tasks = [t for t in unseen if (CATALOG[t].category == category) == same]
            _, avg = relative_rows(tasks, {t: r[t]["test"] for t in tasks}, pt)
            summary.append([f"IPT ({category} training tasks only), {label} unseen tasks, d = {cfg['ipt']['category_d']}"
                            " (E_rel^PT)", _pct(avg), None, ""])
    for name, r in results["fastfood"].items():
        _, avg = relative_rows(unseen, {t: s["test"] for t, s in r.items()}, pt)
        summary.append([f"{name}: all weights, unseen tasks (E_rel^PT)", _pct(avg), None, ""])
    _, avg = relative_rows(unseen, results["frozen"], pt)
    summary.append(["frozen backbone (no tuning), unseen tasks (E_rel^PT)", _pct(avg), None, ""])
    # A more demanding reference: LoRA, the strongest original-space method on this backbone.
    lora = results["bank"].get("lora")
    if lora is not None:
        for d, r in results["ipt"].items():
            _, avg = relative_rows(unseen, {t: s["test"] for t, s in r["unseen"].items()}, lora)
            summary.append([f"IPT, IST on unseen tasks, d = {d}, relative to LoRA", _pct(avg), None, ""])
        _, avg = relative_rows(unseen, results["frozen"], lora)
        summary.append(["frozen backbone, unseen tasks, relative to LoRA", _pct(avg), None, ""])
    frozen_vs = [relative_rows(unseen, results["frozen"], results["bank"][m])[1] for m in results["udt"]]
    summary.append(["frozen backbone, unseen tasks, relative to each UDT method (mean)", _pct(mean(frozen_vs)),
                    None, ""])
    opt_avgs = []
    for m, r in results["udt"].items():
        _, avg = relative_rows(unseen, {t: s["test"] for t, s in r.items()}, results["bank"][m])
        opt_avgs.append(avg)
        summary.append([f"UDT subspace optimisation, {m}, unseen tasks", _pct(avg), None, ""])
    summary.append([f"UDT subspace optimisation, mean of the {len(opt_avgs)} methods", _pct(mean(opt_avgs)),
                    PAPER["udt_optimisation"], ""])
    transfer_avgs = []
    for source, targets in results["transfer"].items():
        for target, scores in targets.items():
            if source != target:
                _, avg = relative_rows(unseen, scores, results["bank"][target])
                transfer_avgs.append(avg)
    summary.append([f"UDT transfer, mean of the {len(transfer_avgs)} source → target pairs", _pct(mean(transfer_avgs)),
                    PAPER["udt_transfer"], "≥ 88"])
    lines.append(Table("Summary (relative performance, %)", ["measure", "taskspace", "paper", "our target"],
                       summary).markdown())
    # Gain over the frozen backbone -------------------------------------------------------------------------------
    margin = 0.05
    frozen = results["frozen"]
    gain = []

    def gain_row(label: str, scores: dict, ref_name: str, refs: dict) -> None:
        kept, share, ref_gain = gain_kept({t: scores.get(t) for t in unseen}, {t: refs.get(t) for t in unseen},
                                          frozen, margin)
        gain.append([label, ref_name, f"{len(kept)} of {len(unseen)}", _pct(ref_gain), _pct(share)])

    for d, r in results["ipt"].items():
        gain_row(f"IPT, IST d = {d}", {t: s["test"] for t, s in r["unseen"].items()}, "prompt", pt)
    for d, r in results["random_ae"].items():
        gain_row(f"random auto-encoder d = {d}", {t: s["test"] for t, s in r.items()}, "prompt", pt)
    for name, r in results["fastfood"].items():
        gain_row(name, {t: s["test"] for t, s in r.items()}, "prompt", pt)
    for m, r in results["udt"].items():
        gain_row(f"UDT subspace optimisation, {m}", {t: s["test"] for t, s in r.items()}, m, results["bank"][m])
    for source, targets in results["transfer"].items():
        for target, scores in targets.items():
            if source != target:
                gain_row(f"UDT transfer {source} → {target}", scores, target, results["bank"][target])
    lines.append(Table(
        f"Gain over the frozen backbone kept in the subspace, unseen tasks: (E_subspace - E_frozen) / (E_reference - "
        f"E_frozen), averaged over the tasks where the reference method beats the frozen backbone by at least "
        f"{100 * margin:.0f} points (a stricter measure than the papers' ratio when the frozen backbone is strong)",
        ["measure", "reference", "tasks", "reference's gain (points)", "gain kept %"], gain).markdown())
    # MSF reconstruction ----------------------------------------------------------------------------------------------
    rows = [[f"d = {d}", r["train"], r["unseen"]] for d, r in results["msf"].items()]
    lines.append(Table("IPT multi-task subspace finding: prompts reconstructed by the auto-encoder "
                       "(test score / the prompt's own, %)", ["", "training tasks", "unseen tasks"], rows).markdown())
    rows = [[m, v] for m, v in results["udt_recon"].items()]
    lines.append(Table("UDT subspace approximation: training tasks' solutions through down- and up-projection "
                       "(test score / the solution's own, %)", ["method", "training tasks"], rows).markdown())
    # Per-task tables ----------------------------------------------------------------------------------------------
    header = ["task", "category", "subspace %", "reference %", "relative %"]
    for d, r in results["ipt"].items():
        rows, _ = relative_rows(unseen, {t: s["test"] for t, s in r["unseen"].items()}, pt)
        lines.append(Table(f"IPT d = {d}: IST on unseen tasks, against prompt tuning", header, rows).markdown())
    for key in ("same", "diff"):
        scores = {t: s["test"] for t, s in results["ipt"][d_top][key].items()}
        rows, _ = relative_rows(list(scores), scores, pt)
        lines.append(Table(f"IPT d = {d_top}: IST on training tasks ({key} data), against prompt tuning", header,
                           rows).markdown())
    for category, r in results["category"].items():
        rows, _ = relative_rows(unseen, {t: s["test"] for t, s in r.items()}, pt)
        lines.append(Table(f"IPT d = {cfg['ipt']['category_d']} found on the {category} training tasks only: IST on "
                           f"unseen tasks (category {category}: in-category; the others: out-of-category), against "
                           "prompt tuning", header, rows).markdown())
    for d, r in results["random_ae"].items():
        rows, _ = relative_rows(unseen, {t: s["test"] for t, s in r.items()}, pt)
        lines.append(Table(f"Random auto-encoder d = {d} on unseen tasks, against prompt tuning", header,
                           rows).markdown())
    for name, r in results["fastfood"].items():
        rows, _ = relative_rows(unseen, {t: s["test"] for t, s in r.items()}, pt)
        lines.append(Table(f"{name} on unseen tasks, against prompt tuning", header, rows).markdown())
    rows, _ = relative_rows(unseen, results["frozen"], pt)
    lines.append(Table("The frozen backbone on unseen tasks, against prompt tuning", header, rows).markdown())
    for m, r in results["udt"].items():
        rows, _ = relative_rows(unseen, {t: s["test"] for t, s in r.items()}, results["bank"][m])
        lines.append(Table(f"UDT subspace optimisation with {m}, against {m} in its original space", header,
                           rows).markdown())
    methods, matrix = transfer_matrix(results["transfer"], results["bank"])
    lines.append(Table("UDT transfer matrix (rows: source, columns: target; mean relative %, the diagonal is subspace "
                       "optimisation)", ["source \\ target"] + methods, matrix).markdown())
    bank_rows = [[t, CATALOG[t].category] + [_pct(results["bank"][m][t]) for m in cfg["bank"]["methods"]]
                 for t in train_tasks + unseen]
    lines.append(Table("Bank: test scores of every task and method (%)", ["task", "category"] +
                       list(cfg["bank"]["methods"]), bank_rows).markdown())
    lines.append(Table("Wall time of each stage (minutes)", ["stage", "minutes"],
                       [[k, v / 60] for k, v in stages.seconds.items()] + [["total", total / 60]]).markdown())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"report written to {path}")


if __name__ == "__main__":
    run_main(main)
