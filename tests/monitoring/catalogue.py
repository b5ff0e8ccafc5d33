"""The metric catalogue of ``monitoring/METRICS.md``, read from its tables.

One place lists every metric (the doc an operator reads); the tests compare it with what
the processes really expose, and check that rules and dashboards use only metrics in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRICS_DOC = ROOT / "monitoring" / "METRICS.md"
#: The heading of the section of metrics that a later issue provides.
PENDING_HEADING = "### Provided with the monthly cycle"

_ROW = re.compile(r"^\| `(?P<name>[a-z_]+)`[^|]*\| (?P<kind>[^|]*?) *\|(?P<third>[^|]*)\|")
_LABEL = re.compile(r"`([a-z_]+)`")


@dataclass(frozen=True, slots=True)
class Entry:
    """One metric of the catalogue."""

    name: str
    #: The second column: ``counter``, ``gauge``, ``histogram``, ``standard``, or a ``$SYS``
    #: topic for the broker's gauges and counters.
    kind: str
    #: Label names (the backticked names of the third column; none for the broker's).
    labels: frozenset[str]
    section: str
    pending: bool


def entries() -> dict[str, Entry]:
    """Every metric named in the first column of a table of the catalogue."""
    found: dict[str, Entry] = {}
    text = METRICS_DOC.read_text(encoding="utf-8")
    section = ""
    for line in text[text.index("## The catalogue") :].splitlines():
        if line.startswith("#"):
            section = line
        elif match := _ROW.match(line):
            name, kind = match["name"], match["kind"]
            labels = frozenset(_LABEL.findall(match["third"]))
            found[name] = Entry(name, kind, labels, section, section.startswith(PENDING_HEADING))
    return found
