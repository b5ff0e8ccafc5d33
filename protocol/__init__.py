"""The shared language of Puskesos Sync: pure rules, no I/O.

Identifiers (:mod:`protocol.ids`), the hybrid logical clock (:mod:`protocol.clock`), the
change model (:mod:`protocol.changes`), field-level merge with conflict detection
(:mod:`protocol.merge`), the wire codec (:mod:`protocol.codec`), MQTT topics
(:mod:`protocol.topics`), entity schemas (:mod:`protocol.entities`), validation of
Indonesian identifiers and records (:mod:`protocol.validate`) and region codes
(:mod:`protocol.regions`). The wire format and merge rules are specified in ``SPEC.md``.

Nothing here imports asyncio, a database driver, an HTTP or an MQTT library; clocks take
the wall-clock reading as an argument. A test enforces it.
"""

from __future__ import annotations

from protocol.changes import Ack, Batch, Change, Direction, FieldVersion, Reject
from protocol.clock import HybridClock, Timestamp
from protocol.codec import WIRE_VERSION, Limits, decode, encode
from protocol.entities import ENTITIES
from protocol.errors import ProtocolError, Reason
from protocol.ids import is_node_id, uuid7
from protocol.issues import Issue, has_errors
from protocol.merge import Conflict, MergeResult, local_change, merge, values
from protocol.topics import Topic, TopicKind, parse_topic

__all__ = [
    "ENTITIES",
    "WIRE_VERSION",
    "Ack",
    "Batch",
    "Change",
    "Conflict",
    "Direction",
    "FieldVersion",
    "HybridClock",
    "Issue",
    "Limits",
    "MergeResult",
    "ProtocolError",
    "Reason",
    "Reject",
    "Timestamp",
    "Topic",
    "TopicKind",
    "decode",
    "encode",
    "has_errors",
    "is_node_id",
    "local_change",
    "merge",
    "parse_topic",
    "uuid7",
    "values",
]
