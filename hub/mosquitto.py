"""Mosquitto's password file and ACL for the fleet, as text (no I/O here).

Every topic string comes from :mod:`protocol.topics`. A box may publish only on its own
``up``, ``down-ack``, ``telemetry`` and ``status`` and read only its own ``ack``, ``error``
and ``down``; each hub worker's account reads what every box publishes and the broker's
``$SYS`` statistics, and writes what every box reads. Mosquitto checks a shared subscription
(``$share/hub/<filter>``) against the ACL of ``<filter>`` when it delivers, so the hub's lines
need no ``$share`` form (the hub tests check this against a real broker).

What Mosquitto 2.0's ACL file cannot do: refuse a subscription. It grants every SUBSCRIBE,
wildcards and ``$share/...`` alike, and applies the read lines to each message as it delivers
it. A box subscribed to ``#`` therefore receives only its own topics; but a box that joins the
hub workers' shared group takes its turn at every box's batches, which the ACL then drops. So
the group the workers join is named with a tag only holders of the hub's password can compute
(:func:`share_group`), and the broker ties each client id to its user name
(``use_username_as_clientid``), so a box can neither take another's client id nor hold more
than one connection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence

from protocol.ids import is_node_id
from protocol.topics import BOX_PUBLISHES, BROKER_SYS_FILTER, Topic, TopicKind, hub_filters

__all__ = [
    "BOX_READS",
    "acl_text",
    "check_username",
    "mosquitto_hash",
    "passwd_text",
    "share_group",
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


def share_group(name: str, password: str | None) -> str:
    """The shared-subscription group the hub workers join: ``name``, then a tag derived from
    the hub's broker password (every worker has it, no box does).

    Mosquitto lets any account join any group, and a box in the workers' group would take
    its turn at every box's batches and lose them to the ACL: with a guessable name, one
    stolen box password starves the district. Without a password (a broker without accounts),
    ``name`` alone.
    """
    if not password:
        return name
    tag = hmac.new(password.encode(), b"puskesos hub share group", hashlib.sha256)
    return f"{name}-{tag.hexdigest()[:16]}"


def passwd_text(accounts: Iterable[tuple[str, str]]) -> str:
    """The password file: one ``username:hash`` line per (username, hash)."""
    lines = [f"{check_username(user)}:{hashed}" for user, hashed in accounts]
    return "\n".join(lines) + "\n"


def acl_text(hub_users: Sequence[str], devices: Iterable[tuple[str, str]]) -> str:
    """The ACL: one block per hub worker account, then one per (node, village) of an active
    box."""
    if not hub_users:
        raise ValueError("the hub needs at least one broker account")
    lines = [_HEADER.rstrip("\n")]
    for user in hub_users:
        lines += [
            "",
            "# A hub worker: reads what every box publishes, writes what every box reads.",
            f"user {check_username(user)}",
            *(f"topic read {f}" for f in hub_filters(BOX_PUBLISHES, share_group=None)),
            *(f"topic write {f}" for f in hub_filters(BOX_READS, share_group=None)),
            "# ... and the broker's statistics (monitoring/METRICS.md).",
            f"topic read {BROKER_SYS_FILTER}",
        ]
    for node, village in devices:
        if not is_node_id(node) or node in hub_users:
            raise ValueError(f"node id {node!r} cannot be a broker user name")
        lines += [
            "",
            f"user {node}",
            *(f"topic write {Topic(village, node, kind)}" for kind in BOX_PUBLISHES),
            *(f"topic read {Topic(village, node, kind)}" for kind in BOX_READS),
        ]
    return "\n".join(lines) + "\n"
