"""What validation finds: :class:`Issue`, in two levels.

ERRORS block a save. WARNINGS are shown and must be confirmed, then saved with the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from protocol.messages import render

__all__ = ["Issue", "Level", "has_errors", "warnings_only"]

Level = Literal["error", "warning"]


@dataclasses.dataclass(frozen=True, slots=True)
class Issue:
    """One finding about one field. ``field`` is a path the UI can put the message next to
    (``"nik"``, ``"members[2].nik"``); ``code`` is a key of :data:`protocol.messages.MESSAGES`
    and ``params`` fill its template."""

    field: str
    code: str
    level: Level
    params: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @classmethod
    def error(cls, field: str, code: str, params: Mapping[str, str] | None = None) -> Issue:
        """An issue that blocks the save."""
        return cls(field, code, "error", params or {})

    @classmethod
    def warning(cls, field: str, code: str, params: Mapping[str, str] | None = None) -> Issue:
        """An issue a person must confirm before saving."""
        return cls(field, code, "warning", params or {})

    def message(self, lang: str = "id") -> str:
        """The message for a person, in Bahasa Indonesia (``"id"``) or English (``"en"``)."""
        return render(self.code, lang, **self.params)

    def as_dict(self, lang: str = "id") -> dict[str, object]:
        """A JSON-ready form for the API: field, code, level, params and message."""
        return {
            "field": self.field,
            "code": self.code,
            "level": self.level,
            "params": dict(self.params),
            "message": self.message(lang),
        }


def has_errors(issues: Iterable[Issue]) -> bool:
    """Whether any issue blocks the save."""
    return any(issue.level == "error" for issue in issues)


def warnings_only(issues: Iterable[Issue]) -> list[Issue]:
    """The warnings among the issues, in order: what a person must confirm before saving."""
    return [issue for issue in issues if issue.level == "warning"]
