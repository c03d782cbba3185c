"""Ports on 127.0.0.1 for the servers the tests start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (bound, then let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there now."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
