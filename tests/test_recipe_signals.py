"""The recipes' stage times under signals (recipes/recipe_common.py): a stage stopped with SIGTERM keeps the time it
ran, and a runner paused with SIGTSTP leaves the pause out of its stage's time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_recipes import ROOT


@pytest.mark.slow
def test_a_stage_stopped_by_sigterm_keeps_its_time(tmp_path):
    """The recipes' stage times are what a stage cost: a stage killed with SIGTERM (a scheduler's stop, ``kill``)
    records its time so far, and the runner exits with 128 + 15."""
    import signal
    import time

    script = tmp_path / "stage.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT / 'recipes')!r})\n"
        "from pathlib import Path\n"
        "from recipe_common import Stages, run_main\n"
        "def main():\n"
        f"    stages = Stages(Path({str(tmp_path / 'stages.json')!r}))\n"
        "    stages.run('quick', lambda: None)\n"
        "    stages.run('long', lambda: (print('started', flush=True), time.sleep(60)))\n"
        "run_main(main)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    while "started" not in proc.stdout.readline():
        pass
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 128 + signal.SIGTERM
    seconds = json.loads((tmp_path / "stages.json").read_text())
    assert set(seconds) == {"quick", "long"} and 0.5 <= seconds["long"] < 30
    assert "long: 0.0 min (interrupted)" in out


def test_a_paused_recipe_leaves_the_pause_out_of_its_stage_times(tmp_path):
    """``kill -TSTP`` pauses a runner (``kill -CONT`` resumes it), as a long run is paused while tests use the cores;
    the stage's recorded time is its own, without the pause."""
    import signal

    child = tmp_path / "child.py"
    child.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(ROOT / 'recipes')!r})\n"
        "from pathlib import Path\n"
        "from recipe_common import Stages, run_main\n"
        "def main():\n"
        "    def work():\n"
        "        print('ready', flush=True)\n"
        "        for _ in range(100):\n"
        "            time.sleep(0.01)\n"
        "    Stages(Path(sys.argv[1])).run('work', work)\n"
        "run_main(main)\n")
    proc = subprocess.Popen([sys.executable, str(child), str(tmp_path / "stages.json")], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().endswith("work ...\n") and proc.stdout.readline() == "ready\n"
    started = time.time()
    proc.send_signal(signal.SIGTSTP)
    for _ in range(200):  # until it has stopped itself
        if Path(f"/proc/{proc.pid}/stat").read_text().split(")")[1].split()[0] == "T":
            break
        time.sleep(0.01)
    else:
        raise AssertionError("SIGTSTP did not pause the runner")
    time.sleep(2.0)
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=60) == 0
    wall = time.time() - started
    stage = json.loads((tmp_path / "stages.json").read_text())["work"]
    assert wall >= 2.0 and 0.5 <= stage <= wall - 1.5, (stage, wall)  # about 1 s of work, not the 2 s paused
