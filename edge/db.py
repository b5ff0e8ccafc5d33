"""The edge database: tables (SQLAlchemy Core), the async engine, migrations.

SQLite in WAL mode with ``synchronous=FULL``: what a person saw saved is on disk, and
readers never block the writer. Schema changes go through Alembic revisions in
``edge/migrations`` because boxes in the field upgrade in place.

Every connection to the box's database is made by :func:`connect`: with the box's data key
(``docs/storage.md`` §1–2) it is SQLCipher (``sqlcipher3``) keyed with the raw 32 bytes, so
no passphrase derivation runs per connection; without one (a box of an older release, not
yet secured) it is the standard library's ``sqlite3``. The two modules' exceptions share no
class: code that catches database errors catches :data:`DATABASE_ERRORS`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlcipher3
from sqlalchemy import Engine, event

from puskesos.durable import private_database
from puskesos.throttle import define_table

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "DATABASE_ERRORS",
    "api_tokens",
    "audit",
    "connect",
    "create_engine",
    "create_thread_engine",
    "login_throttle",
    "meta",
    "metadata",
    "outbox",
    "put_meta",
    "read_meta",
    "records",
    "sessions",
    "up_batches",
    "upgrade",
    "users",
]

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
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
    sa.Column("nik", sa.Text),
    sa.Column("kk", sa.Text),
    #: The text a household search finds the record by (``puskesos.search.search_key``).
    sa.Column("search_key", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("conflicts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    #: ``protocol.digest.record_digest`` of ``state``, as a signed 64-bit integer.
    sa.Column("digest", sa.BigInteger, nullable=False, server_default="0"),
    #: How many ranking variables the record lacks (``protocol.registry.missing_fields``);
    #: NULL for entities without them. Counted as the record is written, so the round's
    #: progress needs no JSON parsing (SQLite 3.40 parses a document per json_extract).
    sa.Column("lacking", sa.Integer),
    sa.Index("ix_records_entity_updated", "entity", "updated_ms"),
    sa.Index("ix_records_household", "household_id", "entity"),
    sa.Index("ix_records_nik", "nik"),
    sa.Index("ix_records_kk", "kk"),
    sa.Index("ix_records_search", "entity", "search_key", "household_id"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("change", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

#: Up batches, encoded once when sealed (edge.outbox) and kept until the hub acks them: a
#: resend publishes these bytes, so one ``seq`` always carries the same content.
up_batches = sa.Table(
    "up_batches",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("changes", sa.Integer, nullable=False),
    sa.Column("oldest_ms", sa.BigInteger, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("sent_ms", sa.BigInteger),
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
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    #: The session's last request (touched at most once a minute): idle ones end.
    sa.Column("last_seen_ms", sa.BigInteger, nullable=False, server_default="0"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("entity", sa.Text),
    sa.Column("record_id", sa.Text),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    # The row's place in the box's hash chain (protocol/auditchain.py, edge/auditchain.py).
    sa.Column("seq", sa.BigInteger),
    sa.Column("hash", sa.LargeBinary),
    sa.Index("ix_audit_record", "record_id"),
    sa.Index("ix_audit_at", "at_ms"),
    sa.Index("ix_audit_action", "action"),
    sa.Index("ix_audit_seq", "seq", unique=True),
)

_PUT_META = sa.text(
    "INSERT INTO meta(key, value) VALUES (:k, :v) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)


def read_meta(conn: sa.Connection, key: str) -> str | None:
    """A value of the ``meta`` table, inside the caller's transaction."""
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()


def put_meta(conn: sa.Connection, key: str, value: str) -> None:
    """Set a value of the ``meta`` table, inside the caller's transaction."""
    conn.execute(_PUT_META, {"k": key, "v": value})


#: What a failed database call raises, plain or encrypted.
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, sqlcipher3.Error)


def driver(key: bytes | None) -> ModuleType:
    """The DB-API module of a database with data key ``key`` (``None``: plain SQLite)."""
    return sqlite3 if key is None else sqlcipher3


def connect(path: Path | str, key: bytes | None, **options: Any) -> Any:
    """A DB-API connection to the database file ``path`` (``options`` go to ``connect``),
    keyed with the raw data key before anything else reads the file."""
    connection = driver(key).connect(str(path), **options)
    if key is not None:
        connection.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return connection


MIGRATIONS = Path(__file__).parent / "migrations"

#: The newest revision in ``MIGRATIONS`` (a test holds it to Alembic's head), so a start
#: at head needs neither Alembic nor Mako in memory (about 11 MB).
HEAD_REVISION = "0013"


def _alembic_config(database_path: Path, key: bytes | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_path"] = database_path
    config.attributes["key"] = key
    return config


def _revision(database_path: Path, key: bytes | None = None) -> str | None:
    """The schema revision of the database (``None``: none yet, or unreadable)."""
    connection = connect(database_path, key)
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except DATABASE_ERRORS:
        return None
    finally:
        connection.close()
    return row[0] if row else None


def upgrade(database_path: Path, key: bytes | None = None) -> None:
    """Create the database or bring it to the newest schema (safe to run every start),
    readable by its owner only; encrypted with ``key`` when one is given."""
    private_database(database_path)
    if _revision(database_path, key) == HEAD_REVISION:
        return
    from alembic import command

    command.upgrade(_alembic_config(database_path, key), "head")


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun explicitly (see _begin), not by the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _install(engine: Engine, begin: str, pragmas: tuple[str, ...] = ()) -> None:
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    def _connect(dbapi_connection: Any, record: Any) -> None:
        _on_connect(dbapi_connection, record)
        for pragma in pragmas:
            dbapi_connection.execute(pragma)

    event.listen(engine, "connect", _connect)
    event.listen(engine, "begin", _begin)


#: Reader threads (and connections) of a store.
READER_THREADS = 4
#: Page cache of each reader connection, KiB (SQLite's default: 2,000). The village pages
#: read every household once, so a large cache only keeps pages no other read asks for
#: again; with SQLCipher the cache holds decrypted pages, per connection too. Four readers
#: at the default held 8 MB more after the pages of a 5,000-household village
#: (``bench/edge.py --pages-rounds``).
READER_CACHE_KIB = 512


def create_engine(path: Path, key: bytes | None, **options: Any) -> Engine:
    """A synchronous SQLAlchemy engine on the database ``path`` whose connections come from
    :func:`connect` (``options`` go to ``sqlalchemy.create_engine``)."""
    # The URL names the file only so SQLAlchemy pools connections as for a file.
    return sa.create_engine(
        f"sqlite:///{path}",
        module=driver(key),
        creator=lambda: connect(path, key, check_same_thread=False),
        **options,
    )


def create_thread_engine(path: Path, *, writer: bool, key: bytes | None = None) -> Engine:
    """A synchronous engine for the store's worker threads.

    The *writer* has one connection whose transactions start with ``BEGIN IMMEDIATE``: a
    whole group commit runs on its thread in one call. *Readers* have one connection per
    reader thread with deferred transactions, which in WAL mode never wait for the writer.
    """
    engine = create_engine(path, key, pool_size=1 if writer else READER_THREADS, max_overflow=0)
    if writer:
        _install(engine, "BEGIN IMMEDIATE")
    else:
        _install(engine, "BEGIN", (f"PRAGMA cache_size=-{READER_CACHE_KIB}",))
    return engine
