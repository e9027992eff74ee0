"""The Python snippet of the repository's README runs as written."""

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_agent_flow_runs_and_prints_what_it_says():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [snippet] = [b for b in blocks if b.startswith("import airt  # the whole agent flow")]
    assert len(snippet.strip().splitlines()) <= 15
    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["PAUSED", "COMPLETED", "True"], run.stdout
