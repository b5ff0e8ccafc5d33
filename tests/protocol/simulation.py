"""A small world of nodes that edit records and exchange versions, for merge property tests.

Each node keeps its own replica and HLC; it writes with :func:`protocol.merge.local_change`
(so its writes carry what it had seen) and receives other nodes' versions in whatever
subset and order the test draws. Beside the protocol's view, the world keeps the *true*
causal past of every version as explicit sets, so tests can compare what the merge
reports with the ground truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from protocol.changes import Change, FieldVersion
from protocol.clock import HybridClock, Timestamp
from protocol.merge import Frontier, local_change, merge

VILLAGE = "3201012001"
RECORDS = (
    "0190a000-0000-7000-8000-000000000001",
    "0190a000-0000-7000-8000-000000000002",
)
FIELDS = ("name", "address", "rt")

VersionKey = tuple[str, str, int, str]  # record, field, time, node


@dataclass
class Node:
    name: str
    clock: HybridClock
    wall_ms: int
    replica: dict[str, dict[str, Frontier]] = field(default_factory=dict)
    # Every version this node holds (its own and received), by key.
    known: set[VersionKey] = field(default_factory=set)


@dataclass
class World:
    nodes: list[Node]
    changes: list[Change] = field(default_factory=list)
    versions: dict[VersionKey, FieldVersion] = field(default_factory=dict)
    past: dict[VersionKey, frozenset[VersionKey]] = field(default_factory=dict)

    @classmethod
    def start(cls, count: int, offsets_ms: Sequence[int]) -> World:
        nodes = [
            Node(f"node-{index}", HybridClock(f"node-{index}"), 1_700_000_000_000 + offset)
            for index, offset in zip(range(count), offsets_ms, strict=True)
        ]
        return cls(nodes)

    def write(self, writer: int, record: int, values: dict[str, str], tick_ms: int) -> None:
        node = self.nodes[writer]
        node.wall_ms += tick_ms
        record_id = RECORDS[record]
        state = node.replica.get(record_id)
        change = local_change(
            state,
            entity="household",
            record_id=record_id,
            village=VILLAGE,
            stamp=node.clock.now(node.wall_ms),
            new_values=values,
        )
        if change is None:
            return
        for name, version in change.fields.items():
            key = (record_id, name, version.time, version.node)
            # Truly seen: every version of this field the writer holds, and their pasts.
            held = {k for k in node.known if k[0] == record_id and k[1] == name}
            self.past[key] = frozenset(held.union(*(self.past[k] for k in held)))
            self.versions[key] = version
        self.changes.append(change)
        self._receive(node, [change])

    def gossip(self, sender: int, receiver: int, picks: Iterable[int]) -> None:
        """``receiver`` gets some of the versions ``sender`` holds (chosen by ``picks``)."""
        if sender == receiver:
            return
        held = sorted(self.nodes[sender].known)
        if not held:
            return
        chosen = {held[pick % len(held)] for pick in picks}
        changes = [
            Change("household", key[0], VILLAGE, key[3], {key[1]: self.versions[key]})
            for key in sorted(chosen)
        ]
        self._receive(self.nodes[receiver], changes)

    def _receive(self, node: Node, changes: list[Change]) -> None:
        for change in changes:
            for version in change.fields.values():
                node.clock.observe(Timestamp(version.time, version.node), node.wall_ms)
            result = merge(node.replica.get(change.record_id), change)
            node.replica[change.record_id] = result.state
            for name, version in change.fields.items():
                node.known.add((change.record_id, name, version.time, version.node))

    def concurrent(self, a: VersionKey, b: VersionKey) -> bool:
        return a != b and a not in self.past[b] and b not in self.past[a]

    def true_frontier(self, record_id: str, name: str) -> set[VersionKey]:
        """Versions of a field that no other version has in its causal past."""
        keys = [k for k in self.versions if k[0] == record_id and k[1] == name]
        return {k for k in keys if not any(k in self.past[other] for other in keys)}
