"""Downloads of the box's lists as XLSX or CSV (``/rumah-tangga.xlsx``, ``/pengaduan.csv``,
...), with the list's current filter, through :mod:`puskesos.export`.

NIK and KK are masked unless the person may read the audit trail and a person's data
report (:data:`edge.auth.AUDITORS`); every download writes one audit row first, so no
list leaves the box unrecorded (and none leaves while the disk is too full to record it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from aiohttp import web

from edge import services
from edge.auth import AUDITORS
from edge.records import AuditEntry, Record, head_of
from edge.web.app import CONFIG, STORE, USER, actor, local_today
from edge.web.routing import ALL_ROLES, RouteTable
from edge.web.ui_posyandu import GROUPS, MBG_GROUPS, age_text, mbg_list, month_view
from edge.web.ui_vulnerable import register_view, shown_value
from protocol.entities import (
    COMPLAINT,
    HOUSEHOLD,
    LAYANAN,
    MEMBER,
    PROPOSAL,
    REFERRAL,
    SERVICE_TYPES,
    SPM_FIELDS,
)
from protocol.posyandu import Flag
from protocol.schema import EntitySchema, FieldSpec
from protocol.vulnerable import REGISTERS
from puskesos.export import (
    FORMATS,
    ROW_LIMIT,
    Cell,
    Table,
    audit_detail,
    download,
    field_cell,
    file_name,
    local_time,
    record_fields,
)
from puskesos.search import holds_number

__all__ = ["routes"]

routes = RouteTable()

#: What a builder gives: the table and the filter it honoured (as the audit row shows it).
Built = tuple[Table, dict[str, str]]
Builder = Callable[[web.Request, bool], Awaitable[Built]]

_HOUSEHOLD_FIELDS = record_fields(HOUSEHOLD)
_MEMBER_FIELDS = record_fields(MEMBER)
_PROPOSAL_FIELDS = record_fields(PROPOSAL)
_COMPLAINT_FIELDS = record_fields(COMPLAINT)
_REFERRAL_FIELDS = record_fields(REFERRAL)
#: A reporter who asked to stay anonymous stays so in a spreadsheet too.
_ANONYMOUS = ("reporter_name", "reporter_contact")


def _export(
    path: str,
    list_name: str,
    entity: EntitySchema,
    what: str,
    *,
    numbers: Literal["masked", "by_role", "none"] = "masked",
) -> Callable[[Builder], Builder]:
    """Serve ``build``'s table (``what`` it lists) at ``path.xlsx`` and ``path.csv`` for
    every role, audited. ``list_name`` may name the path's parameters
    (``kelompok-rentan-{register}``). ``numbers``: how the list holds NIK/KK, as its
    audit row says: masked unless the role may read them (the default), left out unless
    the role may (``by_role``), or never (``none``, a list of counts)."""

    def decorate(build: Builder) -> Builder:
        async def handler(request: web.Request) -> web.StreamResponse:
            fmt = request.path.rsplit(".", 1)[1]
            full = request[USER].role in AUDITORS
            table, filters = await build(request, full)
            who = actor(request)
            listed = list_name.format_map(request.match_info)
            shown = None if numbers == "none" or (numbers == "by_role" and not full) else full
            detail = audit_detail(listed, filters, len(table.rows), full=shown, fmt=fmt)
            await request.app[STORE].audit(
                AuditEntry(who.username, "export", entity.name, None, detail, who.address)
            )
            name = file_name(listed, request.app[CONFIG].village, local_today(request), fmt)
            return await download(request, table, fmt, name)

        for fmt in FORMATS:
            summary = f"{what} as {fmt.upper()} (the list's filter; audited)"
            routes.get(f"{path}.{fmt}", roles=ALL_ROLES, summary=summary)(handler)
        return build

    return decorate


async def _searched(
    request: web.Request,
) -> tuple[list[Record], dict[str, list[Record]], dict[str, str]]:
    """The households the households list's text search finds, their members, and the
    filter for the audit row. A NIK/KK number is never taken from a URL (its page links no
    download): refused, not searched."""
    text = request.query.get("q", "").strip()[:100]
    if holds_number(text):
        raise web.HTTPBadRequest(text="Hasil pencarian NIK/KK tidak dapat diunduh.")
    store = request.app[STORE]
    found, _ = await services.find_records(
        store, actor(request), "household", text=text, limit=ROW_LIMIT
    )
    return found, await store.related_to_each("member", [h.id for h in found]), {"q": text}


def _cells(fields: Sequence[FieldSpec], record: Record, full: bool) -> list[Cell]:
    return [field_cell(spec, record.get(spec.name), full=full) for spec in fields]


@_export("/rumah-tangga", "rumah-tangga", HOUSEHOLD, "Households")
async def households(request: web.Request, full: bool) -> Built:
    found, members, shown = await _searched(request)
    timezone = request.app[CONFIG].timezone
    nik = MEMBER.fields["nik"]
    rows = []
    for household in found:
        head = head_of(members[household.id])
        rows.append(
            [
                head.get("name") if head else None,
                field_cell(nik, head.get("nik"), full=full) if head else None,
                *_cells(_HOUSEHOLD_FIELDS, household, full),
                len(members[household.id]),
                local_time(household.updated_ms, timezone),
            ]
        )
    headers = [
        "Kepala keluarga",
        "NIK kepala keluarga",
        *(spec.label for spec in _HOUSEHOLD_FIELDS),
        "Jumlah anggota",
        "Terakhir diubah",
    ]
    return Table("Rumah tangga", headers, rows), shown


@_export("/anggota", "anggota-keluarga", MEMBER, "Members of the listed households")
async def members(request: web.Request, full: bool) -> Built:
    """Every member of the households the households list shows (with its search)."""
    found, by_household, shown = await _searched(request)
    kk = HOUSEHOLD.fields["kk_number"]
    rows = [
        [field_cell(kk, household.get("kk_number"), full=full), *_cells(_MEMBER_FIELDS, m, full)]
        for household in found
        for m in by_household[household.id]
    ]
    headers = [kk.label, *(spec.label for spec in _MEMBER_FIELDS)]
    return Table("Anggota keluarga", headers, rows), shown


def _filters(request: web.Request, entity: str) -> dict[str, str]:
    return {name: request.query.get(name, "") for name in services.FILTERS[entity]}


@_export("/usulan", "usulan", PROPOSAL, "Proposals")
async def proposals(request: web.Request, full: bool) -> Built:
    store = request.app[STORE]
    filters = _filters(request, "proposal")
    found, _ = await services.find_records(
        store, actor(request), "proposal", filters=filters, limit=ROW_LIMIT
    )
    households = await store.get_each("household", (p.household_id or "" for p in found))
    members = await store.related_to_each("member", list(households))
    kk = HOUSEHOLD.fields["kk_number"]
    rows = []
    for proposal in found:
        household = households.get(proposal.household_id or "")
        head = head_of(members[household.id]) if household else None
        rows.append(
            [
                head.get("name") if head else None,
                field_cell(kk, household.get("kk_number"), full=full) if household else None,
                *_cells(_PROPOSAL_FIELDS, proposal, full),
            ]
        )
    headers = ["Kepala keluarga", kk.label, *(spec.label for spec in _PROPOSAL_FIELDS)]
    return Table("Usulan", headers, rows), filters


@_export("/pengaduan", "pengaduan", COMPLAINT, "Complaints")
async def complaints(request: web.Request, full: bool) -> Built:
    filters = _filters(request, "complaint")
    found, _ = await services.find_records(
        request.app[STORE], actor(request), "complaint", filters=filters, limit=ROW_LIMIT
    )
    rows = []
    for complaint in found:
        cells = _cells(_COMPLAINT_FIELDS, complaint, full)
        if complaint.get("anonymous"):
            for index, spec in enumerate(_COMPLAINT_FIELDS):
                if spec.name in _ANONYMOUS:
                    cells[index] = "Dirahasiakan"
        rows.append(cells)
    headers = [spec.label for spec in _COMPLAINT_FIELDS]
    return Table("Pengaduan", headers, rows), filters


@_export("/rujukan", "rujukan", REFERRAL, "Referrals")
async def referrals(request: web.Request, full: bool) -> Built:
    filters = _filters(request, "referral")
    found, _ = await services.find_records(
        request.app[STORE], actor(request), "referral", filters=filters, limit=ROW_LIMIT
    )
    rows = [_cells(_REFERRAL_FIELDS, referral, full) for referral in found]
    return Table("Rujukan", [spec.label for spec in _REFERRAL_FIELDS], rows), filters


@_export(
    "/kelompok-rentan/{register}", "kelompok-rentan-{register}", MEMBER,
    "A vulnerable-group register (its RT/RW filter)",
)  # fmt: skip
async def vulnerable_group(request: web.Request, full: bool) -> Built:
    """The register's rows as its page lists them, with address and what is missing."""
    view = await register_view(request, whole=True)
    person_fields = [MEMBER.fields[name] for name in ("name", "nik", "sex", "birth_date")]
    place_fields = [HOUSEHOLD.fields[name] for name in ("rt", "rw", "address")]
    shows = view.register.shows
    rows: list[list[Cell]] = []
    for row in view.rows:
        person, verdict = row.entry.person, row.entry.verdict
        values = person.values if person is not None else {}
        missing = ", ".join(spec.label for spec in verdict.missing)
        rows.append(
            [
                *(field_cell(spec, values.get(spec.name), full=full) for spec in person_fields),
                person.age if person is not None else None,
                *(field_cell(s, row.household.values.get(s.name), full=full) for s in place_fields),
                row.household.head or None,
                *(field_cell(spec, shown_value(spec, row)[1], full=full) for spec in shows),
                f"Belum lengkap: {missing} belum diisi" if missing else "Termasuk",
            ]
        )
    headers = [
        *(spec.label for spec in person_fields), "Umur (tahun)",
        *(spec.label for spec in place_fields), "Kepala keluarga",
        *(spec.label for spec in shows), "Keterangan",
    ]  # fmt: skip
    return Table(view.register.title, headers, rows), view.filters


@_export(
    "/posyandu/mbg", "sasaran-mbg-3b", MEMBER,
    "MBG 3B targets for the meal provider (NIK only for a role that may read it)",
    numbers="by_role",
)  # fmt: skip
async def mbg_targets(request: web.Request, full: bool) -> Built:
    """What a meal provider (SPPG) needs and no more: who, which target, age, where, the
    last weighing and flags; the NIK only when the role may read it in full."""
    found = await mbg_list(request)
    nik = MEMBER.fields["nik"]
    rows: list[list[Cell]] = []
    for code, attendee in found.rows:
        weighed = found.weighings.get(attendee.id)
        values = attendee.person.values
        rows.append(
            [
                values.get("name"),
                *([field_cell(nik, values.get("nik"), full=True)] if full else []),
                MBG_GROUPS[code],
                age_text(attendee, found.day.day),
                attendee.household.values.get("rt"),
                attendee.household.values.get("rw"),
                attendee.household.values.get("address"),
                field_cell(LAYANAN.fields["service_date"], weighed[0], full=False)
                if weighed
                else None,
                weighed[1] if weighed else None,
                " ".join(flag.value for flag in attendee.flags) or None,
            ]
        )
    headers = [
        "Nama", *(["NIK"] if full else []), "Sasaran", "Umur", "RT", "RW", "Alamat",
        "Tanggal penimbangan terakhir", "Berat terakhir (kg)", "Tanda",
    ]  # fmt: skip
    return Table("Sasaran MBG 3B", headers, rows), found.filters


@_export(
    "/posyandu/laporan", "laporan-posyandu", LAYANAN, "The post's monthly report (counts)",
    numbers="none",
)  # fmt: skip
async def posyandu_report(request: web.Request, full: bool) -> Built:
    """The report's counts, one row each, as its page groups them."""
    month = await month_view(request)
    report = month.report
    rows: list[list[Cell]] = [
        ["Bidang SPM", label, report.by_spm[code], None] for code, label in SPM_FIELDS.items()
    ]
    rows += [
        ["Jenis layanan", kind.label, report.by_type[code], None]
        for code, kind in SERVICE_TYPES.items()
    ]
    for code in GROUPS:
        served, expected = report.groups[code]
        rows.append(["Sasaran dilayani", REGISTERS[code].title, served, expected])
    rows += [["Tanda", flag.label, report.flags[flag], None] for flag in Flag]
    rows.append(["Rujukan", "Rujukan dibuat", report.referrals, None])
    rows.append(["Jumlah", "Semua layanan", report.services, None])
    headers = ["Bagian", "Uraian", f"Jumlah {report.period}", "Sasaran"]
    return Table(f"Laporan Posyandu {report.period}", headers, rows), {"bulan": report.period}
