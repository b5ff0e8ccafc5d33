"""Mosquitto's password file and ACL for the fleet, as text (no I/O here).

Every topic string comes from :mod:`protocol.topics`. A box may publish only on its own
``up``, ``down-ack``, ``telemetry`` and ``status`` and read only its own ``ack``, ``error``
and ``down``; the hub account reads what every box publishes and the broker's ``$SYS``
statistics, and writes what every box reads. Mosquitto checks a shared subscription
(``$share/hub/<filter>``) against the ACL of ``<filter>`` when it delivers, so the hub's lines
need no ``$share`` form (the hub tests check this against a real broker).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from protocol.ids import is_node_id
from protocol.topics import BOX_PUBLISHES, BROKER_SYS_FILTER, Topic, TopicKind, hub_filters

__all__ = [
    "BOX_READS",
    "acl_text",
    "check_username",
    "mosquitto_hash",
    "passwd_text",
    "verify_mosquitto_hash",
]

#: What a box subscribes to (the hub publishes these).
BOX_READS = (TopicKind.ACK, TopicKind.ERROR, TopicKind.DOWN)

#: Mosquitto 2's default PBKDF2 rounds. Enough here: every broker password is a random
#: 24-byte token, so the file is not open to guessing, and the broker pays this per connect.
_ITERATIONS = 101
_SALT_BYTES = 12
_HEADER = "# Written by `puskesos hub broker-config` from the device registry; do not edit.\n"


def check_username(username: str) -> str:
    """``username`` if it can stand in both files (no blanks, no ``:``, not empty)."""
    if not username or any(c.isspace() or c == ":" for c in username) or not username.isprintable():
        raise ValueError(f"broker user name {username!r} cannot be used")
    return username


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    """The password-file hash Mosquitto 2 expects: ``$7$101$<salt>$<PBKDF2-SHA512>``."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return f"$7${_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(password: str, hashed: str) -> bool:
    """Whether ``hashed`` (a ``$7$`` line part, any rounds) is the hash of ``password``."""
    try:
        _, kind, rounds, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt, validate=True), int(rounds)
        )
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def passwd_text(accounts: Iterable[tuple[str, str]]) -> str:
    """The password file: one ``username:hash`` line per (username, hash)."""
    lines = [f"{check_username(user)}:{hashed}" for user, hashed in accounts]
    return "\n".join(lines) + "\n"


def acl_text(hub_username: str, devices: Iterable[tuple[str, str]]) -> str:
    """The ACL: the hub account, then one block per (node, village) of an active box."""
    lines = [
        _HEADER.rstrip("\n"),
        "",
        "# The hub workers: read what every box publishes, write what every box reads.",
        f"user {check_username(hub_username)}",
        *(f"topic read {f}" for f in hub_filters(BOX_PUBLISHES, share_group=None)),
        *(f"topic write {f}" for f in hub_filters(BOX_READS, share_group=None)),
        "# ... and the broker's statistics (monitoring/METRICS.md).",
        f"topic read {BROKER_SYS_FILTER}",
    ]
    for node, village in devices:
        if not is_node_id(node) or node == hub_username:
            raise ValueError(f"node id {node!r} cannot be a broker user name")
        lines += [
            "",
            f"user {node}",
            *(f"topic write {Topic(village, node, kind)}" for kind in BOX_PUBLISHES),
            *(f"topic read {Topic(village, node, kind)}" for kind in BOX_READS),
        ]
    return "\n".join(lines) + "\n"
