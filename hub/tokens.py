"""The hub's API tokens: machine access to ``/api/``, each with a scope, the villages it
may see and an expiry (``puskesos hub token add|list|revoke``). Only a token's SHA-256 is
stored; the token itself is printed once.

- ``scope``: ``read`` (the default) reads records, conflicts and devices; ``write`` also
  resolves conflicts.
- ``villages``: the 10-digit codes it may see; none listed: every village of the hub.
- ``expires_ms``: after it the token is refused (default: :data:`DEFAULT_DAYS` days).

Tokens made before scopes existed keep what they could do (``write``, every village, no
expiry) so that a district's tools keep working; ``token list`` shows them to revoke.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from hub import db
from hub.store import HubStore

__all__ = [
    "DEFAULT_DAYS",
    "SCOPES",
    "Token",
    "TokenError",
    "add_token",
    "list_tokens",
    "required_scope",
    "revoke_token",
    "token_for",
]

SCOPES = ("read", "write")
DEFAULT_DAYS = 365
_DAY_MS = 86_400_000


class TokenError(ValueError):
    """A token cannot be made as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class Token:
    """A stored API token (never the secret itself)."""

    name: str
    scope: str
    villages: frozenset[str]
    created_ms: int
    expires_ms: int | None
    revoked: bool

    @property
    def may_write(self) -> bool:
        return self.scope == "write"

    def sees(self, village: str) -> bool:
        """Whether the token may see ``village``'s data."""
        return not self.villages or village in self.villages


def required_scope(method: str) -> str:
    """The scope a request of HTTP ``method`` needs: ``read`` for GET, ``write`` else."""
    return "read" if method == "GET" else "write"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row: sa.Row[tuple[object, ...]]) -> Token:
    return Token(
        name=row.name,
        scope=row.scope,
        villages=frozenset(row.villages.split()),
        created_ms=row.created_ms,
        expires_ms=row.expires_ms,
        revoked=bool(row.revoked),
    )


async def add_token(
    store: HubStore,
    name: str,
    *,
    scope: str = "read",
    villages: Iterable[str] = (),
    days: int | None = DEFAULT_DAYS,
) -> str:
    """Make a token; returns it (only its hash is stored). ``days=None``: no expiry."""
    villages = sorted(set(villages))
    if not name.strip():
        raise TokenError("a token needs a name (what it is for)")
    if scope not in SCOPES:
        raise TokenError(f"scope must be one of {', '.join(SCOPES)}")
    if any(len(code) != 10 or not code.isdigit() for code in villages):
        raise TokenError("a village is a 10-digit code")
    if days is not None and days < 1:
        raise TokenError("a token lasts at least one day")
    secret = secrets.token_urlsafe(32)
    now = store.wall()
    async with store.engine.begin() as conn:
        await conn.execute(
            db.api_tokens.insert().values(
                name=name.strip(),
                token_hash=_hash(secret),
                created_ms=now,
                scope=scope,
                villages=" ".join(villages),
                expires_ms=None if days is None else now + days * _DAY_MS,
            )
        )
    return secret


async def token_for(store: HubStore, secret: str) -> Token | None:
    """The token ``secret`` is, if it is known, not revoked and not expired."""
    t = db.api_tokens
    query = sa.select(t).where(t.c.token_hash == _hash(secret.strip()), t.c.revoked.is_(False))
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    token = _token(row)
    if token.expires_ms is not None and token.expires_ms <= store.wall():
        return None
    return token


async def list_tokens(store: HubStore) -> Sequence[Token]:
    """Every token, the newest first."""
    t = db.api_tokens
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(t).order_by(t.c.id.desc()))).all()
    return [_token(row) for row in rows]


async def revoke_token(store: HubStore, name: str) -> int:
    """Revoke every token called ``name``; returns how many were live."""
    t = db.api_tokens
    async with store.engine.begin() as conn:
        result = await conn.execute(
            t.update().where(t.c.name == name, t.c.revoked.is_(False)).values(revoked=True)
        )
    return int(result.rowcount or 0)
