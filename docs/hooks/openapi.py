"""MkDocs hook: write `docs/openapi.json` from the app itself before every build.

The HTTP API page renders this file (neoteroi's OAD plugin), so the page always shows the API the
code serves; nothing is fetched. The file is written only when it changed, so `mkdocs serve` does
not rebuild in a loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from handoff_app.http import create_app
from handoff_app.settings import Settings

# Only signs tokens, and no token is made while building docs: any 32 bytes will do.
PLACEHOLDER_SECRET = "docs-build-placeholder-not-a-secret"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of `create_app`, as `/openapi.json` serves it."""
    return create_app(Settings(jwt_secret=PLACEHOLDER_SECRET)).openapi()


def write_openapi(target: Path) -> bool:
    """Write the document to `target` if it differs from what is there; True if written."""
    text = json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    target.write_text(text, encoding="utf-8")
    return True


def on_pre_build(config: Any) -> None:
    """MkDocs' hook: runs once before the pages are read."""
    write_openapi(Path(config["docs_dir"]) / "openapi.json")
