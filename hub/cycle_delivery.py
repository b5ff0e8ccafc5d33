"""The monthly cycle's last steps: deliver a signed period to the national receiver
(``diteruskan``) and import its published results (``diterbitkan``), which go down to the
villages' boxes. Same rules as :mod:`hub.cycle`: each move locks the period's row, checks
the state with :mod:`hub.cycle_rules` and is audited.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub import db
from hub.config import HubConfig
from hub.cycle import SYSTEM, Period, get, lock_period, move, read_period, signing_key
from hub.cycle_rules import Action, CycleError, State, next_state
from hub.store import HubStore

__all__ = ["FORWARD_LEASE_MS", "forward_due", "forward_period", "import_published"]

log = logging.getLogger("puskesos.hub.cycle")


# --- forwarding --------------------------------------------------------------------------

#: A worker claims a delivery for this long (another worker leaves it alone meanwhile).
FORWARD_LEASE_MS = 15 * 60 * 1000
_BACKOFF_MS = (60_000, 5 * 60_000, 15 * 60_000, 60 * 60_000, 6 * 60 * 60_000)


async def forward_period(
    store: HubStore, config: HubConfig, period: str, actor: str, *, max_attempts: int = 8
) -> Period:
    """Deliver the signed dataset of ``period`` to the national receiver now; on success
    the receipt is stored (in the database and as ``receipt.json`` beside the dataset)
    and the period is ``diteruskan``; forwarding again stores once and answers the same
    receipt. On failure the error and the next try are recorded, and it is raised."""
    import ssl

    from hub.forward import RECEIPT_FILE, ForwardError, forward

    found = await get(store.engine, period)
    if found is None or found.dataset is None:
        raise CycleError(
            "not_signed", f"Periode {period} belum ditandatangani; tidak ada yang diteruskan."
        )
    if not config.national_url or not config.national_token_file:
        raise CycleError(
            "no_receiver",
            "Alamat atau token penerima pusat belum diatur di hub. Minta TI kabupaten mengaturnya.",
        )
    token = config.path(config.national_token_file).read_text(encoding="utf-8").strip()
    folder = Path(found.dataset)
    context = ssl.create_default_context(cafile=config.national_ca_file or None)
    try:
        done = await forward(
            folder,
            config.national_url,
            token,
            public_key=signing_key(config).public_key(),
            chunk_bytes=config.forward_chunk_bytes,
            max_attempts=max_attempts,
            ssl_context=context,
        )
    except ForwardError as exc:
        now = store.wall()
        attempts = found.forward_attempts + 1
        wait = _BACKOFF_MS[min(attempts, len(_BACKOFF_MS)) - 1]
        async with store.engine.begin() as conn:
            await conn.execute(
                db.periods.update()
                .where(db.periods.c.period == period)
                .values(
                    forward_attempts=attempts, forward_error=str(exc), next_forward_ms=now + wait
                )
            )
        raise
    receipt = json.dumps(done.signed, sort_keys=True, ensure_ascii=False)
    temp = folder / f".{RECEIPT_FILE}.partial"
    temp.write_text(json.dumps(done.signed, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temp.replace(folder / RECEIPT_FILE)
    now = store.wall()
    async with store.engine.begin() as conn:
        locked = await lock_period(conn, period)
        if locked.state is State.SIGNED:
            await move(
                conn,
                period,
                next_state(locked.state, Action.FORWARD),
                actor=actor,
                action=Action.FORWARD,
                now=now,
                values={
                    "forwarded_ms": now,
                    "receipt": receipt,
                    "forward_error": None,
                    "next_forward_ms": None,
                    "forward_attempts": locked.forward_attempts + 1,
                },
                detail={"manifest_sha256": done.receipt.manifest_sha256},
            )
        forwarded = await read_period(conn, period)
    assert forwarded is not None
    return forwarded


async def forward_due(store: HubStore, config: HubConfig, now_ms: int) -> list[str]:
    """Forward every signed period whose next try is due (the sweep); returns the
    periods delivered. A worker first claims a period for :data:`FORWARD_LEASE_MS`, so
    two workers never upload the same one at once; a failure sets the next try."""
    from hub.forward import ForwardError

    if not config.national_url:
        return []
    p = db.periods
    due = sa.and_(
        p.c.state == State.SIGNED.value,
        sa.or_(p.c.next_forward_ms.is_(None), p.c.next_forward_ms <= now_ms),
    )
    async with store.engine.connect() as conn:
        candidates = list((await conn.execute(sa.select(p.c.period).where(due))).scalars())
    delivered = []
    for period in candidates:
        async with store.engine.begin() as conn:
            claimed = await conn.execute(
                p.update()
                .where(p.c.period == period, due)
                .values(next_forward_ms=now_ms + FORWARD_LEASE_MS)
            )
        if not claimed.rowcount:
            continue
        try:
            await forward_period(store, config, period, SYSTEM, max_attempts=3)
        except (ForwardError, CycleError, OSError) as exc:
            log.warning("forwarding failed", extra={"period": period, "error": str(exc)})
            continue
        delivered.append(period)
    return delivered


# --- published results -------------------------------------------------------------------


async def import_published(store: HubStore, config: HubConfig, path: Path, actor: str) -> int:
    """Import the national receiver's published results of a forwarded period: check its
    signature (``<file>.sig``, by the key of ``national_key_file``) and the file's digest,
    then write ``decile``, ``decile_period`` and ``eligible_programmes`` of each known
    household as hub versions (one village per transaction, so they go down to the boxes);
    the period becomes ``diterbitkan``. Returns how many households were written."""
    statement = _verified_statement(config, path)
    period = str(statement["period"])
    found = await get(store.engine, period)
    if found is None:
        raise CycleError("unknown_period", f"Periode {period} tidak ditemukan.")
    next_state(found.state, Action.PUBLISH)
    results: dict[str, dict[str, Any]] = {}
    with open(path, "rb") as lines:
        next(lines)  # the header, checked with the statement
        for line in lines:
            item = json.loads(line)
            results[item["id"]] = {
                "decile": item["decile"],
                "decile_period": period,
                "eligible_programmes": item["programmes"],
            }
    r = db.records
    by_village: dict[str, list[str]] = {}
    ids = sorted(results)
    async with store.engine.connect() as conn:
        for start in range(0, len(ids), 2000):
            query = sa.select(r.c.id, r.c.village).where(
                r.c.entity == "household", r.c.id.in_(ids[start : start + 2000])
            )
            for row in await conn.execute(query):
                by_village.setdefault(row.village, []).append(row.id)
    written = 0
    for village, household_ids in sorted(by_village.items()):
        async with store.engine.begin() as conn:
            log_seq = await store.lock_village(conn, village)
            for start in range(0, len(household_ids), 500):
                chunk = household_ids[start : start + 500]
                log_seq = await store.write_hub_values(
                    conn, {i: results[i] for i in chunk}, log_seq, store.wall()
                )
        written += len(household_ids)
    now = store.wall()
    async with store.engine.begin() as conn:
        locked = await lock_period(conn, period)
        await move(
            conn,
            period,
            next_state(locked.state, Action.PUBLISH),
            actor=actor,
            action=Action.PUBLISH,
            now=now,
            values={"published_ms": now, "published_by": actor, "published_count": written},
            detail={"households": written, "file_sha256": statement["file_sha256"]},
        )
    return written


def _verified_statement(config: HubConfig, path: Path) -> Mapping[str, Any]:
    """The signed statement beside ``path``, checked: the receiver's signature, the
    file's size and SHA-256, its header and this hub's district."""
    from hub.keys import KeyFileError, load_public_key, verify
    from protocol.dataset import canonical_json

    if not config.national_key_file:
        raise CycleError(
            "no_national_key",
            "Kunci publik penerima pusat belum diatur di hub. Minta TI kabupaten mengaturnya.",
        )
    try:
        key = load_public_key(config.path(config.national_key_file).read_bytes())
    except (OSError, KeyFileError):
        raise CycleError(
            "no_national_key",
            "Kunci publik penerima pusat tidak terbaca. Minta TI kabupaten memeriksanya.",
        ) from None
    bad = CycleError("bad_signature", "Tanda tangan berkas hasil tidak sah atau berkas berubah.")
    try:
        signed = json.loads(path.with_name(path.name + ".sig").read_bytes())
        statement, signature = signed["statement"], signed["signature"]
        data = path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        raise bad from None
    if not isinstance(statement, dict) or not verify(key, canonical_json(statement), signature):
        raise bad
    if statement.get("file_sha256") != hashlib.sha256(data).hexdigest():
        raise bad
    header = json.loads(data.split(b"\n", 1)[0])
    if header.get("period") != statement.get("period") or header.get("district") != statement.get(
        "district"
    ):
        raise bad
    if config.district and statement.get("district") != config.district:
        raise CycleError(
            "wrong_district", f"Berkas hasil untuk kabupaten {statement.get('district')}."
        )
    return statement
