"""The sign-in throttle of the box and the hub: slow down a guesser, never lock an account.

An account lock after N failures let anyone on the LAN keep ``admin`` locked forever
(issue 16). Instead, failures are counted per *(user name, client address)* pair and per
*address* over all names, in the database (a restart forgets nothing), and only that pair
or that address is refused for a while:

* a pair is refused after :attr:`Policy.pair_failures` failures (5), for one minute, the
  wait doubling with every further failure up to :attr:`Policy.pair_max_s` (15 minutes);
* an address is refused after :attr:`Policy.address_failures` failures over any names
  (20), for one minute, doubling up to :attr:`Policy.address_max_s` (one hour);
* counts are forgotten :attr:`Policy.forget_s` (24 hours) after their last failure, and a
  successful sign-in forgets its pair (not its address: knowing one password must not buy
  more guesses at the others).

The same person from another address is never refused because of an attacker's failures.
Names are counted the same whether an account has them or not, and only as a SHA-256 (a
name typed wrong is often a password), so a refusal tells nothing about which names exist.
An attempt that is refused checks no password and writes nothing (an attacker cannot grow
the database with it); the failure that starts a refusal is in the audit trail.

The rule (:class:`Policy`) is pure; :class:`LoginThrottle` reads and writes its table
(:func:`define_table`) on a synchronous SQLAlchemy connection: the box's store threads, or
``AsyncConnection.run_sync`` at the hub, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["TABLE", "Failure", "LoginThrottle", "Policy", "define_table", "name_key"]

#: The table's name in both databases.
TABLE = "login_throttle"
#: ``name_hash`` of an address's count over all names.
_ANY_NAME = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """How many failures are free and how long refusals last (see the module's doc)."""

    pair_failures: int = 5
    pair_max_s: int = 15 * 60
    address_failures: int = 20
    address_max_s: int = 60 * 60
    first_wait_s: int = 60
    forget_s: int = 24 * 3600

    def wait_ms(self, failures: int, last_failure_ms: int, now_ms: int, *, pair: bool) -> int:
        """How long from ``now_ms`` a pair (or an address) with ``failures`` failures, the
        last at ``last_failure_ms``, is still refused; 0 when it may try."""
        free, longest_s = (
            (self.pair_failures, self.pair_max_s)
            if pair
            else (self.address_failures, self.address_max_s)
        )
        if failures < free or now_ms - last_failure_ms > self.forget_s * 1000:
            return 0
        wait_s = min(self.first_wait_s * 2 ** min(failures - free, 20), longest_s)
        return max(0, last_failure_ms + wait_s * 1000 - now_ms)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure just counted: the pair's count and how long the pair or address is now
    refused (0: not refused)."""

    failures: int
    refused_ms: int


def name_key(name: str) -> str:
    """What the table keeps of a user name: its SHA-256, in hex."""
    return hashlib.sha256(name.encode()).hexdigest()


def define_table(metadata: sa.MetaData) -> sa.Table:
    """The throttle's table in ``metadata`` (the box's and the hub's have the same)."""
    return sa.Table(
        TABLE,
        metadata,
        #: SHA-256 of the user name; empty for the address's count over all names.
        sa.Column("name_hash", sa.Text, primary_key=True),
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_ms", sa.BigInteger, nullable=False),
    )


class LoginThrottle:
    """The throttle's reads and writes on ``table`` under ``policy``; every method takes a
    synchronous connection first, inside the caller's transaction."""

    def __init__(self, table: sa.Table, policy: Policy) -> None:
        self.table = table
        self.policy = policy

    def _rows(
        self, conn: sa.Connection, name: str, address: str
    ) -> list[sa.Row[tuple[str, int, int]]]:
        t = self.table
        query = sa.select(t.c.name_hash, t.c.failures, t.c.last_failure_ms).where(
            t.c.address == address, t.c.name_hash.in_((name_key(name), _ANY_NAME))
        )
        return list(conn.execute(query).all())

    def _wait_ms(self, rows: list[sa.Row[tuple[str, int, int]]], now_ms: int) -> int:
        return max(
            (
                self.policy.wait_ms(failures, last, now_ms, pair=key != _ANY_NAME)
                for key, failures, last in rows
            ),
            default=0,
        )

    def refused_ms(self, conn: sa.Connection, name: str, address: str, now_ms: int) -> int:
        """How long ``name`` from ``address`` is still refused (0: check the password)."""
        return self._wait_ms(self._rows(conn, name, address), now_ms)

    def record_failure(self, conn: sa.Connection, name: str, address: str, now_ms: int) -> Failure:
        """Count a failed sign-in of ``name`` from ``address``.

        Counted in the database, not read-add-write, so parallel attempts all count; a count
        whose last failure is older than ``forget_s`` starts again from one. The pair is
        always written before the address, so two transactions never wait on each other in
        opposite orders (PostgreSQL).
        """
        t = self.table
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stale = t.c.last_failure_ms < now_ms - self.policy.forget_s * 1000
        for key in (name_key(name), _ANY_NAME):
            statement = insert(t).values(
                name_hash=key, address=address, failures=1, last_failure_ms=now_ms
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[t.c.name_hash, t.c.address],
                    set_={
                        "failures": sa.case((stale, 1), else_=t.c.failures + 1),
                        "last_failure_ms": now_ms,
                    },
                )
            )
        rows = self._rows(conn, name, address)
        pair = next(failures for key, failures, _ in rows if key != _ANY_NAME)
        return Failure(pair, self._wait_ms(rows, now_ms))

    def forget_pair(self, conn: sa.Connection, name: str, address: str, now_ms: int) -> None:
        """A successful sign-in: its pair starts again, and counts nobody added to for
        ``forget_s`` go (the table stays small without a sweeper)."""
        t = self.table
        conn.execute(
            t.delete().where(
                sa.or_(
                    sa.and_(t.c.name_hash == name_key(name), t.c.address == address),
                    t.c.last_failure_ms < now_ms - self.policy.forget_s * 1000,
                )
            )
        )

    def forget_name(self, conn: sa.Connection, name: str) -> None:
        """An administrator's unlock (a new password set): ``name`` may try again from
        every address; the addresses' own counts stay."""
        conn.execute(self.table.delete().where(self.table.c.name_hash == name_key(name)))
