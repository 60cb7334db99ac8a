"""The README's commands are the ones CI runs, and its Python examples run as written."""

from __future__ import annotations

import json
import re

from conftest import REPO


def _block_after(marker: str, text: str, language: str = "bash") -> str:
    match = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)\n```", text, re.S)
    assert match, f"README has no {language} block after <!-- {marker} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_setup_and_test_commands():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _block_after("setup", readme) in ci
    assert _block_after("test", readme) in ci
    assert _block_after("main", readme).startswith("taskspace tune ")


def test_python_example_runs(shared_dir):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(.*?)\n```", readme, re.S).group(1)
    code = code.replace('"../shared/data/crossfit"', repr(str(shared_dir / "data" / "crossfit")))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["loss"].ndim == 0 and len(namespace["predictions"]) == 8
    assert set(namespace["predictions"]) <= {"negative", "positive"}


def test_the_python_section_runs_as_written(shared_dir, tmp_path, monkeypatch):
    """The "Python" section, run from a fresh folder beside which the shared folder is where it is here: a LoRA run
    on the 260K Llama answering new inputs, and a BitFit run on that model wrapped in memory."""
    code = _block_after("python", (REPO / "README.md").read_text(), "python")
    code = code.replace('"../shared/', f'"{shared_dir}/')
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (Python)", "exec"), namespace)
    assert (tmp_path / "runs" / "python-lora" / "scores.json").is_file()
    answers = namespace["answers"]
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    recorded = json.loads((tmp_path / "runs" / "python-mine" / "config.json").read_text())
    assert recorded["run"]["backbone"] == recorded["backbone"]["name"] == "my-stories"
    assert recorded["backbone"]["fingerprint"] == namespace["backbone"].fingerprint()
