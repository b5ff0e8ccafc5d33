"""The hub database: tables (SQLAlchemy Core), the async engine, migrations.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is for production with
several hub workers. Both run the same Alembic revisions in ``hub/migrations``. Which rows
each table holds, and the locking rule, are in ``docs/replication.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from puskesos.durable import private_database
from puskesos.throttle import define_table

__all__ = [
    "api_tokens",
    "audit",
    "box_audit",
    "civil_rows",
    "clocks",
    "conflicts",
    "counters",
    "create_engine",
    "decisions",
    "devices",
    "down_batches",
    "is_sqlite",
    "login_throttle",
    "metadata",
    "period_villages",
    "periods",
    "records",
    "registry_imports",
    "registry_rows",
    "sessions",
    "snapshot_rows",
    "upgrade",
    "users",
    "villages",
]

metadata = sa.MetaData()

villages = sa.Table(
    "villages",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("log_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_change_ms", sa.BigInteger),
    # Anti-entropy (protocol/digest.py): the XOR of the village's record digests, and how
    # many records it has.
    sa.Column("digest", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("village", sa.Text, nullable=False),
    sa.Column("household_id", sa.Text),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("conflicts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("log_seq", sa.BigInteger, nullable=False),
    sa.Column("writers", sa.Text, nullable=False, server_default=""),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    # Review and the monthly cycle (docs/cycle.md).
    sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("approved", sa.Text),
    sa.Column("approved_seq", sa.BigInteger),
    sa.Column("first_approved_seq", sa.BigInteger),
    sa.Column("approved_status", sa.Text),
    sa.Column("nik", sa.Text),
    #: ``protocol.digest.record_digest`` of ``state``, as a signed 64-bit integer.
    sa.Column("digest", sa.BigInteger, nullable=False, server_default="0"),
    #: The shown status (``presence_status`` of a household, ``status`` of the rest) and
    #: how many ranking variables a household or member lacks: the round's progress counts
    #: them without parsing every record's JSON (hub/progress.py).
    sa.Column("status", sa.Text),
    sa.Column("lacking", sa.Integer),
    #: The ``log_seq`` of each field the downlink has no need to send again with the record
    #: (JSON, field → seq below ``log_seq``; NULL: every field belongs to ``log_seq``), see
    #: hub/downlink.py and migration 0013.
    sa.Column("field_seqs", sa.Text),
    sa.Index("ix_records_village_log", "village", "log_seq"),
    sa.Index("ix_records_pending", "pending", "village", "household_id"),
    sa.Index("ix_records_approved", "approved_seq"),
    sa.Index("ix_records_nik", "nik"),
    sa.Index("ix_records_village_entity", "village", "entity", "updated_ms"),
    sa.Index("ix_records_household", "household_id"),
)

conflicts = sa.Table(
    "conflicts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("village", sa.Text, nullable=False),
    sa.Column("field", sa.Text, nullable=False),
    sa.Column("versions", sa.Text, nullable=False),
    sa.Column("detected_ms", sa.BigInteger, nullable=False),
    sa.Column("resolved_ms", sa.BigInteger),
    sa.Column("resolved_by", sa.Text),
    sa.Column("resolution", sa.Text),
    sa.Index("ix_conflicts_open", "resolved_ms", "village"),
    sa.Index("ix_conflicts_record_field", "record_id", "field"),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("village", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="active"),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("broker_hash", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_ms", sa.BigInteger),
    sa.Column("up_watermark", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("up_above", sa.Text, nullable=False, server_default="[]"),
    sa.Column("down_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("down_cursor", sa.BigInteger, nullable=False, server_default="0"),
    #: The box is sent only the fields it lacks (its walk reached the village's head since
    #: its down stream last started from 0); false: whole records (hub/downlink.py).
    sa.Column("down_by_field", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("down_watermark", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("down_above", sa.Text, nullable=False, server_default="[]"),
    sa.Column("epoch", sa.Text),
    sa.Column("resync_until", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_seen_ms", sa.BigInteger),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reported", sa.Text),
    sa.Column("clock_offset_ms", sa.BigInteger),
    sa.Column("changes_applied", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_reject", sa.Text),
    sa.Column("telemetry", sa.Text),
    sa.Column("telemetry_ms", sa.BigInteger),
    # Anti-entropy (hub/antientropy.py): the last comparison of the box's root with the
    # village's ("match" or "diverged") and when, when the box was last told, how many
    # divergences were found and how many records were sent down to repair them.
    sa.Column("digest_state", sa.Text),
    sa.Column("digest_ms", sa.BigInteger),
    sa.Column("digest_told_ms", sa.BigInteger),
    sa.Column("divergences", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("repaired", sa.BigInteger, nullable=False, server_default="0"),
    # The box's audit chain (hub/auditchain.py): the verified head (every entry up to
    # audit_seq links to the one before, or was counted as a problem), "ok" or "broken"
    # (None: the box never sent one), problems found, and the last one (kind, seq, when).
    sa.Column("audit_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("audit_hash", sa.LargeBinary),
    sa.Column("audit_state", sa.Text),
    sa.Column("audit_breaks", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("audit_problem", sa.Text),
    sa.Column("audit_problem_seq", sa.BigInteger),
    sa.Column("audit_problem_ms", sa.BigInteger),
    sa.Index("ix_devices_village", "village"),
)

down_batches = sa.Table(
    "down_batches",
    metadata,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("changes", sa.Integer, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("sent_ms", sa.BigInteger),
)

clocks = sa.Table(
    "clocks",
    metadata,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("state", sa.BigInteger, nullable=False),
)

#: The district's registry extracts (docs/registry.md): one row per import command.
registry_imports = sa.Table(
    "registry_imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
    sa.Column("finished_ms", sa.BigInteger),
    sa.Column("files", sa.Text, nullable=False),
    sa.Column("summary", sa.Text),
)

#: The link of each record imported to its extract id, and the values last imported: a
#: re-import writes only what changed, and flags what a newer extract no longer lists.
registry_rows = sa.Table(
    "registry_rows",
    metadata,
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("registry_id", sa.Text, primary_key=True),
    sa.Column("record_id", sa.Text, nullable=False),
    sa.Column("village", sa.Text, nullable=False),
    sa.Column("imported", sa.Text, nullable=False),
    sa.Column("import_id", sa.Integer, nullable=False),
    sa.Column("missing", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_registry_rows_village", "village", "import_id"),
)

#: The civil registry's extract of the latest ``registry match-civil``, by NIK.
civil_rows = sa.Table(
    "civil_rows",
    metadata,
    sa.Column("nik", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("birth_date", sa.Text, nullable=False, server_default=""),
    sa.Column("sex", sa.Text, nullable=False, server_default=""),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    # hub/tokens.py: "read" or "write"; village codes separated by spaces ("": every one).
    sa.Column("scope", sa.Text, nullable=False, server_default="read"),
    sa.Column("villages", sa.Text, nullable=False, server_default=""),
    sa.Column("expires_ms", sa.BigInteger),
)

# --- review and the monthly cycle (docs/cycle.md) -----------------------------------------

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("household_id", sa.Text, nullable=False),
    sa.Column("village", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("decided_ms", sa.BigInteger, nullable=False),
    sa.Column("approval_seq", sa.BigInteger, nullable=False),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Index("ix_decisions_household", "household_id", "decided_ms"),
    sa.Index("ix_decisions_seq", "approval_seq"),
)

periods = sa.Table(
    "periods",
    metadata,
    sa.Column("period", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("cutoff_ms", sa.BigInteger, nullable=False),
    sa.Column("frozen_seq", sa.BigInteger),
    sa.Column("frozen_ms", sa.BigInteger),
    sa.Column("frozen_by", sa.Text),
    sa.Column("submitted_ms", sa.BigInteger),
    sa.Column("submitted_by", sa.Text),
    sa.Column("signed_ms", sa.BigInteger),
    sa.Column("signed_by", sa.Text),
    sa.Column("dataset", sa.Text),
    sa.Column("manifest_sha256", sa.Text),
    sa.Column("forward_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("forward_error", sa.Text),
    sa.Column("next_forward_ms", sa.BigInteger),
    sa.Column("forwarded_ms", sa.BigInteger),
    sa.Column("receipt", sa.Text),
    sa.Column("published_ms", sa.BigInteger),
    sa.Column("published_by", sa.Text),
    sa.Column("published_count", sa.BigInteger),
)

period_villages = sa.Table(
    "period_villages",
    metadata,
    sa.Column("period", sa.Text, primary_key=True),
    sa.Column("village", sa.Text, primary_key=True),
    sa.Column("frozen_seq", sa.BigInteger),
    sa.Column("returned_ms", sa.BigInteger),
    sa.Column("returned_by", sa.Text),
    sa.Column("return_note", sa.Text),
    sa.Column("totals", sa.Text),
)

snapshot_rows = sa.Table(
    "snapshot_rows",
    metadata,
    sa.Column("period", sa.Text, primary_key=True),
    sa.Column("record_id", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("village", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("status", sa.Text),
    sa.Index("ix_snapshot_rows_village", "period", "village"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.Text, nullable=False, unique=True),
    sa.Column("full_name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

#: Failed sign-ins per (user name, address) and per address (:mod:`puskesos.throttle`).
login_throttle = define_table(metadata)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
)

#: The hub's own trail (hub/audit.py): append-only in SQL (migration 0008) and a hash chain
#: (``seq``, ``hash``; migration 0012).
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.Index("ix_audit_at", "at_ms"),
    sa.Index("ix_audit_subject", "subject", "at_ms"),
    sa.Index("ix_audit_seq", "seq", unique=True),
)

#: The boxes' audit trails as they sent them (protocol/auditchain.py): append-only in SQL,
#: like ``audit`` (migration 0011).
box_audit = sa.Table(
    "box_audit",
    metadata,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("entity", sa.Text),
    sa.Column("record_id", sa.Text),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.Column("received_ms", sa.BigInteger, nullable=False),
)

MIGRATIONS = Path(__file__).parent / "migrations"


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names a SQLite database."""
    return url.startswith("sqlite")


def upgrade(url: str, revision: str = "head") -> None:
    """Create the database or bring it to the newest schema (safe to run every start), or
    to an older ``revision`` (tests of a migration start from the one before it). A SQLite
    database is readable by its owner only.

    Blocking; from async code run it in a thread (Alembic runs its own event loop).
    """
    if is_sqlite(url):
        private_database(Path(sa.make_url(url).database or ""))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    command.upgrade(config, revision)


#: The page cache of each SQLite connection of the hub, in KiB.
SQLITE_CACHE_KIB = 32 * 1024


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 32 MB of pages per connection (SQLite's default is 2 MB): a batch of 500 new records
    # writes into the table and six indexes, whose pages otherwise leave the cache between
    # two batches and are read back (issue 18: a third less time in SQLite per batch). The
    # cache grows only as pages are used.
    cursor.execute(f"PRAGMA cache_size={-SQLITE_CACHE_KIB}")
    cursor.close()


def create_engine(url: str, *, pool_size: int = 8) -> AsyncEngine:
    """The async engine of the hub database.

    SQLite: WAL, ``synchronous=FULL``, and every transaction ``BEGIN IMMEDIATE`` so writers
    serialize at the start instead of failing on a lock upgrade, except a :func:`reading`
    one. PostgreSQL: a pool of ``pool_size`` connections; writers serialize per village
    through row locks.
    """
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=pool_size, max_overflow=2, pool_pre_ping=True)
    engine = create_async_engine(url, connect_args={"isolation_level": None})
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "connect", _sqlite_pragmas)

    @event.listens_for(sync_engine, "begin")
    def _begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


_READ_ONLY = "puskesos_read_only"


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads that may take long (an export, a metrics scrape, a page
    that counts every record): one consistent snapshot that does not hold SQLite's write
    lock, so boxes keep syncing while it runs (WAL readers never block the writer).
    Writing through it fails on SQLite."""
    async with engine.connect() as conn:
        await conn.execution_options(**{_READ_ONLY: True})
        yield conn
