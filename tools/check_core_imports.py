"""Fail if handoff_core imports anything but the standard library, attrs and itself.

import-linter's forbidden contract names the packages we know of; this check catches the ones
nobody thought to name.
"""

from __future__ import annotations

import ast
import pathlib
import sys

ALLOWED = {"attrs", "handoff_core", "__future__"}


def offending_imports(root: pathlib.Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    found.append(f"{path}:{node.lineno}: imports {name}")
    return found


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src/handoff_core")
    problems = offending_imports(root)
    for line in problems:
        print(line)
    if problems:
        print("handoff_core may import only the standard library and attrs")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
