"""The service: settings, composition root, HTTP API, delivery worker and CLI.

    from handoff_app import Settings, create_app
    app = create_app(Settings.from_env())      # or mount it in your own FastAPI app

The names below are loaded on first use, so `import handoff_app` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handoff_app.container import Services, build_services
    from handoff_app.http import create_app, handoff_lifespan, mint_token
    from handoff_app.settings import Settings, SettingsError

_WHERE = {
    "Services": "handoff_app.container",
    "build_services": "handoff_app.container",
    "create_app": "handoff_app.http",
    "handoff_lifespan": "handoff_app.http",
    "mint_token": "handoff_app.http",
    "Settings": "handoff_app.settings",
    "SettingsError": "handoff_app.settings",
}

__all__ = [
    "Services",
    "Settings",
    "SettingsError",
    "build_services",
    "create_app",
    "handoff_lifespan",
    "mint_token",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'handoff_app' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
