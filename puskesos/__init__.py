"""Puskesos Sync: the `puskesos` command and the distribution version."""

__version__ = "0.1.0"
