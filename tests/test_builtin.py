"""Built-in subspaces (``builtin:NAME``): listed by `taskspace subspaces`, loaded wherever a subspace folder is,
refused on another backbone or template, tuned through and exported like any subspace; and every one that ships
stays within the size limit and is package data."""

from __future__ import annotations

import json
from fnmatch import fnmatch

import pytest
import torch

from conftest import REPO
from taskspace.backbones import load_backbone
from taskspace.builtin import CARD, MAX_BYTES, ROOT_ENV, builtin_names, builtin_root, folder_bytes, subspace_folder
from taskspace.cli import main
from taskspace.errors import ConfigError, IncompatibleError
from taskspace.store import load_delta
from taskspace.subspace import FitData, RandomAEConfig, Subspace, build_finder
from tiny import tiny_backbone

NAME = "tiny-prompt"
SUMMARY = "A prompt subspace of the 260K-parameter Llama, for tests."


@pytest.fixture(scope="module")
def llama_dir(shared_dir):
    return f"{shared_dir}/models/stories260K"


@pytest.fixture(scope="module")
def llama(llama_dir):
    return load_backbone(llama_dir)


@pytest.fixture
def root(tmp_path, monkeypatch, llama):
    """A builtin root holding one tiny prompt subspace (d = 3) with its card."""
    root = tmp_path / "builtin"
    space = build_finder("random-ae", RandomAEConfig(method="prompt", d=3, hidden=4, seed=5)).fit(
        FitData(llama, [], method_options={"prompt": {"n_tokens": 2}}))
    space.save(root / NAME)
    (root / NAME / CARD).write_text(f"# {SUMMARY}\n\nBackbone {llama.fingerprint()}, template {llama.template}.\n")
    monkeypatch.setenv(ROOT_ENV, str(root))
    return root


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_the_listing_shows_each_builtin_and_says_when_there_is_none(root, llama, tmp_path, monkeypatch, capsys):
    assert builtin_root() == root and builtin_names() == [NAME]
    assert main(["subspaces"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "backbone", "template", "recipe", "d", "methods", "size"]
    row = out[1]
    assert row.startswith(f"builtin:{NAME} ") and row.endswith(SUMMARY)
    assert row.split()[1:6] == [llama.name, llama.template, "random-ae", "3", "prompt"]
    assert f"{folder_bytes(root / NAME) / 1e3:.0f} KB" in row
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "empty"))
    assert main(["subspaces"]) == 0
    assert "No built-in subspaces are installed yet" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=f"builtin:{NAME}: no built-in subspaces are installed yet"):
        subspace_folder(f"builtin:{NAME}")


def test_a_builtin_loads_by_name_and_refuses_another_backbone_or_template(root, llama, llama_dir, shared_dir):
    space = Subspace.load(f"builtin:{NAME}", llama)
    folder = Subspace.load(root / NAME, llama)
    z = torch.randn(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(space.theta("prompt", z), folder.theta("prompt", z))
    with pytest.raises(IncompatibleError, match=f"^builtin:{NAME}: the subspace was fitted on backbone"):
        Subspace.load(f"builtin:{NAME}", tiny_backbone("gpt2", str(shared_dir)))
    with pytest.raises(IncompatibleError, match=f"^builtin:{NAME}: .* with the boundary input template; this "
                                                "backbone uses plain"):
        Subspace.load(f"builtin:{NAME}", load_backbone(llama_dir, template="plain"))
    with pytest.raises(ConfigError, match=f"builtin:tiny-promt: no such built-in subspace; did you mean "
                                          f"builtin:{NAME}\\?"):
        Subspace.load("builtin:tiny-promt", llama)
    with pytest.raises(ConfigError, match=f"builtin:other: no such built-in subspace; the built-ins are "
                                          f"builtin:{NAME}"):
        subspace_folder("builtin:other")


def test_subspace_tune_in_a_builtin_and_export_a_prompt_adapter(root, llama, data_dir, tmp_path, capsys):
    common = ["--task", "glue-sst2", "--method", "prompt", "--data-dir", str(data_dir), "--steps", "2",
              "--eval-every", "2", "--max-test-examples", "4", "--no-progress"]
    for argv, expected in ((["--subspace", "builtin:tiny-promt"], "did you mean builtin:tiny-prompt?"),
                           (["--subspace", f"builtin:{NAME}", "--backbone-opt", "template=plain"],
                            "boundary input template; this backbone uses plain")):
        assert main(["subspace-tune", *argv, *common, "--out", str(tmp_path / "refused")]) == 2
        assert expected in _one_line(capsys)
        assert not (tmp_path / "refused").exists()
    run = tmp_path / "ist"
    assert main(["subspace-tune", "--subspace", f"builtin:{NAME}", *common, "--out", str(run)]) == 0
    record = json.loads((run / "config.json").read_text())["subspace"]
    assert record["path"] == f"builtin:{NAME}" and record["recipe"] == "random-ae"
    # the run resumes as finished from the same command (its record names the built-in, not a folder)
    assert main(["subspace-tune", "--subspace", f"builtin:{NAME}", *common, "--out", str(run)]) == 0
    capsys.readouterr()
    # a run that stops early with dev never above its start says how to train on
    stuck = tmp_path / "stuck"
    assert main(["subspace-tune", "--subspace", f"builtin:{NAME}", *common, "--steps", "6", "--eval-every", "1",
                 "--patience", "1", "--out", str(stuck)]) == 0
    scores = json.loads((stuck / "scores.json").read_text())
    assert scores["stopped_early"] and scores["dev"] == scores["zero_shot"]["init"]["dev"] == 0
    assert f"note: stopped early at step {scores['steps']} with dev never above its start" in capsys.readouterr().out
    assert main(["export", str(run), "--out", str(tmp_path / "peft")]) == 0
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 2
    from safetensors.torch import load_file

    space = Subspace.load(f"builtin:{NAME}", llama)
    theta = load_delta(run / "theta", space["prompt"].method)[0]
    exported = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))["prompt_embeddings"]
    torch.testing.assert_close(exported, space["prompt"].method.layout.view(theta, "prompt"))


def test_the_method_is_the_subspaces_only_one_unless_given():
    from taskspace.cli import build_parser
    from taskspace.cli.subspace import subspace_tune_config_from

    args = build_parser().parse_args(["subspace-tune", "--subspace", "s", "--task", "trec", "--data-dir", "d",
                                      "--out", "o"])
    assert subspace_tune_config_from(args, {"methods": {"lora": {}}}).method == "lora"
    with pytest.raises(ConfigError, match=r"^--method: expected one of the subspace's methods \(adapter, lora\)$"):
        subspace_tune_config_from(args, {"methods": {"adapter": {}, "lora": {}}})
    args.method = "adapter"
    assert subspace_tune_config_from(args, {"methods": {"adapter": {}, "lora": {}}}).method == "adapter"
    recorded = {"methods": {"lora": {}}, "subspace_tune": {"z_std": 0.5, "train": {"lr": 0.3, "steps": 7}}}
    config = subspace_tune_config_from(args, recorded)  # the subspace's training, under the options given
    assert (config.z_std, config.train.lr, config.train.steps) == (0.5, 0.3, 7)
    args.lr = 0.1
    assert subspace_tune_config_from(args, recorded).train.lr == 0.1


def test_every_shipped_builtin_is_small_complete_and_package_data(monkeypatch):
    """Over the built-ins this package holds (none yet is fine): each within the size limit, with its card, whose
    first line says what it is and whose text names the backbone's fingerprint and template; and every file a
    built-in consists of matches pyproject.toml's package data, so that the wheel carries it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    monkeypatch.delenv(ROOT_ENV, raising=False)
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["taskspace"]
    for file in ("subspace.json", "subspace.safetensors", CARD):
        assert any(fnmatch(f"builtin/some-name/{file}", p) for p in patterns), file
    for name in builtin_names():
        folder = builtin_root() / name
        assert folder_bytes(folder) <= MAX_BYTES, name
        assert {p.name for p in folder.iterdir() if p.is_file()} == {"subspace.json", "subspace.safetensors", CARD}
        card = (folder / CARD).read_text(encoding="utf-8")
        backbone = json.loads((folder / "subspace.json").read_text())["backbone"]
        assert card.splitlines()[0].strip("# ").strip(), name
        assert backbone["fingerprint"] in card and backbone["template"] in card, name
