"""The MQTT topic tree, built and parsed in one place.

``puskesos/v1/{district}/{village}/{node}/{kind}``: ``district`` is the 4-digit regency
code, ``village`` the 10-digit village code (which starts with the district's), ``node``
the box's node id, ``kind`` one of :class:`TopicKind`. Each box may only use the topics
under its own ``.../{village}/{node}/`` prefix (enforced by the broker's ACL).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from protocol.errors import TopicError
from protocol.ids import is_node_id

__all__ = [
    "BOX_PUBLISHES",
    "BROKER_SYS_FILTER",
    "ROOT",
    "TOPIC_VERSION",
    "Topic",
    "TopicKind",
    "district_of",
    "hub_filters",
    "node_prefix",
    "parse_topic",
]

ROOT: Final = "puskesos"
#: The broker's own statistics (Mosquitto's ``$SYS`` tree), which the hub turns into metrics.
BROKER_SYS_FILTER: Final = "$SYS/broker/#"
TOPIC_VERSION: Final = "v1"


class TopicKind(StrEnum):
    """The last topic level. Who publishes: box → hub or hub → box."""

    UP = "up"  # box → hub: change batches
    ACK = "ack"  # hub → box: acks of up batches
    ERROR = "error"  # hub → box: rejections of up batches
    DOWN = "down"  # hub → box: change batches for the box
    DOWN_ACK = "down-ack"  # box → hub: acks of down batches
    TELEMETRY = "telemetry"  # box → hub: periodic health
    STATUS = "status"  # box → hub: retained online/offline (last will)


#: What a box publishes (the rest it only subscribes to).
BOX_PUBLISHES: Final = (TopicKind.UP, TopicKind.DOWN_ACK, TopicKind.TELEMETRY, TopicKind.STATUS)


def district_of(village: str) -> str:
    """The 4-digit regency (kabupaten/kota) code a 10-digit village code starts with."""
    return village[:4]


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic of a node."""

    village: str
    node: str
    kind: TopicKind

    def __post_init__(self) -> None:
        if len(self.village) != 10 or not self.village.isdigit() or not self.village.isascii():
            raise TopicError(f"village code {self.village!r} is not 10 digits")
        if not is_node_id(self.node):
            raise TopicError(f"node id {self.node!r} is not valid")

    @property
    def district(self) -> str:
        """The 4-digit regency (kabupaten/kota) code."""
        return district_of(self.village)

    def __str__(self) -> str:
        return f"{node_prefix(self.village, self.node)}/{self.kind.value}"


def node_prefix(village: str, node: str) -> str:
    """The topic prefix a node owns, without a trailing slash."""
    return f"{ROOT}/{TOPIC_VERSION}/{village[:4]}/{village}/{node}"


def parse_topic(text: str) -> Topic:
    """Parse one of our topics; raises :class:`TopicError` for anything else."""
    parts = text.split("/")
    if len(parts) != 6 or parts[0] != ROOT or parts[1] != TOPIC_VERSION:
        raise TopicError(f"not a {ROOT}/{TOPIC_VERSION} topic: {text[:120]!r}")
    _, _, district, village, node, kind = parts
    try:
        topic_kind = TopicKind(kind)
    except ValueError:
        raise TopicError(f"unknown topic kind {kind[:40]!r}") from None
    topic = Topic(village, node, topic_kind)
    if district != topic.district:
        raise TopicError(f"village {village} is not in district {district[:10]!r}")
    return topic


def hub_filters(
    kinds: tuple[TopicKind, ...] = BOX_PUBLISHES,
    *,
    district: str = "+",
    share_group: str | None = "hub",
) -> list[str]:
    """Subscription filters for the hub: what boxes publish, for one district or all.

    With ``share_group`` (MQTT 5) several hub workers split the messages between them;
    pass ``None`` for a broker without shared subscriptions (MQTT 3.1.1).
    """
    prefix = f"$share/{share_group}/" if share_group else ""
    return [f"{prefix}{ROOT}/{TOPIC_VERSION}/{district}/+/+/{kind.value}" for kind in kinds]
