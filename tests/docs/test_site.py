"""The docs site builds strictly, has its pages, loads nothing from the internet, and a broken
reference fails the build (what `nox -s docs` and CI rely on)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of `project` into `site`, the way `nox -s docs` runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=project,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


def copy_project(target: Path) -> Path:
    """The docs sources in a folder of their own (the code linked in), to break one safely."""
    target.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", target / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", target / "docs", ignore=shutil.ignore_patterns("openapi.json"))
    (target / "src").symlink_to(ROOT / "src", target_is_directory=True)
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("docs")
    out = work / "site"
    done = build(copy_project(work / "project"), out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


class Loads(HTMLParser):
    """What a page makes the browser fetch by itself: scripts, stylesheets, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "video", "audio") and found.get("src"):
            self.fetched.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            rel = (found.get("rel") or "").lower()
            if any(word in rel for word in ("stylesheet", "preload", "preconnect", "icon")):
                self.fetched.append(found["href"] or "")


def text_of(page: Path) -> str:
    """A page's words, tags dropped and spaces collapsed (as a reader sees them)."""
    text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
    return " ".join(text.split())


def external(url: str) -> bool:
    return bool(re.match(r"^(https?:)?//", url))


def test_every_page_is_built(site: Path) -> None:
    pages = [
        "index.html",
        "library.html",
        "service.html",
        "operate.html",
        "http-api.html",
        "stream.html",
        "benchmarks.html",
        "reference/core.html",
        "reference/memory.html",
        "reference/sql.html",
        "reference/mail.html",
        "reference/push.html",
        "reference/app.html",
    ]
    missing = [page for page in pages if not (site / page).is_file()]
    assert not missing


def test_the_http_api_page_lists_the_operations_of_the_openapi_document(site: Path) -> None:
    page = text_of(site / "http-api.html")
    for operation in (
        "POST /api/v1/handoffs/{handoff_id}/claim",
        "GET /api/v1/escalations/stream",
        "PUT /api/v1/members/{member_id}",
        "GET /readyz",
    ):
        assert operation in page, operation
    assert (site / "openapi.json").is_file()


def test_the_reference_renders_each_package_from_its_docstrings(site: Path) -> None:
    core = (site / "reference/core.html").read_text(encoding="utf-8")
    assert 'id="handoff_core.HandoffService.claim"' in core
    assert "Somebody else won the claim" in core  # AlreadyClaimed's docstring
    memory = (site / "reference/memory.html").read_text(encoding="utf-8")
    assert 'id="handoff_memory.RecordingMailSender.send"' in memory
    library = (site / "library.html").read_text(encoding="utf-8")
    assert "RecordingMailSender" in library and "quickstart.py" in library


def test_no_page_loads_anything_from_the_internet(site: Path) -> None:
    loaded: dict[str, list[str]] = {}
    for page in sorted(site.rglob("*.html")):
        parser = Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        outside = [url for url in parser.fetched if external(url)]
        if outside:
            loaded[str(page.relative_to(site))] = outside
    assert not loaded
    styles = "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.css"))
    assert "fonts.googleapis.com" not in styles and "@import url(http" not in styles


def test_a_broken_reference_fails_the_build(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    page = project / "docs" / "library.md"
    page.write_text(
        page.read_text(encoding="utf-8") + "\nSee [the gone one][handoff_core.NoSuchThing].\n",
        encoding="utf-8",
    )
    done = build(project, tmp_path / "site")
    assert done.returncode != 0
    assert "handoff_core.NoSuchThing" in done.stdout + done.stderr
