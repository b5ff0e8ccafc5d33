"""The installed `puskesos` command answers --version and --help."""

from __future__ import annotations

import shutil
import subprocess
import sys

from protocol.codec import WIRE_VERSION
from puskesos import __version__


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("puskesos")
    argv = [command, *args] if command else [sys.executable, "-m", "puskesos", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_version_names_the_release_and_the_wire_format():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"puskesos {__version__} (wire format v{WIRE_VERSION})"


def test_help_says_what_the_command_is():
    for args in (("--help",), ()):
        result = run(*args)
        assert result.returncode == 0
        assert "usage: puskesos" in result.stdout
        assert "district hub" in result.stdout
