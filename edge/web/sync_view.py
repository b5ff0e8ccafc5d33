"""What Beranda, the Sinkronisasi page and ``/api/v1/sync/status`` say about replication,
read in one place, with the Indonesian explanation of each refusal reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web

from edge import outbox
from edge.outbox import QueueState
from edge.web.app import CONFIG, STORE, SYNC
from protocol.digest import root_hex
from protocol.errors import Reason

__all__ = ["REJECT_MESSAGES", "SyncView", "reject_message", "sync_json", "sync_view"]

#: Why the hub refused a batch, for the people in the village office.
REJECT_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        Reason.MALFORMED: "Kiriman dari perangkat ini tidak terbaca oleh kabupaten. "
        "Hubungi TI kabupaten; data tetap aman di perangkat ini.",
        Reason.UNSUPPORTED_VERSION: "Versi perangkat lunak perangkat ini tidak dikenali "
        "kabupaten. Perbarui perangkat lunaknya.",
        Reason.TOO_LARGE: "Kiriman terlalu besar untuk diterima kabupaten. Hubungi TI kabupaten.",
        Reason.INVALID_CHANGE: "Kabupaten menolak sebagian data karena tidak sesuai aturan. "
        "Hubungi TI kabupaten.",
        Reason.CLOCK_AHEAD: "Jam perangkat ini salah (lebih maju dari waktu sebenarnya), "
        "sehingga kabupaten menolak datanya. Betulkan tanggal dan jam perangkat; setelah "
        "itu data dicap ulang dan dikirim lagi secara otomatis.",
        Reason.BAD_TOPIC: "Perangkat ini mengirim ke alamat yang salah. Hubungi TI kabupaten "
        "untuk memeriksa pengaturan broker.",
        Reason.UNKNOWN_NODE: "Perangkat ini belum terdaftar di kabupaten. Minta TI kabupaten "
        "mendaftarkannya.",
        Reason.REVOKED_NODE: "Perangkat ini sudah dicabut oleh kabupaten dan tidak boleh "
        "mengirim data lagi. Hubungi TI kabupaten.",
        Reason.WRONG_NODE: "Kiriman memakai identitas perangkat lain. Hubungi TI kabupaten.",
        Reason.WRONG_VILLAGE: "Data berisi desa lain, bukan desa perangkat ini. "
        "Hubungi TI kabupaten.",
    }
)


def reject_message(reason: str) -> str:
    """The explanation of a refusal reason (a generic one for a code this version lacks)."""
    return REJECT_MESSAGES.get(
        reason, f"Kabupaten menolak kiriman (kode {reason}). Hubungi TI kabupaten."
    )


@dataclass(frozen=True, slots=True)
class SyncView:
    """Replication as people see it. ``connected`` is ``None`` when sync is turned off."""

    enabled: bool
    connected: bool | None
    queue: QueueState
    clock_ahead_ms: int
    clock_wrong: bool
    reject_message: str | None


async def sync_view(app: web.Application) -> SyncView:
    """Read the replication state of the box behind ``app``."""
    store, config, client = app[STORE], app[CONFIG], app[SYNC]
    queue = await outbox.queue_state(store)
    ahead = store.clock.ahead_ms(store.now_ms())
    reject = queue.last_reject
    return SyncView(
        enabled=client is not None,
        connected=client.connected if client is not None else None,
        queue=queue,
        clock_ahead_ms=ahead,
        clock_wrong=ahead > config.max_clock_drift_ms
        or (reject is not None and reject.reason == Reason.CLOCK_AHEAD),
        reject_message=reject_message(reject.reason) if reject is not None else None,
    )


def sync_json(view: SyncView, node: str, village: str) -> dict[str, Any]:
    """The body of ``GET /api/v1/sync/status`` (schema ``SyncStatus`` in the OpenAPI)."""
    queue, reject = view.queue, view.queue.last_reject
    return {
        "node": node,
        "village": village,
        "enabled": view.enabled,
        "connected": view.connected,
        "outbox_pending": queue.pending,
        "outbox_oldest_ms": queue.oldest_ms,
        "unacked_batches": queue.unacked_batches,
        "up_seq": queue.up_seq,
        "down_watermark": queue.down_watermark,
        "last_hub_contact_ms": queue.last_hub_contact_ms,
        "last_ack_ms": queue.last_ack_ms,
        "last_reject": None
        if reject is None
        else {
            "seq": reject.seq,
            "reason": reject.reason,
            "detail": reject.detail,
            "at_ms": reject.at_ms,
            "message": view.reject_message,
        },
        "last_restamp_ms": queue.last_restamp_ms,
        "clock_ahead_ms": view.clock_ahead_ms,
        "clock_wrong": view.clock_wrong,
        "records": queue.records,
        "digest": root_hex(queue.digest_root),
        "digest_check": None
        if queue.check is None
        else {
            "state": queue.check.state,
            "at_ms": queue.check.at_ms,
            "divergences": queue.check.divergences,
            "records_sent": queue.check.records_sent,
        },
    }
