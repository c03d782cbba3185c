"""The docs' examples run and type-check under `mypy --strict`, and the README shows
`docs/examples/quickstart.py` as it is, so the snippets users copy cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
EXAMPLE = EXAMPLES / "quickstart.py"
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


def run_example(path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_quickstart_runs_and_prints_the_claim_and_the_analytics() -> None:
    lines = run_example(EXAMPLE)
    assert lines[0] == "claimed sam"
    assert lines[1].startswith("EscalationStats(escalated=1, claimed=1, withdrawn=0, open=0, ")
    assert "claim_rate=1.0" in lines[1]
    assert "claims_by_member={'sam': 1}" in lines[1]
    assert len(lines) == 2


def test_the_refusals_example_shows_one_winner_and_each_refusal() -> None:
    lines = run_example(EXAMPLES / "refusals.py")
    assert len(lines) == 3
    winner = re.fullmatch(r"winner: (sam|kim) \| loser told: (sam|kim)", lines[0])
    assert winner is not None, lines[0]
    assert winner.group(1) == winner.group(2)
    assert lines[1] == "another account's senior: not_found"
    assert lines[2] == "too long: validation_error problem_summary"


def test_the_example_test_against_the_fakes_passes() -> None:
    example = EXAMPLES / "test_with_fakes.py"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(example)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_examples_type_check_strictly() -> None:
    examples = sorted(EXAMPLES.glob("*.py"))
    assert len(examples) >= 3
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *map(str, examples)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Success: no issues found in {len(examples)} source files" in done.stdout
