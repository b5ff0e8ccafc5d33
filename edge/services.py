"""What village staff do, as plain async functions used by the UI and the API alike.

Every function validates with :mod:`protocol.validate` (errors block, warnings need
``confirm_warnings``; while the box's own clock is not trusted, see :mod:`edge.boxtime`, a
date after ``today`` is a warning, never a refusal), then saves through
:meth:`edge.store.Store.write`, so a save is one transaction with its outbox rows and audit
rows. Nothing is ever deleted: members move or
die by status, records are withdrawn with the tombstone field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from edge.auth import APPROVERS
from edge.records import AuditEntry, Edit, Record
from edge.store import Store
from protocol.changes import Value
from protocol.entities import (
    COMPLAINT,
    ENTITIES,
    HOUSEHOLD,
    LAYANAN,
    MEMBER,
    PROPOSAL,
    RECORD_ID_KEY,
    REFERRAL,
    SERVICE_TYPES,
    VISIT,
    VISIT_PROPOSALS,
)
from protocol.identity import mask_number
from protocol.ids import uuid7
from protocol.issues import Issue, has_errors
from protocol.schema import EntitySchema
from protocol.validate import validate_fields, validate_household
from puskesos.search import Query, parse_query
from puskesos.webpages import tanggal

__all__ = [
    "Actor",
    "HouseholdView",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "PersonReport",
    "agree_proposals",
    "create_record",
    "period_of",
    "person_report",
    "save_household",
    "update_record",
    "view_household",
    "view_record",
]

#: Days a complaint may stay open before it is overdue (shown on the Beranda).
COMPLAINT_DUE_DAYS = 14
#: Proposal statuses the kepala desa may set, with the field that holds the reference.
AGREED = ("disepakati_musdes", "disepakati_sptjm")


class NotFound(LookupError):
    """The record does not exist on this box (or is of another entity)."""


class PermissionDenied(PermissionError):
    """The person's role may not do this."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, from where, with which role (for audit rows and role checks)."""

    username: str
    role: str
    address: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of a save: ``saved`` or the ``issues`` that stopped it.

    With only warnings and no confirmation, ``needs_confirmation`` is true: show them and
    ask again with ``confirm_warnings``. A saved outcome carries the warnings it was saved
    with and the id of the main record.
    """

    saved: bool
    record_id: str
    issues: list[Issue] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    @property
    def needs_confirmation(self) -> bool:
        """Only warnings stopped the save."""
        return not self.saved and bool(self.issues) and not has_errors(self.issues)


def period_of(today: date) -> str:
    """The monthly period (``YYYY-MM``) a proposal made ``today`` belongs to."""
    return f"{today.year:04d}-{today.month:02d}"


def _clean(entity: EntitySchema, values: Mapping[str, Any]) -> dict[str, Value]:
    """Only the entity's own fields; everything else a form or client sent is ignored."""
    return {name: value for name, value in values.items() if name in entity.fields}


def _new_id(store: Store) -> str:
    return uuid7(store.now_ms())


def _stop(record_id: str, issues: list[Issue], confirm_warnings: bool) -> Outcome | None:
    if has_errors(issues) or (issues and not confirm_warnings):
        return Outcome(False, record_id, issues)
    return None


async def save_household(
    store: Store,
    actor: Actor,
    *,
    household_id: str | None,
    household: Mapping[str, Any],
    members: Sequence[Mapping[str, Any]],
    today: date,
    confirm_warnings: bool = False,
) -> Outcome:
    """Create or update a household with its members, and the month's proposals.

    ``members`` lists the members to add (no ``id``) or change (with their ``id``); members
    not listed stay as they are. A new household makes an ``usulan_baru`` proposal; a member
    newly marked ``meninggal`` or ``pindah`` makes that proposal; any other change makes (or
    reuses this period's draft) ``perbaikan_data``.
    """
    current = await store.get(household_id, "household") if household_id else None
    if household_id and current is None:
        raise NotFound(household_id)
    record_id = household_id or _new_id(store)
    household_values = _clean(HOUSEHOLD, household) | {"village_code": store.village}
    existing = {m.id: m for m in await store.related("member", record_id)} if current else {}

    member_edits: list[tuple[str, dict[str, Value]]] = []
    repeated: list[Issue] = []
    for index, given in enumerate(members):
        member_id = given.get(RECORD_ID_KEY)
        if member_id is not None and member_id not in existing:
            raise NotFound(str(member_id))
        if member_id is not None and any(member_id == mid for mid, _ in member_edits):
            # Two blocks of one member: only one could be validated, both would be written.
            path = f"members[{index}].{RECORD_ID_KEY}"
            repeated.append(Issue.error(path, "invalid_value", {"field": path}))
        new_values = _clean(MEMBER, given) | {"household_id": record_id}
        if member_id is None:
            new_values.setdefault("status", "aktif")
        member_edits.append((str(member_id) if member_id else _new_id(store), new_values))

    # The household as it will stand, for the rules that span records.
    full_household = {**(current.values if current else {}), **household_values}
    full_household[RECORD_ID_KEY] = record_id
    edited = dict(member_edits)
    full_members: list[dict[str, Any]] = []
    order: list[str] = []
    for member_id, member in existing.items():
        full_members.append(
            {**member.values, **edited.pop(member_id, {}), RECORD_ID_KEY: member_id}
        )
        order.append(member_id)
    for member_id, new_values in edited.items():
        full_members.append({**new_values, RECORD_ID_KEY: member_id})
        order.append(member_id)
    niks = [m["nik"] for m in full_members if isinstance(m.get("nik"), str)]
    holders = await store.active_niks(niks)
    village_niks = {nik: mid for nik, (mid, hid) in holders.items() if hid != record_id}
    if repeated:
        return Outcome(False, record_id, repeated)
    issues = _readonly_issues(HOUSEHOLD, household_values, current.values if current else {}, "")
    for index, (member_id, new_values) in enumerate(member_edits):
        stored = existing[member_id].values if member_id in existing else {}
        issues += _readonly_issues(MEMBER, new_values, stored, f"members[{index}].")
    issues += _renumber(
        validate_household(
            full_household,
            full_members,
            today=today,
            village_niks=village_niks,
            clock_trusted=store.box_time().trusted,
        ),
        order,
        [mid for mid, _ in member_edits],
    )
    stop = _stop(record_id, issues, confirm_warnings)
    if stop is not None:
        return stop

    edits = [Edit("household", record_id, household_values)]
    edits += [Edit("member", mid, values) for mid, values in member_edits]
    edits += await _proposals_for(
        store, current, existing, record_id, household_values, member_edits, today
    )
    detail = {"warnings_confirmed": [i.code for i in issues]} if issues else {}
    saved = await store.write(
        edits,
        actor=actor.username,
        address=actor.address,
        also_audit=[
            AuditEntry(
                actor.username, "confirm_warnings", "household", record_id, detail, actor.address
            )
        ]
        if issues
        else (),
    )
    return Outcome(True, record_id, issues, saved)


def _readonly_issues(
    schema: EntitySchema, submitted: Mapping[str, Value], stored: Mapping[str, Value], prefix: str
) -> list[Issue]:
    """Fields only the hub sets (the published decile) cannot be changed from the box."""
    return [
        Issue.error(f"{prefix}{name}", "readonly", {"field": name, "label": spec.label})
        for name, spec in schema.fields.items()
        if spec.readonly and name in submitted and submitted[name] != stored.get(name)
    ]


def _renumber(issues: list[Issue], order: list[str], submitted: list[str]) -> list[Issue]:
    """Name member issues by their place in the submitted form, not in the household.

    ``validate_household`` numbers members in the order it got them (stored ones first);
    a form shows the submitted members, so ``members[i]`` must mean the i-th submitted.
    Issues of stored members not in the form are named by id (``members[id=...]``), so
    they cannot be mistaken for a submitted one.
    """
    position = {member_id: index for index, member_id in enumerate(submitted)}
    renamed = []
    for issue in issues:
        if issue.field.startswith("members["):
            index_text, _, rest = issue.field[len("members[") :].partition("]")
            member_id = order[int(index_text)]
            where = position.get(member_id, f"id={member_id}")
            issue = Issue(f"members[{where}]{rest}", issue.code, issue.level, issue.params)
        renamed.append(issue)
    return renamed


async def _proposals_for(
    store: Store,
    current: Record | None,
    existing: Mapping[str, Record],
    household_id: str,
    household_values: Mapping[str, Value],
    member_edits: Sequence[tuple[str, Mapping[str, Value]]],
    today: date,
) -> list[Edit]:
    period = period_of(today)
    kinds: list[tuple[str, str | None]] = []
    if current is None:
        kinds.append(("usulan_baru", None))
    else:
        changed = any(current.values.get(k) != v for k, v in household_values.items())
        for member_id, values in member_edits:
            before = existing.get(member_id)
            old = before.values if before else {}
            status = values.get("status")
            if (
                before is not None
                and status in ("meninggal", "pindah")
                and old.get("status") != status
            ):
                kinds.append((str(status), _departure(before.values | values)))
            elif any(old.get(k) != v for k, v in values.items()):
                changed = True
        if changed and not any(
            p.get("kind") == "perbaikan_data"
            and p.get("period") == period
            and p.get("status") == "draf"
            for p in await store.related("proposal", household_id)
        ):
            kinds.append(("perbaikan_data", None))
    return [
        Edit(
            "proposal",
            _new_id(store),
            {"household_id": household_id, "kind": kind, "period": period, "status": "draf"}
            | ({"description": description} if description else {}),
        )
        for kind, description in kinds
    ]


def _departure(member: Mapping[str, Any]) -> str:
    """Who a "meninggal" / "pindah" proposal is about, for the musdes list: ``Siti Aminah
    (Anak), 3 Desember 2026, SK/2026/17``."""
    relation = MEMBER.fields["relation_to_head"].label_of(member.get("relation_to_head"))
    when = member.get("status_date")
    parts = [
        f"{member.get('name') or 'Anggota'} ({relation})" if relation else str(member.get("name")),
        tanggal(when) if when else "tanggal belum diisi",
    ]
    if member.get("status_document"):
        parts.append(str(member["status_document"]))
    return ", ".join(parts)


async def create_record(
    store: Store,
    actor: Actor,
    entity: str,
    values: Mapping[str, Any],
    *,
    today: date,
    confirm_warnings: bool = False,
) -> Outcome:
    """Create a proposal, complaint, referral, visit or Posyandu service (households go
    through save_household).

    Complaints start ``baru``, received today and due in :data:`COMPLAINT_DUE_DAYS` days
    unless given; a referral made from a complaint moves the complaint to ``dirujuk``. A
    visit is dated today and made by ``actor`` unless given; its outcome becomes the
    household's ``presence_status``, and a household not found, moved or dead gets the
    month's draft proposal of that kind (:func:`_visit_consequences`). A service is dated
    today, given by ``actor`` and in its type's SPM field unless given, and is about a
    member of its household.
    """
    schema = ENTITIES[entity]
    new_values = _clean(schema, values)
    if entity == COMPLAINT.name:
        new_values.setdefault("status", "baru")
        new_values.setdefault("received_date", today.isoformat())
        new_values.setdefault("due_date", (today + timedelta(days=COMPLAINT_DUE_DAYS)).isoformat())
    elif entity == "referral":
        new_values.setdefault("status", "dirujuk")
    elif entity == PROPOSAL.name:
        new_values.setdefault("status", "draf")
        new_values.setdefault("period", period_of(today))
    elif entity == VISIT.name:
        new_values.setdefault("visit_date", today.isoformat())
        new_values.setdefault("officer", actor.username)
    elif entity == LAYANAN.name:
        new_values.setdefault("service_date", today.isoformat())
        new_values.setdefault("officer", actor.username)
        kind = SERVICE_TYPES.get(str(new_values.get("service_type")))
        if kind is not None:
            new_values.setdefault("spm_field", kind.spm)
    record_id = _new_id(store)
    issues = validate_fields(
        schema, new_values, is_new=True, today=today, clock_trusted=store.box_time().trusted
    )
    issues += await _reference_issues(store, schema, new_values)
    if entity == LAYANAN.name:
        member = await store.get(str(new_values.get("member_id")), MEMBER.name)
        if member is not None and member.get("household_id") != new_values.get("household_id"):
            issues.append(Issue.error("member_id", "household_mismatch", {"field": "member_id"}))
    stop = _stop(record_id, issues, confirm_warnings)
    if stop is not None:
        return stop
    edits = [Edit(entity, record_id, new_values)]
    complaint_id = new_values.get("complaint_id")
    if entity == "referral" and isinstance(complaint_id, str):
        complaint = await store.get(complaint_id, "complaint")
        if complaint is not None and complaint.get("status") in ("baru", "diproses"):
            edits.append(Edit("complaint", complaint_id, {"status": "dirujuk"}))
    if entity == VISIT.name:
        edits += await _visit_consequences(store, new_values, today)
    saved = await store.write(edits, actor=actor.username, address=actor.address)
    return Outcome(True, record_id, issues, saved)


async def _visit_consequences(store: Store, visit: Mapping[str, Value], today: date) -> list[Edit]:
    """What a visit changes besides itself: the household's presence status, and the
    proposal a household not found, moved or dead needs (once a month)."""
    household_id = str(visit["household_id"])
    outcome = visit["outcome"]
    household = await store.get(household_id, HOUSEHOLD.name)
    edits = []
    if household is not None and household.get("presence_status") != outcome:
        edits.append(Edit(HOUSEHOLD.name, household_id, {"presence_status": outcome}))
    kind = VISIT_PROPOSALS.get(str(outcome))
    period = period_of(today)
    if kind is not None and not any(
        p.get("kind") == kind and p.get("period") == period and p.get("status") == "draf"
        for p in await store.related(PROPOSAL.name, household_id)
    ):
        note = f"Hasil kunjungan {visit['visit_date']} oleh {visit['officer']}"
        edits.append(
            Edit(
                PROPOSAL.name,
                _new_id(store),
                {
                    "household_id": household_id,
                    "kind": kind,
                    "period": period,
                    "status": "draf",
                    "description": note,
                },
            )
        )
    return edits


async def update_record(
    store: Store,
    actor: Actor,
    entity: str,
    record_id: str,
    values: Mapping[str, Any],
    *,
    today: date,
    confirm_warnings: bool = False,
) -> Outcome:
    """Change fields of a proposal, complaint or referral, along its status workflow."""
    schema = ENTITIES[entity]
    current = await store.get(record_id, entity)
    if current is None:
        raise NotFound(record_id)
    new_values = _clean(schema, values)
    if (
        entity == PROPOSAL.name
        and new_values.get("status") in AGREED
        and actor.role not in APPROVERS
    ):
        raise PermissionDenied("only the kepala desa marks proposals agreed")
    issues = validate_fields(
        schema,
        new_values,
        is_new=False,
        today=today,
        current=current.values,
        clock_trusted=store.box_time().trusted,
    )
    issues += await _reference_issues(store, schema, new_values)
    if entity == LAYANAN.name:
        member = await store.get(str(new_values.get("member_id")), MEMBER.name)
        if member is not None and member.get("household_id") != new_values.get("household_id"):
            issues.append(Issue.error("member_id", "household_mismatch", {"field": "member_id"}))
    stop = _stop(record_id, issues, confirm_warnings)
    if stop is not None:
        return stop
    saved = await store.write(
        [Edit(entity, record_id, new_values)], actor=actor.username, address=actor.address
    )
    return Outcome(True, record_id, issues, saved)


async def agree_proposals(
    store: Store,
    actor: Actor,
    proposal_ids: Sequence[str],
    *,
    how: str,
    reference: str,
    today: date,
) -> Outcome:
    """The kepala desa marks draft proposals agreed by the village deliberation (``how`` =
    ``disepakati_musdes``, with the minutes' reference) or by an SPTJM statement."""
    if actor.role not in APPROVERS:
        raise PermissionDenied("only the kepala desa marks proposals agreed")
    if how not in AGREED:
        params = {"field": "status", "label": "Status", "value": how}
        return Outcome(False, "", [Issue.error("status", "unknown_choice", params)])
    if not proposal_ids:
        return Outcome(False, "", [Issue.error("proposal", "no_proposal_chosen")])
    edits = []
    issues: list[Issue] = []
    for proposal_id in proposal_ids:
        proposal = await store.get(proposal_id, "proposal")
        if proposal is None:
            raise NotFound(proposal_id)
        values = {"status": how, "agreement_ref": reference}
        issues += validate_fields(
            PROPOSAL, values, is_new=False, today=today, current=proposal.values
        )
        edits.append(Edit("proposal", proposal_id, values))
    if has_errors(issues):
        return Outcome(False, "", issues)
    saved = await store.write(edits, actor=actor.username, address=actor.address)
    return Outcome(True, edits[0].record_id, issues, saved)


async def _reference_issues(
    store: Store, schema: EntitySchema, values: Mapping[str, Value]
) -> list[Issue]:
    """A reference field must name an existing record of the right entity on this box."""
    issues = []
    for name, value in values.items():
        spec = schema.fields[name]
        if spec.ref and isinstance(value, str) and await store.get(value, spec.ref) is None:
            issues.append(Issue.error(name, "invalid_ref", {"field": name, "label": spec.label}))
    return issues


@dataclass(frozen=True, slots=True)
class HouseholdView:
    """A household with everything hanging off it, as its detail page and API show it."""

    household: Record
    members: list[Record]
    proposals: list[Record]
    complaints: list[Record]
    #: Field visits, the latest first.
    visits: list[Record]
    #: Posyandu services of its members, the latest first.
    services: list[Record]


async def view_household(store: Store, actor: Actor, household_id: str) -> HouseholdView:
    """Read a household with its members, proposals, complaints, visits and services, and
    record in the audit trail that ``actor`` saw its personal data (UU 27/2022 processing
    record)."""
    household = await store.get(household_id, "household")
    if household is None:
        raise NotFound(household_id)
    await store.audit(
        AuditEntry(actor.username, "view", "household", household_id, {}, actor.address)
    )
    return HouseholdView(
        household,
        await store.related("member", household_id),
        await store.related("proposal", household_id),
        await store.related("complaint", household_id),
        sorted(
            await store.related(VISIT.name, household_id),
            key=lambda v: (str(v.get("visit_date")), v.created_ms),
            reverse=True,
        ),
        sorted(
            await store.related(LAYANAN.name, household_id),
            key=lambda s: (str(s.get("service_date")), s.created_ms),
            reverse=True,
        ),
    )


@dataclass(frozen=True, slots=True)
class PersonReport:
    """What the box holds about one person and how it was processed (UU 27/2022: a person
    may ask): the member, the household, what hangs off them, and the audit trail."""

    household: Record
    member: Record
    proposals: list[Record]
    complaints: list[Record]
    referrals: list[Record]
    visits: list[Record]
    services: list[Record]
    #: Audit rows of the member and the household, and the searches that showed them.
    trail: list[Any]


async def person_report(
    store: Store, actor: Actor, household_id: str, member_id: str
) -> PersonReport:
    """The data report of member ``member_id`` of household ``household_id`` (or
    :class:`NotFound`), recorded in the audit trail as made by ``actor``."""
    household = await store.get(household_id, "household")
    member = await store.get(member_id, "member")
    if household is None or member is None or member.get("household_id") != household_id:
        raise NotFound(member_id)
    await store.audit(
        AuditEntry(actor.username, "pdp_report", "member", member_id, {}, actor.address)
    )
    referrals, _ = await store.list(
        REFERRAL.name, where=[store.field_equals("member_id", member_id)], limit=200
    )
    return PersonReport(
        household,
        member,
        await store.related("proposal", household_id),
        await store.related("complaint", household_id),
        referrals,
        await store.related(VISIT.name, household_id),
        [
            s
            for s in await store.related(LAYANAN.name, household_id)
            if s.get("member_id") == member_id
        ],
        await store.person_trail(member_id, household_id),
    )


async def view_record(store: Store, actor: Actor, entity: str, record_id: str) -> Record:
    """Read one record to show it in full, and record that ``actor`` saw it."""
    record = await store.get(record_id, entity)
    if record is None:
        raise NotFound(record_id)
    await store.audit(AuditEntry(actor.username, "view", entity, record_id, {}, actor.address))
    return record


#: Fields lists may be filtered by (entity → field names); enum fields only.
FILTERS: Mapping[str, tuple[str, ...]] = {
    "household": ("presence_status",),
    "member": ("status", "sex", "relation_to_head"),
    "proposal": ("status", "kind", "period"),
    "complaint": ("status", "category", "channel"),
    "referral": ("status", "destination"),
    "visit": ("outcome",),
    "layanan": ("service_type", "spm_field", "officer_role"),
}


async def find_records(
    store: Store,
    actor: Actor,
    entity: str,
    *,
    filters: Mapping[str, str] | None = None,
    text: str = "",
    offset: int = 0,
    limit: int = 25,
) -> tuple[list[Record], int]:
    """A page of records for a list or the API: filtered by the entity's :data:`FILTERS`
    (unknown filter names are ignored) and, for households, searched by NIK, family-card
    number, part of a member's name, address or RT/RW (:func:`puskesos.search.parse_query`). A
    search by NIK or family-card number is audited (it is a lookup of personal data)."""
    query = parse_query(text) if entity == "household" else Query()
    if query:
        found, total = await store.search_households(query, offset=offset, limit=limit)
        if query.number:
            # The number masked (a trail is read by many), and whose data the answer showed:
            # a person's data report lists the searches that found them.
            detail = {"nik_or_kk": mask_number(query.number), "shown": [r.id for r in found]}
            await store.audit(
                AuditEntry(actor.username, "search", "household", None, detail, actor.address)
            )
        return found, total
    conditions = []
    for name, value in (filters or {}).items():
        if name in FILTERS.get(entity, ()) and value:
            conditions.append(store.field_equals(name, value))
    return await store.list(entity, where=conditions, offset=offset, limit=limit)
