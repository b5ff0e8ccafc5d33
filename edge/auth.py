"""Accounts, sessions, CSRF and API tokens of the edge box.

Passwords are argon2id hashes. A session is a random token in an HttpOnly cookie; the box
stores only its SHA-256. The CSRF token of a session is an HMAC of the session's hash with
the box's secret (``session_secret_file``), so it needs no storage and dies with the
session. API tokens for automation are random, shown once, stored as SHA-256.
Failed logins slow down the (user name, address) pair and the address that made them, never
the account (:mod:`puskesos.throttle`, ``login_max_failures`` and ``login_lockout_s``); a
new password follows the rule of :mod:`puskesos.passwords`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from edge import auditchain, db, keys
from edge.config import EdgeConfig
from edge.records import AuditEntry
from edge.store import Store
from puskesos import passwords, throttle, webauth
from puskesos.passwords import MIN_LENGTH as MIN_PASSWORD_LENGTH
from puskesos.webauth import csrf_token, hash_password, load_secret, valid_username

__all__ = [
    "APPROVERS",
    "AUDITORS",
    "MIN_PASSWORD_LENGTH",
    "LoginResult",
    "Role",
    "User",
    "authenticate",
    "check_own_password",
    "create_api_token",
    "create_session",
    "create_user",
    "csrf_token",
    "end_all_sessions",
    "end_session",
    "list_api_tokens",
    "list_users",
    "load_secret",
    "password_weakness",
    "revoke_api_token",
    "set_password",
    "set_user_active",
    "throttle_of",
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
#: Who reads the audit trail: the whole trail, and a person's data report.
AUDITORS = frozenset({Role.ADMIN, Role.KEPALA_DESA})

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
    """``user`` on success; otherwise ``refused_ms`` says how long this name is refused from
    this address (0: a wrong name or password, try again)."""

    user: User | None
    refused_ms: int = 0


def _user(row: sa.Row[tuple[object, ...]]) -> User:
    return User(row.id, row.username, row.full_name, Role(row.role), bool(row.active))


def password_weakness(
    config: EdgeConfig, username: str, password: str
) -> passwords.WeakPassword | None:
    """Why ``password`` may not be set for ``username`` on this box (``None``: it may)."""
    places = passwords.place_words(config.village)
    return passwords.weakness(password, username=username, places=places)


def throttle_of(config: EdgeConfig) -> throttle.LoginThrottle:
    """The sign-in throttle of this box's configuration."""
    policy = throttle.Policy(
        pair_failures=config.login_max_failures, pair_max_s=config.login_lockout_s
    )
    return throttle.LoginThrottle(db.login_throttle, policy)


async def create_user(
    store: Store, *, username: str, full_name: str, role: Role, password: str, actor: str
) -> User:
    """Add an account; raises ``ValueError`` for a taken or bad name and
    :class:`puskesos.passwords.WeakPassword` (a ``ValueError``) for a weak password."""
    if not valid_username(username):
        raise ValueError("username: letters, digits, dot and underscore only")
    weak = password_weakness(store.config, username, password)
    if weak is not None:
        raise weak
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
        auditchain.append(
            conn,
            [
                {
                    "at_ms": now,
                    "actor": actor,
                    "action": "user_create",
                    "detail": json.dumps({"username": username, "role": role.value}),
                }
            ],
        )

    await store.run_write(insert)
    await _store_password(store, username, password)
    return User(created[0], username, full_name, role, True)


async def _store_password(store: Store, username: str, password: str) -> None:
    """Wrap the data key for ``username`` under ``password`` (on an encrypted box)."""
    if store.key is not None:
        await asyncio.to_thread(keys.store_password, store.config, store.key, username, password)


async def authenticate(store: Store, username: str, password: str, address: str) -> LoginResult:
    """Check a login. A failure is counted for the name from ``address`` and for
    ``address``; while either has failed too often the password is not even checked. Every
    answer takes about one password check, whether the name exists or not."""
    now = store.now_ms()
    gate = throttle_of(store.config)
    refused = await store.read(lambda conn: gate.refused_ms(conn, username, address, now))
    if refused:
        await webauth.verify_nobody(password)  # as slow as any other answer: no oracle
        return LoginResult(None, refused_ms=refused)
    query = sa.select(db.users).where(db.users.c.username == username)
    row = await store.read(lambda conn: conn.execute(query).first())
    account = row if row is not None and row.active else None
    if account is None:
        await webauth.verify_nobody(password)
    elif await webauth.verify_password(account.password_hash, password):
        await store.run_write(lambda conn: gate.forget_pair(conn, username, address, now))
        if store.key is not None and not keys.has_slot(store.config, username):
            # An account made by an older release, or whose slot was lost (storage.md §3).
            await _store_password(store, username, password)
        await store.audit(AuditEntry(account.username, "login", address=address))
        return LoginResult(_user(account))
    failure = await store.run_write(lambda conn: gate.record_failure(conn, username, address, now))
    detail: dict[str, object] = {"failures": failure.failures}
    if failure.refused_ms:
        detail["refused_s"] = failure.refused_ms // 1000
    if account is None:
        actor, detail = webauth.UNKNOWN_ACTOR, {**webauth.unknown_name(username), **detail}
    else:
        actor = account.username
    await store.audit(AuditEntry(actor, "login_failed", detail=detail, address=address))
    return LoginResult(None, refused_ms=failure.refused_ms)


async def check_own_password(store: Store, user: User, password: str, address: str) -> int:
    """Whether ``user``'s current password is ``password`` before they change it: 0 when it
    is; else how long (ms) they are refused from ``address``, or -1 for a wrong password,
    which is counted and audited like a failed sign-in."""
    now = store.now_ms()
    gate = throttle_of(store.config)
    refused = await store.read(lambda conn: gate.refused_ms(conn, user.username, address, now))
    if refused:
        await webauth.verify_nobody(password)
        return refused
    query = sa.select(db.users.c.password_hash).where(db.users.c.id == user.id)
    stored = await store.read(lambda conn: conn.execute(query).scalar_one())
    if await webauth.verify_password(stored, password):
        return 0
    failure = await store.run_write(
        lambda conn: gate.record_failure(conn, user.username, address, now)
    )
    detail = {"failures": failure.failures}
    await store.audit(AuditEntry(user.username, "password_change_failed", detail=detail,
                                 address=address))  # fmt: skip
    return failure.refused_ms or -1


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


async def end_all_sessions(store: Store) -> None:
    """Every session token stops working (the box is being locked)."""
    await store.run_write(lambda conn: conn.execute(db.sessions.delete()))


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
    """Deactivate (or reactivate) an account; a deactivated account's sessions end and its
    key slot goes (it gets one again at its first sign-in after reactivation)."""
    query = sa.select(db.users.c.username).where(db.users.c.id == user_id)
    username = await store.read(lambda conn: conn.execute(query).scalar_one_or_none())

    def change(conn: sa.Connection) -> None:
        conn.execute(db.users.update().where(db.users.c.id == user_id).values(active=active))
        if not active:
            conn.execute(db.sessions.delete().where(db.sessions.c.user_id == user_id))

    await store.run_write(change)
    if not active and username is not None:
        await asyncio.to_thread(keys.forget_user, store.config, username)
    action = "user_activate" if active else "user_deactivate"
    await store.audit(AuditEntry(actor, action, detail={"user_id": user_id}))


async def set_password(
    store: Store, user_id: int, password: str, *, actor: str, keep_session: str = ""
) -> None:
    """Set a new password; raises :class:`puskesos.passwords.WeakPassword` for a weak one.
    The account's sessions end (but ``keep_session``, the token of the person changing
    their own password) and its name may try to sign in again from every address."""
    query = sa.select(db.users.c.username).where(db.users.c.id == user_id)
    username = await store.read(lambda conn: conn.execute(query).scalar_one())
    weak = password_weakness(store.config, username, password)
    if weak is not None:
        raise weak
    password_hash = await hash_password(password)
    gate = throttle_of(store.config)
    kept = webauth.sha256(keep_session) if keep_session else ""

    def change(conn: sa.Connection) -> None:
        users, sessions = db.users, db.sessions
        conn.execute(
            users.update().where(users.c.id == user_id).values(password_hash=password_hash)
        )
        conn.execute(
            sessions.delete().where(sessions.c.user_id == user_id, sessions.c.token_hash != kept)
        )
        gate.forget_name(conn, username)

    await store.run_write(change)
    await _store_password(store, username, password)
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
