"""Login helpers shared by the edge box's UI and the district hub's review UI.

Only what does not depend on either side's store: the secret file CSRF tokens are derived
from, the CSRF token of a session (an HMAC of the session token's hash, so it needs no
storage and dies with the session), the user-name rule, argon2id hashing and checking
off the event loop, and where a sign-in may send the browser next.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import os
import secrets
from pathlib import Path

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from yarl import URL

__all__ = [
    "SIGNED_IN",
    "UNKNOWN_ACTOR",
    "csrf_token",
    "hash_password",
    "load_secret",
    "login_error",
    "safe_next",
    "sha256",
    "unknown_name",
    "valid_username",
    "verify_nobody",
    "verify_password",
]

#: The user name of whoever a request is signed in as: set by the box's and the hub's
#: guards, read by the access log (:mod:`puskesos.logs`).
SIGNED_IN = web.RequestKey("signed_in", str)

_hasher = PasswordHasher()
#: What a browser drops from or reads differently in a URL: tabs, newlines, backslashes.
_TRICKY = frozenset("\\\t\r\n")


def sha256(token: str) -> str:
    """What is stored of a session or API token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_secret(path: Path) -> bytes:
    """The secret CSRF tokens are derived from, created (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(path.name + ".new")
        fresh.unlink(missing_ok=True)
        fresh.touch(mode=0o600)
        with fresh.open("wb") as file:  # complete and on disk before it takes the name
            file.write(secrets.token_bytes(32))
            file.flush()
            os.fsync(file.fileno())
        os.replace(fresh, path)
    return path.read_bytes()


def csrf_token(secret: bytes, session_token: str) -> str:
    """The CSRF token that goes with a session."""
    return hmac.new(secret, sha256(session_token).encode(), hashlib.sha256).hexdigest()


def login_error(refused_ms: int = 0) -> str:
    """What the sign-in page says when a sign-in fails: never which of the two was wrong,
    and, while this device is refused (:mod:`puskesos.throttle`), for how long."""
    if refused_ms > 0:
        minutes = max(1, math.ceil(refused_ms / 60_000))
        return (
            f"Terlalu banyak percobaan masuk dari perangkat ini. Coba lagi dalam {minutes} menit."
        )
    return "Nama pengguna atau kata sandi salah."


def valid_username(username: str) -> bool:
    """User names are letters, digits, dots and underscores."""
    return bool(username) and username.replace(".", "").replace("_", "").isalnum()


async def hash_password(password: str) -> str:
    """An argon2id hash of ``password``, made off the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Check a password off the event loop (argon2 takes tens of milliseconds on purpose)."""
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    # Made on first use, not at import: the command line imports this module too.
    return _hasher.hash("not a password of anyone")


async def verify_nobody(password: str) -> None:
    """Spend the time of a password check for a login to an unknown or inactive account,
    so the answer's timing does not tell which accounts exist."""
    await verify_password(await asyncio.to_thread(_dummy_hash), password)


def safe_next(target: str | None) -> str:
    """Where a sign-in may send the browser: a path of this site, else ``/``.

    The target is returned as it came (still percent-encoded), so that a page that puts it
    in a form and reads it back gets the same string, never one decoded once more: decoding
    turned ``/%2509/evil.com`` into ``/%09/evil.com`` on the sign-in page and into
    ``/<tab>/evil.com`` after the post, which a browser reads as ``//evil.com``. Both the
    raw and the decoded path are checked the way browsers parse them (tabs and newlines
    dropped, backslashes read as slashes, ``//`` starting another site).
    """
    if not target or not target.startswith("/") or any(ch in _TRICKY for ch in target):
        return "/"
    url = URL(target, encoded=True)
    decoded = url.path
    if (
        url.scheme
        or url.host
        or target.startswith("//")
        or not decoded.startswith("/")
        or decoded.startswith("//")
        or any(ch in _TRICKY or ord(ch) < 0x20 for ch in decoded)
    ):
        return "/"
    return url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")


#: Who a failed sign-in with an unknown user name is recorded as.
UNKNOWN_ACTOR = "(nama tidak dikenal)"


def unknown_name(username: str) -> dict[str, str]:
    """The audit detail of a sign-in with an unknown user name: a short fingerprint, not the
    text, which is often a password typed into the wrong field. Attempts with the same name
    still show as the same."""
    return {"name_sha256": sha256(username)[:12]}
