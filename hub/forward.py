"""Deliver a signed dataset folder to the national receiver: chunked, resumable, idempotent.

:func:`forward` first checks the folder locally: a manifest that is missing, malformed or
not signed by the district's own key is refused before anything is sent ("refused before
signing"). Then it opens (or resumes) the delivery, asks the receiver how many bytes of
each file it already holds, sends only the rest in chunks, and finalizes. Any network
error, timeout, 5xx or 429 is retried with exponential backoff and full jitter, starting
again from what the receiver reports, so a cut link or a crash of either side costs at
most the chunk in flight. A period already delivered with the same manifest answers its
receipt at once: forwarding twice stores once. The contract is ``docs/national-api.yaml``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.keys import verify
from protocol.dataset import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    DatasetError,
    DatasetReason,
    Manifest,
    Receipt,
    canonical_bytes,
    manifest_sha256,
    parse_manifest,
    parse_receipt,
)

if TYPE_CHECKING:
    import aiohttp
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from hub.cli import HubCommands

__all__ = ["RECEIPT_FILE", "ForwardError", "Forwarded", "add_commands", "forward", "load_dataset"]

#: Where ``hub forward`` keeps the receipt, inside the dataset folder.
RECEIPT_FILE = "receipt.json"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class ForwardError(Exception):
    """The delivery cannot be made; ``reason`` is a :class:`DatasetReason` code (or
    ``unreachable`` after the last retry)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Retry(Exception):
    """A failure worth trying again (network, timeout, 5xx, 429)."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The outcome of :func:`forward`: the receipt, its signed form, and what was sent."""

    receipt: Receipt
    signed: dict[str, Any]
    bytes_sent: int


def load_dataset(folder: Path, public_key: Ed25519PublicKey) -> tuple[Manifest, str]:
    """The manifest and signature of a dataset folder, checked against the district's key.

    Raises :class:`ForwardError`: ``malformed`` (no or bad manifest, a file missing or of
    the wrong size), ``unsigned``, ``bad_signature``.
    """
    try:
        manifest = parse_manifest((folder / MANIFEST_FILE).read_bytes())
    except FileNotFoundError:
        raise ForwardError(DatasetReason.MALFORMED, f"no {MANIFEST_FILE} in {folder}") from None
    except DatasetError as exc:
        raise ForwardError(exc.reason, exc.detail) from None
    try:
        signature = (folder / SIGNATURE_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        signature = ""
    if not signature:
        raise ForwardError(
            DatasetReason.UNSIGNED, f"refused before signing: {folder} has no {SIGNATURE_FILE}"
        )
    if not verify(public_key, canonical_bytes(manifest), signature):
        raise ForwardError(
            DatasetReason.BAD_SIGNATURE,
            f"refused: {SIGNATURE_FILE} is not this district's signature of {MANIFEST_FILE}",
        )
    for f in manifest.files:
        try:
            size = (folder / f.name).stat().st_size
        except FileNotFoundError:
            raise ForwardError(DatasetReason.MALFORMED, f"{f.name} is missing") from None
        if size != f.bytes:
            raise ForwardError(
                DatasetReason.SIZE_MISMATCH, f"{f.name} has {size} bytes, manifest {f.bytes}"
            )
    return manifest, signature


class _Delivery:
    """One delivery's HTTP conversation; every method raises :class:`_Retry` or
    :class:`ForwardError`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        token: str,
        folder: Path,
        manifest: Manifest,
        signature: str,
        chunk_bytes: int,
    ) -> None:
        base = url.rstrip("/")
        self.session = session
        self.folder = folder
        self.manifest = manifest
        self.signature = signature
        self.chunk_bytes = chunk_bytes
        self.upload = manifest_sha256(manifest)
        self.period_url = f"{base}/api/v1/districts/{manifest.district}/periods/{manifest.period}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.bytes_sent = 0

    async def _call(
        self, method: str, url: str, *, ok: frozenset[int], **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        import aiohttp

        headers = {**self.headers, **kwargs.pop("headers", {})}
        try:
            async with self.session.request(method, url, headers=headers, **kwargs) as answer:
                status = answer.status
                try:
                    body = await answer.json(content_type=None)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    body = {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        if status in _RETRY_STATUS:
            raise _Retry(f"{method} {url}: HTTP {status}")
        if not isinstance(body, dict):
            body = {}
        if status not in ok:
            raise ForwardError(
                str(body.get("error", f"http_{status}")),
                str(body.get("message", f"the receiver answered HTTP {status}")),
            )
        return status, body

    async def open(self) -> dict[str, Any]:
        """Open or resume; the receiver's state of the delivery."""
        _, body = await self._call(
            "PUT",
            f"{self.period_url}/delivery",
            ok=frozenset({200, 201}),
            json={"manifest": self.manifest.to_json(), "signature": self.signature},
        )
        return body

    async def send_file(self, name: str, size: int, received: int) -> None:
        """Send the rest of one file from ``received``, at the offsets the receiver reports."""
        url = f"{self.period_url}/uploads/{self.upload}/files/{name}"
        with open(self.folder / name, "rb") as source:
            while received < size:
                source.seek(received)
                chunk = await asyncio.to_thread(source.read, min(self.chunk_bytes, size - received))
                status, body = await self._call(
                    "PUT",
                    url,
                    ok=frozenset({200, 409}),
                    params={"offset": str(received)},
                    data=chunk,
                    headers={"Content-Type": "application/octet-stream"},
                )
                if status == 409 and body.get("error") != DatasetReason.OFFSET_MISMATCH:
                    raise ForwardError(str(body.get("error")), str(body.get("message")))
                if status == 200:
                    self.bytes_sent += len(chunk)
                received = int(body["received"])

    async def finalize(self) -> dict[str, Any]:
        """Ask the receiver to check and store the delivery; its answer."""
        _, body = await self._call(
            "POST", f"{self.period_url}/uploads/{self.upload}/finalize", ok=frozenset({200})
        )
        return body


async def forward(
    folder: Path,
    url: str,
    token: str,
    *,
    public_key: Ed25519PublicKey,
    chunk_bytes: int = 4 * 1024 * 1024,
    max_attempts: int = 8,
    backoff_s: float = 1.0,
    backoff_max_s: float = 60.0,
    ssl_context: ssl.SSLContext | None = None,
    timeout_s: float = 300.0,
    log: Callable[[str], None] | None = None,
) -> Forwarded:
    """Deliver the dataset ``folder`` to the receiver at ``url`` with the district's
    bearer ``token``; returns the receipt (the caller stores it).

    ``public_key`` is the district's own key: a dataset it did not sign is refused before
    anything is sent. ``max_attempts`` failures in a row without progress give up with
    ``unreachable``; a failure after bytes were stored starts the count again.
    """
    import aiohttp

    manifest, signature = load_dataset(folder, public_key)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    failures = 0
    sent_before = 0
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        delivery = _Delivery(session, url, token, folder, manifest, signature, max(1, chunk_bytes))
        while True:
            try:
                state = await delivery.open()
                if state.get("state") != "delivered":
                    for f in state.get("files", []):
                        await delivery.send_file(f["name"], f["bytes"], f["received"])
                    state = await delivery.finalize()
                break
            except _Retry as exc:
                if delivery.bytes_sent > sent_before:  # it progressed: count afresh
                    failures, sent_before = 0, delivery.bytes_sent
                failures += 1
                if failures >= max_attempts:
                    raise ForwardError(
                        "unreachable", f"gave up after {failures} tries: {exc}"
                    ) from None
                wait = random.uniform(0, min(backoff_max_s, backoff_s * 2 ** (failures - 1)))
                if log is not None:
                    log(f"retry {failures}/{max_attempts} in {wait:.1f} s: {exc}")
                await asyncio.sleep(wait)
            except ForwardError as exc:
                if exc.reason in (DatasetReason.NO_UPLOAD, DatasetReason.INCOMPLETE):
                    failures += 1  # superseded or cut short meanwhile: open again
                    if failures < max_attempts:
                        continue
                raise
    try:
        receipt = parse_receipt(state["receipt"]["receipt"])
    except (KeyError, TypeError, DatasetError) as exc:
        raise ForwardError(DatasetReason.MALFORMED, f"the receiver's receipt: {exc}") from None
    if receipt.manifest_sha256 != delivery.upload:
        raise ForwardError(
            DatasetReason.ALREADY_DELIVERED, "the receipt is for another manifest of this period"
        )
    return Forwarded(receipt, state["receipt"], delivery.bytes_sent)


def add_commands(commands: HubCommands) -> None:
    """Register ``forward`` under ``puskesos hub``."""
    text = "deliver a signed dataset folder to the national receiver (hub.national_url)"
    parser = commands.command("forward", _forward, text)
    parser.add_argument("--period", required=True, help="YYYY-MM: the period of the dataset")
    parser.add_argument(
        "--dataset",
        type=Path,
        help="the dataset folder (default: the signed period's own, and its state moves on)",
    )


def _forward(args: argparse.Namespace) -> int:
    import sys

    from hub.config import load_config
    from hub.keys import load_private_key
    from puskesos.commands import CommandError

    config = load_config(args.config)
    if args.dataset is None:
        return _forward_period(args)
    if not config.national_url:
        raise CommandError("hub.national_url is not set", 2)
    if not config.national_token_file:
        raise CommandError("hub.national_token_file is not set", 2)
    token = config.path(config.national_token_file).read_text(encoding="utf-8").strip()
    public_key = load_private_key(config.path(config.signing_key_file)).public_key()
    manifest, _ = load_dataset(args.dataset, public_key)
    if manifest.period != args.period:
        raise CommandError(f"{args.dataset} is the dataset of {manifest.period}, not {args.period}")
    if config.district and manifest.district != config.district:
        raise CommandError(f"{args.dataset} is of district {manifest.district}")
    context = ssl.create_default_context(cafile=config.national_ca_file or None)

    def note(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        done = asyncio.run(
            forward(
                args.dataset,
                config.national_url,
                token,
                public_key=public_key,
                chunk_bytes=config.forward_chunk_bytes,
                ssl_context=context,
                log=note,
            )
        )
    except ForwardError as exc:
        raise CommandError(str(exc)) from None
    receipt = json.dumps(done.signed, indent=2, sort_keys=True)
    temp = args.dataset / f".{RECEIPT_FILE}.partial"
    temp.write_text(receipt + "\n", encoding="utf-8")
    os.replace(temp, args.dataset / RECEIPT_FILE)
    print(receipt)
    return 0


def _forward_period(args: argparse.Namespace) -> int:
    """``hub forward --period P``: the period's own dataset, through the monthly cycle (its
    receipt stored, the period ``diteruskan``); a period that is not signed is refused."""
    import getpass

    from hub import cycle_delivery
    from hub.cycle_commands import run_with_store
    from puskesos.commands import CommandError

    async def work(store: Any, config: Any) -> Any:
        return await cycle_delivery.forward_period(store, config, args.period, getpass.getuser())

    try:
        done = run_with_store(args.config, work)
    except ForwardError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(done.receipt, indent=2, sort_keys=True))
    return 0
