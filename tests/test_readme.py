"""The README's commands are the ones CI runs, and its Python example runs as written."""

from __future__ import annotations

import re

from conftest import REPO


def _block_after(marker: str, text: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)\n```", text, re.S)
    assert match, f"README has no bash block after <!-- {marker} -->"
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
