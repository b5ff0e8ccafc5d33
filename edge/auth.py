"""Accounts, sessions, CSRF and API tokens of the edge box.

Passwords are argon2id hashes. A session is a random token in an HttpOnly cookie; the box
stores only its SHA-256. The CSRF token of a session is an HMAC of the session's hash with
the box's secret (``session_secret_file``), so it needs no storage and dies with the
session. API tokens for automation are random, shown once, stored as SHA-256.
Five failed logins in a row lock an account for ``login_lockout_s``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from edge import db
from edge.records import AuditEntry
from edge.store import Store
from puskesos import webauth
from puskesos.webauth import (
    MIN_PASSWORD_LENGTH,
    csrf_token,
    hash_password,
    load_secret,
    valid_username,
)

__all__ = [
    "APPROVERS",
    "MIN_PASSWORD_LENGTH",
    "LoginResult",
    "Role",
    "User",
    "authenticate",
    "create_api_token",
    "create_session",
    "create_user",
    "csrf_token",
    "end_session",
    "list_api_tokens",
    "list_users",
    "load_secret",
    "revoke_api_token",
    "set_password",
    "set_user_active",
    "user_for_api_token",
    "user_for_session",
    "valid_username",
]


class Role(StrEnum):
    """Who may do what on the box."""

    OPERATOR = "operator"
    KEPALA_DESA = "kepala_desa"
    ADMIN = "admin"


#: Who may mark proposals agreed by the village deliberation or an SPTJM.
APPROVERS = frozenset({Role.KEPALA_DESA, Role.ADMIN})

ROLE_LABELS = {
    Role.OPERATOR: "Operator desa",
    Role.KEPALA_DESA: "Kepala desa / lurah",
    Role.ADMIN: "Admin",
}


@dataclass(frozen=True, slots=True)
class User:
    """A logged-in person (or the owner of an API token)."""

    id: int
    username: str
    full_name: str
    role: Role
    active: bool


@dataclass(frozen=True, slots=True)
class LoginResult:
    """``user`` on success; otherwise ``locked`` tells a locked account from a bad password."""

    user: User | None
    locked: bool = False


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    return User(row.id, row.username, row.full_name, Role(row.role), bool(row.active))


async def create_user(
    store: Store, *, username: str, full_name: str, role: Role, password: str, actor: str
) -> User:
    """Add an account; raises ``ValueError`` for a taken name or a short password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password needs at least {MIN_PASSWORD_LENGTH} characters")
    if not valid_username(username):
        raise ValueError("username: letters, digits, dot and underscore only")
    password_hash = await hash_password(password)
    now = store.now_ms()
    created: list[int] = []

    def insert(conn: sa.Connection) -> None:
        taken = conn.execute(sa.select(db.users.c.id).where(db.users.c.username == username))
        if taken.first() is not None:
            raise ValueError(f"username {username!r} is taken")
        result = conn.execute(
            db.users.insert().values(
                username=username,
                full_name=full_name,
                role=role.value,
                password_hash=password_hash,
                created_ms=now,
            )
        )
        created.append(int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0)
        conn.execute(
            db.audit.insert().values(
                at_ms=now,
                actor=actor,
                action="user_create",
                detail=json.dumps({"username": username, "role": role.value}),
            )
        )

    await store.run_write(insert)
    return User(created[0], username, full_name, role, True)


async def authenticate(store: Store, username: str, password: str, address: str) -> LoginResult:
    """Check a login; count failures and lock the account after too many."""
    now = store.now_ms()
    config = store.config
    query = sa.select(db.users).where(db.users.c.username == username)
    row = await store.read(lambda conn: conn.execute(query).first())
    if row is None or not row.active:
        await webauth.verify_nobody(password)
        detail = webauth.unknown_name(username)
        await store.audit(
            AuditEntry(webauth.UNKNOWN_ACTOR, "login_failed", detail=detail, address=address)
        )
        return LoginResult(None)
    if row.locked_until_ms > now:
        await webauth.verify_nobody(password)  # as slow as any other answer: no oracle
        await store.audit(AuditEntry(row.username, "login_locked", address=address))
        return LoginResult(None, locked=True)
    if not await webauth.verify_password(row.password_hash, password):
        user_id = row.id

        def count_failure(conn: sa.Connection) -> int:
            # In the database, not read-add-write: parallel attempts must all count.
            users = db.users
            conn.execute(
                users.update()
                .where(users.c.id == user_id)
                .values(failed_logins=users.c.failed_logins + 1)
            )
            failures: int = conn.execute(
                sa.select(users.c.failed_logins).where(users.c.id == user_id)
            ).scalar_one()
            if failures >= config.login_max_failures:
                conn.execute(
                    users.update()
                    .where(users.c.id == user_id)
                    .values(failed_logins=0, locked_until_ms=now + config.login_lockout_s * 1000)
                )
            return failures

        failures = await store.run_write(count_failure)
        await store.audit(
            AuditEntry(row.username, "login_failed", detail={"failures": failures}, address=address)
        )
        return LoginResult(None, locked=failures >= config.login_max_failures)
    reset = (
        db.users.update().where(db.users.c.id == row.id).values(failed_logins=0, locked_until_ms=0)
    )
    await store.run_write(lambda conn: conn.execute(reset))
    await store.audit(AuditEntry(row.username, "login", address=address))
    return LoginResult(_user(row))


async def create_session(store: Store, user: User, address: str) -> str:
    """A new session for ``user``; returns the cookie token."""
    token = secrets.token_urlsafe(32)
    now = store.now_ms()
    insert = db.sessions.insert().values(
        token_hash=webauth.sha256(token),
        user_id=user.id,
        created_ms=now,
        expires_ms=now + store.config.session_max_age_s * 1000,
        address=address,
        last_seen_ms=now,
    )
    await store.run_write(lambda conn: conn.execute(insert))
    return token


# Built once: these run on every request.
_USER_BY_SESSION = (
    sa.select(db.users, db.sessions.c.last_seen_ms)
    .join(db.sessions, db.sessions.c.user_id == db.users.c.id)
    .where(
        db.sessions.c.token_hash == sa.bindparam("token_hash"),
        db.sessions.c.expires_ms > sa.bindparam("now_ms"),
        db.sessions.c.last_seen_ms > sa.bindparam("idle_since"),
        db.users.c.active.is_(True),
    )
)
#: A session's idle clock is written at most this often (a write per request would cost
#: the box's single writer more than the minute of precision is worth).
_TOUCH_EVERY_MS = 60_000
_USER_BY_API_TOKEN = (
    sa.select(db.users)
    .join(db.api_tokens, db.api_tokens.c.user_id == db.users.c.id)
    .where(
        db.api_tokens.c.token_hash == sa.bindparam("token_hash"),
        db.api_tokens.c.revoked.is_(False),
        db.users.c.active.is_(True),
    )
)


async def user_for_session(store: Store, token: str) -> User | None:
    """The active user of an unexpired session used in the last ``session_idle_s``
    seconds, else ``None``; the session's idle clock restarts."""
    now = store.now_ms()
    token_hash = webauth.sha256(token)
    params = {
        "token_hash": token_hash,
        "now_ms": now,
        "idle_since": now - store.config.session_idle_s * 1000,
    }
    row = await store.read(lambda conn: conn.execute(_USER_BY_SESSION, params).first())
    if row is None:
        return None
    if now - row.last_seen_ms >= _TOUCH_EVERY_MS:
        s = db.sessions
        touch = s.update().where(s.c.token_hash == token_hash).values(last_seen_ms=now)
        await store.run_write(lambda conn: conn.execute(touch))
    return _user(row)


async def end_session(store: Store, token: str) -> None:
    """Log out: the session token stops working."""
    delete = db.sessions.delete().where(db.sessions.c.token_hash == webauth.sha256(token))
    await store.run_write(lambda conn: conn.execute(delete))


async def create_api_token(store: Store, user: User, name: str, *, actor: str = "") -> str:
    """A new API token acting as ``user``, made by ``actor`` (default: the user);
    shown once, stored hashed."""
    token = "psk_" + secrets.token_urlsafe(32)
    insert = db.api_tokens.insert().values(
        name=name, user_id=user.id, token_hash=webauth.sha256(token), created_ms=store.now_ms()
    )
    await store.run_write(lambda conn: conn.execute(insert))
    detail = {"name": name, "user": user.username}
    await store.audit(AuditEntry(actor or user.username, "token_create", detail=detail))
    return token


async def user_for_api_token(store: Store, token: str) -> User | None:
    """The active user behind a valid, unrevoked API token."""
    params = {"token_hash": webauth.sha256(token)}
    row = await store.read(lambda conn: conn.execute(_USER_BY_API_TOKEN, params).first())
    return _user(row) if row is not None else None


async def list_users(store: Store) -> list[User]:
    """Every account, by user name."""
    query = sa.select(db.users).order_by(db.users.c.username)
    rows = await store.read(lambda conn: conn.execute(query).all())
    return [_user(row) for row in rows]


async def set_user_active(store: Store, user_id: int, active: bool, *, actor: str) -> None:
    """Deactivate (or reactivate) an account; a deactivated account's sessions end."""

    def change(conn: sa.Connection) -> None:
        conn.execute(db.users.update().where(db.users.c.id == user_id).values(active=active))
        if not active:
            conn.execute(db.sessions.delete().where(db.sessions.c.user_id == user_id))

    await store.run_write(change)
    action = "user_activate" if active else "user_deactivate"
    await store.audit(AuditEntry(actor, action, detail={"user_id": user_id}))


async def set_password(store: Store, user_id: int, password: str, *, actor: str) -> None:
    """Set a new password (and unlock the account); its other sessions end."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password needs at least {MIN_PASSWORD_LENGTH} characters")
    password_hash = await hash_password(password)

    def change(conn: sa.Connection) -> None:
        conn.execute(
            db.users.update()
            .where(db.users.c.id == user_id)
            .values(password_hash=password_hash, failed_logins=0, locked_until_ms=0)
        )
        conn.execute(db.sessions.delete().where(db.sessions.c.user_id == user_id))

    await store.run_write(change)
    await store.audit(AuditEntry(actor, "password_set", detail={"user_id": user_id}))


async def list_api_tokens(store: Store) -> list[sa.Row[tuple[object, ...]]]:
    """Every API token (name, owner, created, revoked), never the token itself."""
    query = (
        sa.select(
            db.api_tokens.c.id,
            db.api_tokens.c.name,
            db.api_tokens.c.created_ms,
            db.api_tokens.c.revoked,
            db.users.c.username,
        )
        .join(db.users, db.users.c.id == db.api_tokens.c.user_id)
        .order_by(db.api_tokens.c.id)
    )
    return list(await store.read(lambda conn: conn.execute(query).all()))


async def revoke_api_token(store: Store, token_id: int, *, actor: str) -> None:
    """The token stops working at once."""
    revoke = db.api_tokens.update().where(db.api_tokens.c.id == token_id).values(revoked=True)
    await store.run_write(lambda conn: conn.execute(revoke))
    await store.audit(AuditEntry(actor, "token_revoke", detail={"token_id": token_id}))
