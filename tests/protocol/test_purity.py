"""protocol/ is pure: no I/O frameworks, so every rule runs anywhere and in microseconds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import protocol

FORBIDDEN = {
    "asyncio",
    "aiohttp",
    "aiosqlite",
    "sqlite3",
    "sqlalchemy",
    "paho",
    "socket",
    "threading",
    "subprocess",
    "edge",
    "hub",
}
PACKAGE = Path(protocol.__file__).parent


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_protocol_module_imports_io_frameworks():
    offenders = {
        path.name: sorted(imported_roots(path) & FORBIDDEN)
        for path in PACKAGE.glob("*.py")
        if imported_roots(path) & FORBIDDEN
    }
    assert offenders == {}


def test_importing_protocol_loads_no_io_framework_transitively():
    code = (
        "import sys, protocol, protocol.codec, protocol.validate, protocol.topics;"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(out) & (FORBIDDEN - {"threading"}) == set()
