"""The commands of ``taskspace`` that move tuned results to and from other libraries: export, import-peft."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_arguments, from_args
from ..errors import ConfigError
from ..train import TrainConfig
from ..tuning import TuneConfig
from .common import add_backbone_args, add_data_args, add_eval_args, add_runs_out_args, backbone_options_from
from .common import data_dir_from, output_folder
from .tune import _pct


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_merged, export_peft

    run = Path(args.run)
    if not (run / "scores.json").is_file():
        raise ConfigError(f"RUN {run}: expected a finished run directory (one that tune or subspace-tune wrote)")
    out = output_folder(args.out, "--out")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: the folder is not empty; expected a new or empty folder")
    if args.format == "peft":
        export_peft(run, out)
        print(f"PEFT adapter written to {out} (load it with peft.PeftModel.from_pretrained(base, '{out}'); its "
              "README.md and taskspace.json say how to format inputs as the run did)")
    else:
        export_merged(run, out)
        print(f"merged model written to {out} (checked against the run; load it with from_pretrained('{out}'); its "
              "README.md and taskspace.json say how to format inputs as the run did)")
    return 0


def _same_backbone_settings(bank, root: Path) -> None:
    """An imported entry is scored as the bank's entries were: the same decode protocol and lengths."""
    from ..store import read_json

    mine = bank.backbone.describe()
    for scores in sorted(root.glob("*/*/s*/scores.json")):
        theirs = read_json(scores.parent / "config.json")["backbone"]
        for key in ("decode", "max_input_length", "max_output_length", "task_prefix"):
            if theirs.get(key) != mine.get(key):
                raise ConfigError(f"--bank {root}: its entries were scored with {key}={theirs.get(key)!r}, this "
                                  f"backbone has {mine.get(key)!r}; pass the same backbone options "
                                  f"(--decode, --backbone-opt) as the bank")
        return


def _import_into_bank(args: argparse.Namespace, folder: Path, method: str, task: str) -> int:
    """The adapter as a new entry of an existing bank, with the bank's settings, on the bank's backbone."""
    from ..backbones import load_backbone
    from ..export.imports import adapter_backbone, import_peft_run
    from ..runs import split_digests
    from ..store import read_json
    from ..subspace import Bank
    from ..subspace.bank import BANK_FILE, entry_dir

    recorded = read_json(Path(args.bank) / BANK_FILE)["backbone"]["name"]
    name = adapter_backbone(folder, args.backbone or recorded,
                            given_by="--backbone" if args.backbone else "the bank's backbone")
    bank = Bank(args.bank, load_backbone(name, **backbone_options_from(args)))
    spec = bank.spec
    if task not in spec.tasks or method not in spec.methods or args.seed not in spec.seeds:
        raise ConfigError(f"--bank {args.bank}: the bank has no ({task}, {method}, seed {args.seed}) entry; "
                          f"its tasks: {', '.join(spec.tasks)}; methods: {', '.join(spec.methods)}; seeds: "
                          f"{', '.join(map(str, spec.seeds))}")
    _same_backbone_settings(bank, Path(args.bank))
    config = spec.tune_config(task, method, args.seed, bank.backbone)
    config = config.replace(train=config.train.replace(progress=getattr(args, "progress", True)))
    run_dir = entry_dir(Path(args.bank), task, method, args.seed)
    loaded, test = spec.test_split(task)
    bank.check_data({task: split_digests(loaded, test)})  # scored on the data the other entries were made on
    scores = import_peft_run(folder, config, run_dir, backbone=bank.backbone, keep_options=True, task=loaded)
    print(f"task {config.task} | {method} imported from {folder} into the bank {args.bank} | "
          f"dev {_pct(scores['dev'])}   test {_pct(scores['test'])}")
    return 0


def cmd_import_peft(args: argparse.Namespace) -> int:
    from ..export.card import read_record, recorded_backbone_options
    from ..export.imports import adapter_backbone, adapter_method, import_peft_run
    from ..tasks import load_task_as
    from ..tuning import default_run_name

    folder = Path(args.adapter)
    if not folder.is_dir():
        raise ConfigError(f"ADAPTER {folder}: expected a PEFT adapter folder")
    method = adapter_method(folder)
    record = read_record(folder)
    task = args.task or (record["task"] if record is not None else None)
    if task is None:
        raise ConfigError("--task: name the task the adapter answers (an adapter records its task only when "
                          "taskspace exported it)")
    if args.bank:
        return _import_into_bank(args, folder, method, task)
    # a taskspace export's own settings (template, lengths, decode protocol), under those given here
    options = {**recorded_backbone_options(record), **backbone_options_from(args)}
    base = TuneConfig(task=task, method=method, data_dir=data_dir_from(args),
                      backbone=adapter_backbone(folder, args.backbone), backbone_options=options)
    config = from_args(base, args)
    out = output_folder(args.out, "--out")
    loaded = load_task_as(config)
    run_dir = out / (args.run_name or "imported-" + default_run_name(config, loaded))
    scores = import_peft_run(folder, config, run_dir, overwrite=args.overwrite, task=loaded)
    print(f"task {config.task} | {config.method} imported from {folder} | metric {scores['metric']} | run {run_dir}")
    print(f"dev {_pct(scores['dev'])}   test {_pct(scores['test'])}")
    return 0


def add_commands(sub) -> None:
    defaults = TuneConfig(task="", method="lora", data_dir="")
    x = sub.add_parser("export", help="write a finished run as a PEFT adapter or a merged model folder",
                       description="--format peft: adapter_config.json and adapter_model.safetensors that "
                                   "peft.PeftModel.from_pretrained(base, DIR) loads and that compute what taskspace "
                                   "computes: LoRA (fused projections as one block-structured LoRA), prompt tuning "
                                   "on decoder-only backbones, BitFit as BEFT. --format merged: a save_pretrained "
                                   "model folder with LoRA, BitFit or fine-tuning merged into the weights, checked "
                                   "against the run before it is kept. A subspace-tune run exports its decoded theta. "
                                   "Either folder holds a README.md model card and taskspace.json: the exact input "
                                   "format (task prefix, template), the answer format, the task, metric and scores. "
                                   "What a format cannot express is refused with the reason.")
    x.add_argument("run", help="run directory")
    x.add_argument("--format", choices=["peft", "merged"], default="peft", help="export format (default: peft)")
    x.add_argument("--out", required=True, help="output folder (new or empty)")
    x.set_defaults(func=cmd_export)

    i = sub.add_parser("import-peft", help="turn a PEFT LoRA or prompt-tuning adapter into a taskspace run",
                       description="Read a PEFT adapter folder (adapter_config.json + adapter_model.safetensors), "
                                   "express it as a taskspace theta on its base model (base_model_name_or_path, "
                                   "unless --backbone names it), score it on the task's dev and test sets and write "
                                   "a finished run directory that evaluate, predict, export and --init-from read. An "
                                   "adapter that taskspace exported brings its task, input template and backbone "
                                   "settings.")
    i.add_argument("adapter", help="PEFT adapter folder")
    i.add_argument("--task", help="the task the adapter answers (its inputs are formatted as `[task] input`, as "
                                  "taskspace trains; default: the task a taskspace export records)")
    add_backbone_args(i, default=None, shown="the adapter's base model, base_model_name_or_path in its "
                                             "adapter_config.json; another one is refused")
    add_data_args(i, TuneConfig, defaults, own_data=True)
    add_eval_args(i, TuneConfig, defaults)
    add_arguments(i, TrainConfig, only=("progress",))
    add_runs_out_args(i, "run directory name (default: imported-<the name tune would give>)")
    i.add_argument("--bank", help="write the run as this bank's (task, method, --seed) entry instead, with the bank's "
                                  "settings (the adapter must have the bank's method options)")
    i.add_argument("--seed", type=int, default=0, help="with --bank: the entry's seed (default: 0)")
    i.set_defaults(func=cmd_import_peft)
