"""Reading the small JSON messages boxes publish for people to read too (status, telemetry)."""

from __future__ import annotations

import json
from typing import Any

from protocol.errors import MalformedError

_MAX_INT = 2**63


def read_object(data: bytes, limit: int, what: str) -> dict[str, Any]:
    """The JSON object in ``data``; :class:`MalformedError` when larger than ``limit`` bytes,
    not JSON or not an object."""
    if len(data) > limit:
        raise MalformedError(f"{what} too large")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedError(f"{what} is not a JSON object")
    return document


def non_negative_int(document: dict[str, Any], name: str, what: str) -> int | None:
    """``document[name]`` as an int in [0, 2**63), ``None`` when missing or null."""
    value = document.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_INT:
        raise MalformedError(f"{what} {name} is not a non-negative integer")
    return value
