"""The district's month on both databases: freeze, submit, return, sign, forward, publish.
What a period's dataset holds is what was approved before its freeze, whatever the
verifier approves afterwards; every step refuses a second click."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub import cycle, cycle_delivery, db, review, review_queue
from hub.config import HubConfig
from hub.cycle_rules import CycleError, State, cutoff_ms
from hub.keys import generate_key_pair, load_private_key
from hub.store import HubStore
from national.publish import publish
from protocol.dataset import file_name
from tests.factories import DEFAULT_VILLAGE
from tests.hub.boxes import Box, enrol
from tests.hub.families import change, send_family
from tests.hub.test_review import downlink_values
from tests.national.receiver import ServedReceiver

DISTRICT = DEFAULT_VILLAGE[:4]
OTHER_VILLAGE = "3201022002"
PERIOD, NEXT = "2026-11", "2026-12"
CUTOFF = cutoff_ms(PERIOD, 17, "23:59", "Asia/Jakarta")


class Clock:
    """The hub's wall clock, moved by the test."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(CUTOFF - 86_400_000)


@pytest.fixture
def store(hub_store: HubStore, clock: Clock) -> HubStore:
    return HubStore(hub_store.engine, node="hub-1", max_clock_drift_ms=300_000, clock=clock)


@pytest.fixture
def config(tmp_path: Path) -> HubConfig:
    folder = tmp_path / "hub"
    folder.mkdir()
    generate_key_pair(folder / "signing.key")
    return HubConfig(district=DISTRICT, data_dir=folder)


def dataset(period_: cycle.Period, entity: str) -> dict[str, dict]:
    path = Path(period_.dataset) / file_name(entity, "jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    return {item["id"]: item["values"] for item in map(json.loads, lines)}


async def approve(store: HubStore, household: str, period: str = PERIOD) -> None:
    await review.decide(store, household, "disetujui", "", "verif", period=period)


async def sign_off(store: HubStore, config: HubConfig, period: str) -> cycle.Period:
    await cycle.submit(store, period, "verif")
    return await cycle.sign(store, config, period, "pimpinan")


async def test_an_approval_after_the_freeze_counts_for_the_next_period_only(store, config, clock):
    box = Box("edge-a")
    await enrol(store, box)
    household, (head,) = await send_family(store, box)
    late, _ = await send_family(store, box, head="Budi")
    await approve(store, household)
    assert (await cycle.ensure_current(store, config, clock.now)).period == PERIOD

    frozen = await cycle.freeze(store, config, PERIOD, "verif")
    assert frozen.state is State.FROZEN and frozen.frozen_by == "verif"
    assert frozen.villages[0].totals == {
        "households": 1,
        "members": 1,
        "added": 1,
        "changed": 0,
        "moved_or_deceased": 0,
        "rejected": 0,
    }
    # Frozen early: decisions now count for the next month.
    assert (await cycle.ensure_current(store, config, clock.now)).period == NEXT
    with pytest.raises(review.ReviewError) as locked:
        await approve(store, late, PERIOD)
    assert locked.value.code == "period_locked"

    # After the freeze: a new household approved, and a change to an approved one
    # (copy-on-write keeps the frozen values for this period's export).
    await approve(store, late, NEXT)
    await change(store, box, head, "member", occupation="Petani")
    await approve(store, household, NEXT)
    async with store.engine.connect() as conn:
        kept = (await conn.execute(sa.select(db.snapshot_rows.c.record_id))).scalars().all()
    assert kept == [head]

    signed = await sign_off(store, config, PERIOD)
    assert signed.state is State.SIGNED and signed.signed_by == "pimpinan"
    assert set(dataset(signed, "household")) == {household}
    assert dataset(signed, "member")[head]["occupation"] == "Buruh harian lepas"
    assert not (Path(signed.dataset) / file_name("complaint", "jsonl")).exists()

    clock.now = cutoff_ms(NEXT, 17, "23:59", "Asia/Jakarta") + 1
    await cycle.sweep(store, config)  # the cut-off passed: frozen by the system
    following = await cycle.get(store.engine, NEXT)
    assert following.state is State.FROZEN and following.frozen_by == cycle.SYSTEM
    assert following.villages[0].totals["changed"] == 1
    assert following.villages[0].totals["added"] == 1
    signed_next = await sign_off(store, config, NEXT)
    assert set(dataset(signed_next, "household")) == {household, late}
    assert dataset(signed_next, "member")[head]["occupation"] == "Petani"


async def test_a_returned_village_is_decided_again_and_resubmitted_as_of_then(store, config):
    here, there = Box("edge-a"), Box("edge-b", village=OTHER_VILLAGE)
    await enrol(store, here, there)
    mine, _ = await send_family(store, here)
    theirs, _ = await send_family(store, there)
    await approve(store, mine)
    await cycle.freeze(store, config, PERIOD, "verif")
    await cycle.submit(store, PERIOD, "verif")

    with pytest.raises(CycleError) as no_note:
        await cycle.return_villages(store, PERIOD, [OTHER_VILLAGE], " ", "pimpinan")
    assert no_note.value.code == "note_required"
    returned = await cycle.return_villages(
        store, PERIOD, [OTHER_VILLAGE], "Data belum diperiksa", "pimpinan"
    )
    assert returned.state is State.FROZEN and returned.returned == (OTHER_VILLAGE,)
    with pytest.raises(CycleError):
        await cycle.sign(store, config, PERIOD, "pimpinan")

    await approve(store, theirs)  # the returned village may be decided for this period
    resubmitted = await cycle.submit(store, PERIOD, "verif")
    assert resubmitted.returned == ()
    totals = {v.village: v.totals["households"] for v in resubmitted.villages}
    assert totals == {DEFAULT_VILLAGE: 1, OTHER_VILLAGE: 1}
    signed = await cycle.sign(store, config, PERIOD, "pimpinan")
    assert set(dataset(signed, "household")) == {mine, theirs}


async def test_wrong_and_double_steps_are_refused_and_each_step_is_audited(store, config):
    with pytest.raises(CycleError) as unknown:
        await cycle.submit(store, PERIOD, "verif")
    assert unknown.value.code == "unknown_period"
    await cycle.freeze(store, config, PERIOD, "verif")
    with pytest.raises(CycleError) as twice:
        await cycle.freeze(store, config, PERIOD, "verif")
    assert twice.value.code == "wrong_state" and "Dibekukan" in twice.value.message
    with pytest.raises(CycleError):
        await cycle.sign(store, config, PERIOD, "pimpinan")
    await cycle.submit(store, PERIOD, "verif")
    with pytest.raises(CycleError):
        await cycle.submit(store, PERIOD, "verif")
    await cycle.sign(store, config, PERIOD, "pimpinan")
    with pytest.raises(CycleError):
        await cycle.sign(store, config, PERIOD, "pimpinan")
    async with store.engine.connect() as conn:
        actions = (await conn.execute(sa.select(db.audit.c.action))).scalars().all()
    assert actions == ["cycle.freeze", "cycle.submit", "cycle.sign", "cycle.sign"]


async def test_signing_without_the_district_key_is_refused_and_changes_nothing(
    store, config, tmp_path
):
    await cycle.freeze(store, config, PERIOD, "verif")
    await cycle.submit(store, PERIOD, "verif")
    keyless = replace(config, signing_key_file=str(tmp_path / "missing.key"))
    with pytest.raises(CycleError) as refused:
        await cycle.sign(store, keyless, PERIOD, "pimpinan")
    assert refused.value.code == "no_key"
    assert "Minta TI kabupaten" in refused.value.message  # the leader learns whom to ask
    period = await cycle.get(store.engine, PERIOD)
    assert period.state is State.LEADER_REVIEW and period.signed_ms is None


async def test_signing_on_a_hub_without_its_district_tells_the_leader_whom_to_ask(store, config):
    await cycle.freeze(store, config, PERIOD, "verif")
    await cycle.submit(store, PERIOD, "verif")
    with pytest.raises(CycleError) as refused:
        await cycle.sign(store, replace(config, district=""), PERIOD, "pimpinan")
    # The leader reads who must do what, not the name of a configuration key.
    assert "Minta TI kabupaten" in refused.value.message
    assert "hub.district" not in refused.value.message
    period = await cycle.get(store.engine, PERIOD)
    assert period.state is State.LEADER_REVIEW and period.signed_ms is None


@pytest.fixture
def receiver(tmp_path: Path):
    served = ServedReceiver(tmp_path / "national")
    served.start()
    yield served
    served.stop()


async def test_a_signed_period_is_forwarded_once_then_its_published_deciles_go_down(
    store, config, receiver, tmp_path
):
    box = Box("edge-a")
    await enrol(store, box)
    household, _ = await send_family(store, box)
    await approve(store, household)
    await cycle.freeze(store, config, PERIOD, "verif")
    await sign_off(store, config, PERIOD)

    token = receiver.add_district(DISTRICT, config.path(config.signing_key_file))
    (config.data_dir / "national.token").write_text(token + "\n", encoding="utf-8")
    (config.data_dir / "national.pub").write_bytes(receiver.public_key_pem)
    config = replace(
        config,
        national_url=receiver.url,
        national_token_file="national.token",
        national_key_file="national.pub",
    )
    assert await cycle_delivery.forward_due(store, config, store.wall()) == [PERIOD]
    forwarded = await cycle.get(store.engine, PERIOD)
    assert forwarded.state is State.FORWARDED and forwarded.receipt["receipt"]["period"] == PERIOD
    assert (
        await cycle_delivery.forward_due(store, config, store.wall()) == []
    )  # nothing due any more
    again = await cycle_delivery.forward_period(
        store, config, PERIOD, "admin"
    )  # by hand: stored once
    assert again.receipt == forwarded.receipt

    published = tmp_path / "published.jsonl"
    publish(
        receiver.data_dir,
        DISTRICT,
        PERIOD,
        key=load_private_key(receiver.data_dir / "receiver.key"),
        out=published,
        now_ms=store.wall(),
    )
    (tmp_path / "tampered.jsonl").write_bytes(
        published.read_bytes().replace(b'"decile":', b'"decile": ')
    )
    (tmp_path / "tampered.jsonl.sig").write_bytes((tmp_path / "published.jsonl.sig").read_bytes())
    with pytest.raises(CycleError) as bad:
        await cycle_delivery.import_published(store, config, tmp_path / "tampered.jsonl", "admin")
    assert bad.value.code == "bad_signature"

    assert await cycle_delivery.import_published(store, config, published, "admin") == 1
    done = await cycle.get(store.engine, PERIOD)
    assert done.state is State.PUBLISHED and done.published_count == 1
    values = await downlink_values(store, "edge-a", household)
    assert 1 <= values["decile"] <= 10 and values["decile_period"] == PERIOD
    assert isinstance(values["eligible_programmes"], list)
    assert await review_queue.queue(store.engine) == []  # a hub write is nothing to review


def test_an_operator_runs_the_cycle_from_the_command_line(tmp_path):
    from puskesos.fleet import puskesos, run_puskesos

    hub_config = tmp_path / "hub.toml"
    puskesos("hub", "init", "--config", str(hub_config), "--data-dir", str(tmp_path / "data"))
    text = hub_config.read_text(encoding="utf-8").replace(
        'district = ""', f'district = "{DISTRICT}"'
    )
    hub_config.write_text(text, encoding="utf-8")
    puskesos("hub", "keys", "init", "--config", str(hub_config))
    at = ("--config", str(hub_config))

    for username, role in (("verif", "verifikator"), ("bupati", "pimpinan")):
        puskesos(
            "hub", "user", "add", "--username", username, "--role", role,
            "--full-name", username.title(), *at, stdin="sandi-yang-panjang-1\n",
        )  # fmt: skip

    current = json.loads(puskesos("hub", "cycle", "status", *at))
    assert current["state"] == "terbuka"
    period = current["period"]
    refused = run_puskesos("hub", "forward", "--period", period, *at)
    assert refused.returncode != 0 and "belum ditandatangani" in refused.stderr
    # The audit trail names a real person who may take the step, as on the Siklus page.
    nobody = run_puskesos("hub", "cycle", "freeze", "--period", period, "--as", "siapa", *at)
    assert nobody.returncode != 0 and "unknown_actor" in nobody.stderr
    wrong = run_puskesos("hub", "cycle", "freeze", "--period", period, "--as", "bupati", *at)
    assert wrong.returncode != 0 and "forbidden" in wrong.stderr
    puskesos("hub", "cycle", "freeze", "--period", period, "--as", "verif", *at)
    twice = run_puskesos("hub", "cycle", "freeze", "--period", period, "--as", "verif", *at)
    assert twice.returncode != 0 and "wrong_state" in twice.stderr
    puskesos("hub", "cycle", "submit", "--period", period, "--as", "verif", *at)
    signed = json.loads(puskesos("hub", "cycle", "sign", "--period", period, "--as", "bupati", *at))
    assert signed["state"] == "ditandatangani" and signed["signed_by"] == "bupati"
    assert Path(signed["dataset"]).name == f"{DISTRICT}-{period}"
