"""One exception hierarchy for the protocol, each error with a machine-readable reason code.

The reason codes are the ones a hub publishes on a node's ``error`` topic when it refuses a
batch (see ``protocol/SPEC.md``, "Reason codes"); :class:`Reason` lists them all.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ClockAheadError",
    "InvalidChangeError",
    "MalformedError",
    "ProtocolError",
    "Reason",
    "TooLargeError",
    "TopicError",
    "UnsupportedVersionError",
]


class Reason(StrEnum):
    """Why a message was refused. Stable strings: they cross the wire."""

    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    INVALID_CHANGE = "invalid_change"
    CLOCK_AHEAD = "clock_ahead"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_NODE = "unknown_node"
    REVOKED_NODE = "revoked_node"
    WRONG_NODE = "wrong_node"
    WRONG_VILLAGE = "wrong_village"


class ProtocolError(Exception):
    """Base of every error the protocol raises; ``reason`` says why, ``detail`` says where."""

    reason: Reason = Reason.MALFORMED

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason.value}: {detail}")
        self.detail = detail


class MalformedError(ProtocolError):
    """The bytes are not a well-formed message of a known kind."""

    reason = Reason.MALFORMED


class UnsupportedVersionError(ProtocolError):
    """The envelope names a wire version this implementation does not speak."""

    reason = Reason.UNSUPPORTED_VERSION


class TooLargeError(ProtocolError):
    """The message, or something in it, is over a hard limit."""

    reason = Reason.TOO_LARGE


class InvalidChangeError(ProtocolError):
    """The message is well-formed but a change in it breaks the schema or the clock rules."""

    reason = Reason.INVALID_CHANGE


class ClockAheadError(ProtocolError):
    """A remote timestamp is further ahead of the local physical clock than allowed."""

    reason = Reason.CLOCK_AHEAD

    def __init__(self, detail: str, *, ahead_ms: int) -> None:
        super().__init__(detail)
        self.ahead_ms = ahead_ms


class TopicError(ProtocolError):
    """A topic string is not one of ours."""

    reason = Reason.BAD_TOPIC
