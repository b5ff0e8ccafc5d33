"""Accounts and sessions of the hub's review UI (docs/cycle.md, "Roles").

Passwords are argon2id hashes. A session is a random token in an HttpOnly, SameSite=Strict
cookie; the hub stores only its SHA-256 and ends it after :data:`SESSION_IDLE_S` without a
request (or :data:`SESSION_MAX_S` after login). The CSRF token of a session is an HMAC of
it with ``[hub] session_secret_file`` (:func:`puskesos.webauth.csrf_token`). Failed
logins slow down the (user name, address) pair and the address that made them, never the
account (:mod:`puskesos.throttle`; ``[hub] login_lockout_s`` is a pair's longest wait).
Every sign-in, failed or not, goes to the audit table in the same transaction as the
counters it moves. A new password follows the rule of :mod:`puskesos.passwords`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub import audit, db
from hub.roles import ROLE_LABELS, Role
from puskesos import passwords, throttle, webauth
from puskesos.commands import CommandError

if TYPE_CHECKING:
    from hub.cli import HubCommands
    from hub.store import HubStore

__all__ = [
    "MAX_FAILURES",
    "SESSION_IDLE_S",
    "SESSION_MAX_S",
    "AccountError",
    "LoginResult",
    "User",
    "add_commands",
    "authenticate",
    "change_password",
    "create_session",
    "create_user",
    "end_session",
    "list_users",
    "set_user_active",
    "user_for_session",
]

#: Failed logins of one name from one address before that pair must wait.
MAX_FAILURES = 5
#: A session ends after this long without a request...
SESSION_IDLE_S = 30 * 60
#: ...and in any case this long after its login.
SESSION_MAX_S = 12 * 60 * 60
#: ``last_seen_ms`` is written at most this often, not on every request.
_TOUCH_EVERY_MS = 60_000


class AccountError(ValueError):
    """An account that cannot be made or changed; ``message`` in Bahasa Indonesia for the
    page, ``english`` (when there is one) for the command line."""

    def __init__(self, code: str, message: str, english: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.english = english


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in member of the district's staff."""

    id: int
    username: str
    full_name: str
    role: Role
    active: bool

    @property
    def role_label(self) -> str:
        """The role's name on the page."""
        return ROLE_LABELS[self.role]


@dataclass(frozen=True, slots=True)
class LoginResult:
    """``user`` on success; otherwise ``refused_ms`` says how long this name is refused from
    this address (0: a wrong name or password, try again)."""

    user: User | None
    refused_ms: int = 0


def _user(row: Any) -> User:
    return User(row.id, row.username, row.full_name, Role(row.role), bool(row.active))


def _throttle(lockout_s: int) -> throttle.LoginThrottle:
    policy = throttle.Policy(pair_failures=MAX_FAILURES, pair_max_s=lockout_s)
    return throttle.LoginThrottle(db.login_throttle, policy)


def _check_password(password: str, username: str, district: str) -> None:
    weak = passwords.weakness(password, username=username, places=passwords.place_words(district))
    if weak is not None:
        raise AccountError("weak_password", weak.message, weak.english)


async def create_user(
    store: HubStore, *, username: str, full_name: str, role: Role | str, password: str,
    actor: str, district: str = "",
) -> User:  # fmt: skip
    """Add an account; :class:`AccountError` for a bad or taken name, an unknown role or a
    weak password (:mod:`puskesos.passwords`; ``district`` is the hub's regency code)."""
    if not webauth.valid_username(username) or len(username) > 64:
        raise AccountError("bad_username", "Nama pengguna: huruf, angka, titik dan garis bawah.")
    if not full_name.strip():
        raise AccountError("bad_full_name", "Nama lengkap wajib diisi.")
    try:
        role = Role(role)
    except ValueError:
        raise AccountError("bad_role", "Peran tidak dikenal.") from None
    _check_password(password, username, district)
    password_hash = await webauth.hash_password(password)
    now = store.wall()
    async with store.engine.begin() as conn:
        taken = await conn.execute(sa.select(db.users.c.id).where(db.users.c.username == username))
        if taken.first() is not None:
            raise AccountError("username_taken", f"Nama pengguna {username} sudah dipakai.")
        result = await conn.execute(
            db.users.insert().values(
                username=username,
                full_name=full_name.strip(),
                role=role.value,
                password_hash=password_hash,
                created_ms=now,
            )
        )
        user_id = int(result.inserted_primary_key[0])
        await audit.record(
            conn, at_ms=now, actor=actor, action="user.create", subject=username,
            detail={"role": role.value},
        )  # fmt: skip
    return User(user_id, username, full_name.strip(), role, True)


async def authenticate(
    store: HubStore, username: str, password: str, address: str, *, lockout_s: int
) -> LoginResult:
    """Check a login. A failure is counted for the name from ``address`` and for
    ``address`` (:mod:`puskesos.throttle`; a pair waits at most ``lockout_s``); while either
    has failed too often the password is not even checked. Every answer takes about one
    password check, whether the name exists or not."""
    now = store.wall()
    gate = _throttle(lockout_s)
    users = db.users
    async with store.engine.connect() as conn:
        refused = await conn.run_sync(gate.refused_ms, username, address, now)
        row = (await conn.execute(sa.select(users).where(users.c.username == username))).first()
    if refused:
        await webauth.verify_nobody(password)  # as slow as any other answer: no oracle
        return LoginResult(None, refused_ms=refused)
    where = {"address": address}
    account = row if row is not None and row.active else None
    if account is None:
        await webauth.verify_nobody(password)
    elif await webauth.verify_password(account.password_hash, password):
        async with store.engine.begin() as conn:
            await conn.run_sync(gate.forget_pair, username, address, now)
            await audit.record(
                conn, at_ms=now, actor=account.username, action="login.ok",
                subject=account.username, detail=where,
            )  # fmt: skip
        return LoginResult(_user(account))
    async with store.engine.begin() as conn:
        failure = await conn.run_sync(gate.record_failure, username, address, now)
        detail: dict[str, Any] = {**where, "failures": failure.failures}
        if failure.refused_ms:
            detail["refused_s"] = failure.refused_ms // 1000
        if account is None:
            await audit.record(
                conn, at_ms=now, actor=webauth.UNKNOWN_ACTOR, action="login.failed",
                detail={**detail, **webauth.unknown_name(username)},
            )  # fmt: skip
        else:
            await audit.record(
                conn, at_ms=now, actor=account.username, action="login.failed",
                subject=account.username, detail=detail,
            )  # fmt: skip
    return LoginResult(None, refused_ms=failure.refused_ms)


async def change_password(
    store: HubStore, user: User, current: str, new: str, *, address: str, session: str,
    lockout_s: int, district: str = "",
) -> None:  # fmt: skip
    """``user`` sets a new password, giving the current one (:class:`AccountError`
    ``wrong_password`` if it is not, counted like a failed sign-in, or ``refused`` while
    they are refused from ``address``; or a weak new one). Their other sessions end,
    ``session`` (the token of the browser in use) goes on."""
    now = store.wall()
    gate = _throttle(lockout_s)
    users = db.users
    async with store.engine.connect() as conn:
        refused = await conn.run_sync(gate.refused_ms, user.username, address, now)
        stored = (
            await conn.execute(sa.select(users.c.password_hash).where(users.c.id == user.id))
        ).scalar_one()
    if refused:
        await webauth.verify_nobody(current)
        raise AccountError("refused", webauth.login_error(refused))
    if not await webauth.verify_password(stored, current):
        async with store.engine.begin() as conn:
            failure = await conn.run_sync(gate.record_failure, user.username, address, now)
            await audit.record(
                conn, at_ms=now, actor=user.username, action="password.change_failed",
                subject=user.username, detail={"address": address, "failures": failure.failures},
            )  # fmt: skip
        raise AccountError("wrong_password", "Kata sandi sekarang salah.")
    _check_password(new, user.username, district)
    password_hash = await webauth.hash_password(new)
    kept = webauth.sha256(session)
    async with store.engine.begin() as conn:
        await conn.execute(
            users.update().where(users.c.id == user.id).values(password_hash=password_hash)
        )
        await conn.execute(
            db.sessions.delete().where(
                db.sessions.c.user_id == user.id, db.sessions.c.token_hash != kept
            )
        )
        await conn.run_sync(gate.forget_pair, user.username, address, now)
        await audit.record(
            conn, at_ms=now, actor=user.username, action="password.change",
            subject=user.username, detail={"address": address},
        )  # fmt: skip


async def create_session(store: HubStore, user: User) -> str:
    """A new session for ``user``; returns the cookie token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = store.wall()
    async with store.engine.begin() as conn:
        await conn.execute(
            db.sessions.insert().values(
                token_hash=webauth.sha256(token), user_id=user.id, created_ms=now, last_seen_ms=now
            )
        )
    return token


_USER_BY_SESSION = (
    sa.select(db.users, db.sessions.c.last_seen_ms)
    .join(db.sessions, db.sessions.c.user_id == db.users.c.id)
    .where(
        db.sessions.c.token_hash == sa.bindparam("token_hash"),
        db.sessions.c.last_seen_ms > sa.bindparam("idle_since"),
        db.sessions.c.created_ms > sa.bindparam("born_since"),
        db.users.c.active.is_(True),
    )
)


async def user_for_session(store: HubStore, token: str) -> User | None:
    """The active user of a live session, else ``None``; the session's idle clock restarts."""
    now = store.wall()
    token_hash = webauth.sha256(token)
    params = {
        "token_hash": token_hash,
        "idle_since": now - SESSION_IDLE_S * 1000,
        "born_since": now - SESSION_MAX_S * 1000,
    }
    async with store.engine.connect() as conn:
        row = (await conn.execute(_USER_BY_SESSION, params)).first()
    if row is None:
        return None
    if now - row.last_seen_ms >= _TOUCH_EVERY_MS:
        s = db.sessions
        async with store.engine.begin() as conn:
            await conn.execute(
                s.update().where(s.c.token_hash == token_hash).values(last_seen_ms=now)
            )
    return _user(row)


async def end_session(store: HubStore, token: str) -> None:
    """Sign out: the session token stops working."""
    async with store.engine.begin() as conn:
        await conn.execute(
            db.sessions.delete().where(db.sessions.c.token_hash == webauth.sha256(token))
        )


async def list_users(store: HubStore) -> list[User]:
    """Every account, by user name."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(db.users).order_by(db.users.c.username))).all()
    return [_user(row) for row in rows]


async def set_user_active(store: HubStore, user_id: int, active: bool, *, actor: str) -> bool:
    """Deactivate (or reactivate) an account; a deactivated account's sessions end at once.
    ``False`` if there is no such account."""
    now = store.wall()
    async with store.engine.begin() as conn:
        username = (
            await conn.execute(sa.select(db.users.c.username).where(db.users.c.id == user_id))
        ).scalar_one_or_none()
        if username is None:
            return False
        await conn.execute(db.users.update().where(db.users.c.id == user_id).values(active=active))
        if not active:
            await conn.execute(db.sessions.delete().where(db.sessions.c.user_id == user_id))
        action = "user.activate" if active else "user.deactivate"
        await audit.record(conn, at_ms=now, actor=actor, action=action, subject=username)
    return True


# --- puskesos hub user ... ---------------------------------------------------------------


def add_commands(commands: HubCommands) -> None:
    """Register ``user add`` and ``user list`` under ``puskesos hub``."""
    commands.group("user", "accounts of the review UI")
    add = commands.command("user add", _add, "add an account; the password is read from stdin")
    add.add_argument("--username", required=True, help="letters, digits, dot and underscore")
    add.add_argument("--role", required=True, choices=[role.value for role in Role])
    add.add_argument("--full-name", required=True, help="the person's name, shown in the UI")
    commands.command("user list", _list, "list the accounts")


def _read_password() -> str:
    """The new password: typed twice on a terminal, else the first line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the two passwords differ", 2)
    return first


def _with_store(args: argparse.Namespace, work: Any) -> Any:
    """Run ``work(store)`` on the hub's database (migrated first), closing it after."""
    from hub.config import load_config
    from hub.store import HubStore

    config = load_config(args.config)
    db.upgrade(config.url)

    async def run() -> Any:
        engine = db.create_engine(config.url)
        store = HubStore(engine, node=config.node, max_clock_drift_ms=config.max_clock_drift_ms)
        try:
            return await work(store)
        finally:
            await store.engine.dispose()

    return asyncio.run(run())


def _add(args: argparse.Namespace) -> int:
    from hub.config import load_config

    password = _read_password()
    district = load_config(args.config).district

    async def add(store: HubStore) -> User:
        return await create_user(
            store, username=args.username, full_name=args.full_name, role=args.role,
            password=password, actor="cli", district=district,
        )  # fmt: skip

    try:
        user = _with_store(args, add)
    except AccountError as exc:
        message = f"{exc.english} ({exc.message})" if exc.english else exc.message
        raise CommandError(message, 2) from None
    print(f"account {user.username} ({user.role.value}) added")
    return 0


def _list(args: argparse.Namespace) -> int:
    for user in _with_store(args, list_users):
        state = "active" if user.active else "inactive"
        print(f"{user.username}\t{user.role.value}\t{state}\t{user.full_name}")
    return 0
