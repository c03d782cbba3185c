"""The README's library example is `docs/examples/quickstart.py`: it runs, it type-checks under
`mypy --strict`, and the README shows it as it is, so the snippet users copy cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "quickstart.py"
README = ROOT / "README.md"


def readme_snippet() -> str:
    """The first Python block of the README's "Using it as a library" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using it as a library", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert found is not None, "the README's library section has no ```python block"
    return found.group(1)


def test_the_readme_snippet_is_the_example_file() -> None:
    assert readme_snippet() == EXAMPLE.read_text(encoding="utf-8")


def test_the_example_runs_and_prints_the_claim_and_the_analytics() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "claimed sam"
    assert lines[1].startswith("EscalationStats(escalated=1, claimed=1, withdrawn=0, open=0, ")
    assert "claim_rate=1.0" in lines[1]
    assert "claims_by_member={'sam': 1}" in lines[1]
    assert len(lines) == 2


def test_the_example_type_checks_strictly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in 1 source file" in done.stdout
