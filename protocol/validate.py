"""Validation of what a person types, in two levels.

ERRORS block a save. WARNINGS are shown and must be confirmed, then saved with the record.
A NIK is for life and is never corrected, so anything odd about one (an old or unknown
kecamatan prefix, a birth date or sex that disagrees with the person's) is a warning.

Every function is pure, takes ``today`` where time matters, and never raises on bad input:
a value of the wrong type is an :class:`Issue` like any other. Messages come from
:mod:`protocol.messages`; the NIK, KK and region checks live in :mod:`protocol.identity`
and :class:`Issue` in :mod:`protocol.issues` (both re-exported here).

``clock_trusted=False`` says that ``today`` is only the best time a device knows while its
own clock is wrong (a box without an RTC booting in 1970): a lower bound, not a fact. Then
nothing is refused for being after it (a warning ``date_after_box_clock`` instead of the
error ``date_in_future``; the pregnancy age is a warning), because a save must never fail
on a device's clock.

Per-field rules run on the values an edit writes; rules that relate several fields look at
the record as it will be after the edit (``current`` overlaid with ``values``) and run when
the edit touches one of their fields. An empty form input for a non-text field must reach
validation as ``None`` (cleared), as on the wire: ``""`` is not a date.

Rules beyond the shape of each field:

- member: the NIK against birth date and sex (warnings); pregnancy only for a woman aged
  10–55 (errors); pregnancy of a member who moved or died is a warning only, so that
  recording a death or a move is never blocked by a flag someone forgot to clear; a birth
  date not in the future (error), nor more than 110 years ago (warning).
- complaint: received not in the future; due date not before the date received (errors);
  an anonymous reporter with a name (warning: the name will not be shown).
- referral: about a complaint or a member (error).
- visit: the visit date not in the future (error).
- layanan: the service date not in the future; the service type belongs to the SPM field
  chosen; measurements only for a type that records them, within its range (errors,
  :func:`protocol.posyandu.service_issues`).
- status workflows (:data:`protocol.entities.WORKFLOWS`): a new record starts in an initial
  status; an update moves only along the allowed transitions; a status that needs a
  reason (a refusal, a returned proposal) has it (errors).
- household as a whole (:func:`validate_household`): one head among active members; a NIK
  once in the household and once in the village (errors).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from typing import cast

from protocol.entities import HOUSEHOLD, MEMBER, RECORD_ID_KEY, WORKFLOWS
from protocol.identity import nik_mismatches, validate_kk, validate_nik, validate_region
from protocol.issues import Issue, Level, has_errors, warnings_only
from protocol.posyandu import service_issues
from protocol.schema import EntitySchema, FieldKind, FieldSpec, wire_value_problem

__all__ = [
    "PREGNANCY_AGE",
    "Issue",
    "Level",
    "NewRecordChecks",
    "age_on",
    "as_date",
    "has_errors",
    "validate_fields",
    "validate_household",
    "validate_kk",
    "validate_nik",
    "validate_region",
    "warnings_only",
]

#: Ages (in completed years) at which a pregnancy may be recorded.
PREGNANCY_AGE = (10, 55)
#: Above this age a birth date is probably mistyped (a warning).
_MAX_PLAUSIBLE_AGE = 110
#: Date fields that describe something that already happened.
_PAST_ONLY = frozenset({"birth_date", "received_date", "visit_date", "status_date", "service_date"})
_HEAD = "kepala_keluarga"
_INACTIVE = frozenset({"pindah", "meninggal"})
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Today:
    """Today, and whether it is known for sure or only a lower bound (a device's clock is
    wrong, see the module docstring)."""

    today: date
    trusted: bool


# --- records -------------------------------------------------------------------------------

#: Field kinds whose check :class:`NewRecordChecks` remembers per value: few distinct
#: values, repeated from record to record (codes, villages, dates, numbers). Not free
#: text, NIKs or family-card numbers, which are mostly each record's own.
_REMEMBERED_KINDS = frozenset(
    {
        FieldKind.ENUM,
        FieldKind.ENUM_SET,
        FieldKind.BOOL,
        FieldKind.INT,
        FieldKind.DECIMAL,
        FieldKind.DATE,
        FieldKind.PERIOD,
        FieldKind.REF,
        FieldKind.REGION,
    }
)
#: Values remembered per field at most (then forgotten, and remembered anew).
_REMEMBERED_VALUES = 20_000
#: An entity's fields as :class:`NewRecordChecks` goes through them: name, spec, whether
#: required, and the findings remembered per (type, value), for a field whose kind is
#: one of :data:`_REMEMBERED_KINDS` (else ``None``).
_FieldPlan = tuple[tuple[str, FieldSpec, bool, dict[tuple[type, object], list[Issue]] | None], ...]


class NewRecordChecks:
    """:func:`validate_fields` of new records (``is_new=True``, no ``current``), many of
    them on one day: a bulk import of the district's registry. The same issues; what the
    check of one field finds depends on its value alone, so it is worked out once per
    value for the fields whose values repeat from record to record (codes, villages,
    dates), remembered for at most :data:`_REMEMBERED_VALUES` values a field."""

    def __init__(self, *, today: date, clock_trusted: bool = True) -> None:
        self._when = _Today(today, clock_trusted)
        #: Per entity schema (kept, so that its id stays its own): its field plan.
        self._plans: dict[int, tuple[EntitySchema, _FieldPlan]] = {}

    def __call__(self, entity: EntitySchema, values: Mapping[str, object]) -> list[Issue]:
        """``validate_fields(entity, values, is_new=True, today=...)``."""
        if not isinstance(values, Mapping):
            return [Issue.error("", "invalid_value", {"field": ""})]
        when = self._when
        issues = _key_issues(entity, values)
        for name, spec, required, known in self._plan(entity):
            if name not in values and not required:
                continue
            if known is None:
                issues += _field_issues(spec, values, {}, when=when, full=False)
                continue
            value = values.get(name)
            kind = value.__class__
            if kind is str or kind is int or kind is bool or value is None:
                key: tuple[type, object] = (kind, value)
            elif kind is list:
                key = (kind, tuple(value))  # type: ignore[arg-type]
                try:
                    hash(key)
                except TypeError:  # an item that cannot be a key: checked each time
                    issues += _field_issues(spec, values, {}, when=when, full=False)
                    continue
            else:  # a float (-0.0 == 0.0) or another type: checked each time
                issues += _field_issues(spec, values, {}, when=when, full=False)
                continue
            found = known.get(key)
            if found is None:
                found = _field_issues(spec, values, {}, when=when, full=False)
                if len(known) >= _REMEMBERED_VALUES:
                    known.clear()
                known[key] = found
            issues += found
        record = cast("dict[object, object]", dict(values))
        issues += _rule_issues(entity, values, record, {}, None, is_new=True, when=when, full=False)
        return issues

    def _plan(self, entity: EntitySchema) -> _FieldPlan:
        kept = self._plans.get(id(entity))
        if kept is None or kept[0] is not entity:
            plan: _FieldPlan = tuple(
                (spec.name, spec, spec.required, {} if spec.kind in _REMEMBERED_KINDS else None)
                for spec in entity.fields.values()
            )
            kept = self._plans[id(entity)] = (entity, plan)
        return kept[1]


def validate_fields(
    entity: EntitySchema,
    values: Mapping[str, object],
    *,
    is_new: bool,
    today: date,
    current: Mapping[str, object] | None = None,
    clock_trusted: bool = True,
) -> list[Issue]:
    """Check an edit of one record before it is saved.

    ``values`` are the fields the edit writes (for a new record, all of them; the record id
    may come along under ``"id"``); ``current`` is the stored record, if any. Checks: no
    unknown fields; required fields filled (all of them for a new record, and never
    cleared by an update); readonly fields (set by the hub) left unchanged; each value's
    shape; NIK, KK and region rules; dates that cannot be in the future; the rules of the
    entity and its status workflow (see the module docstring). ``clock_trusted``: whether
    ``today`` is known for sure (see the module docstring).
    """
    return _record_issues(
        entity,
        values,
        current,
        is_new=is_new,
        when=_Today(today, clock_trusted),
        full=False,
    )


def validate_household(
    household: Mapping[str, object],
    members: Sequence[Mapping[str, object]],
    *,
    today: date,
    village_niks: Mapping[str, str] | None = None,
    clock_trusted: bool = True,
) -> list[Issue]:
    """Check a household and its members as they will stand after a save.

    Every record must be complete and well-formed (as :func:`validate_fields` on a new
    record, except that readonly values already in the records, such as the published
    decile, are accepted: they came from the hub). Then, among the ACTIVE members (status
    ``aktif`` and not withdrawn): exactly one head of household; a NIK at most once in the
    household, and not registered to another resident of the village (``village_niks``:
    NIK → id of the member holding it, from the caller's store). Member issues are named
    ``members[i].<field>``. ``clock_trusted`` as for :func:`validate_fields`.
    """
    when = _Today(today, clock_trusted)
    issues = _record_issues(HOUSEHOLD, household, None, is_new=True, when=when, full=True)
    if not isinstance(members, Sequence) or isinstance(members, str | bytes):
        return [*issues, Issue.error("members", "invalid_value", {"field": "members"})]
    household_id = household.get(RECORD_ID_KEY) if isinstance(household, Mapping) else None
    active: list[tuple[int, Mapping[str, object]]] = []
    for index, member in enumerate(members):
        path = f"members[{index}]"
        if not isinstance(member, Mapping):
            issues.append(Issue.error(path, "invalid_value", {"field": path}))
            continue
        for issue in _record_issues(MEMBER, member, None, is_new=True, when=when, full=True):
            issues.append(dataclasses.replace(issue, field=f"{path}.{issue.field}"))
        linked = member.get("household_id")
        if isinstance(household_id, str) and isinstance(linked, str) and linked != household_id:
            issues.append(Issue.error(f"{path}.household_id", "household_mismatch", {}))
        if not _is_inactive(member.get("status")) and member.get("deleted") is not True:
            active.append((index, member))
    if isinstance(household, Mapping) and household.get("deleted") is True:
        return issues
    issues += _head_issues(active)
    issues += _duplicate_issues(active, village_niks)
    return issues


def _head_issues(active: Sequence[tuple[int, Mapping[str, object]]]) -> list[Issue]:
    if not active:
        return [Issue.warning("members", "no_active_members", {})]
    heads = [index for index, member in active if member.get("relation_to_head") == _HEAD]
    if not heads:
        return [Issue.error("members", "head_missing", {})]
    if len(heads) == 1:
        return []
    count = {"count": str(len(heads))}
    return [Issue.error(f"members[{i}].relation_to_head", "head_multiple", count) for i in heads]


def _duplicate_issues(
    active: Sequence[tuple[int, Mapping[str, object]]], village_niks: object
) -> list[Issue]:
    issues = []
    by_nik: dict[str, list[tuple[int, Mapping[str, object]]]] = {}
    for index, member in active:
        nik = member.get("nik")
        if isinstance(nik, str) and nik:
            by_nik.setdefault(nik, []).append((index, member))
    own_ids = {m.get(RECORD_ID_KEY) for _, m in active if isinstance(m.get(RECORD_ID_KEY), str)}
    village = village_niks if isinstance(village_niks, Mapping) else {}
    for nik, holders in by_nik.items():
        for index, member in holders:
            path = f"members[{index}].nik"
            if len(holders) > 1:
                others = [_text(m.get("name")) or f"#{i + 1}" for i, m in holders if i != index]
                params = {"field": "nik", "label": "NIK", "other_name": ", ".join(others)}
                issues.append(Issue.error(path, "nik_duplicate_household", params))
            holder = village.get(nik)
            if (
                isinstance(holder, str)
                and holder != member.get(RECORD_ID_KEY)
                and holder not in own_ids
            ):
                params = {"field": "nik", "label": "NIK", "other_id": holder}
                issues.append(Issue.error(path, "nik_duplicate_village", params))
    return issues


def _record_issues(
    entity: EntitySchema,
    values: object,
    current: object,
    *,
    is_new: bool,
    when: _Today,
    full: bool,
) -> list[Issue]:
    if not isinstance(values, Mapping):
        return [Issue.error("", "invalid_value", {"field": ""})]
    stored: Mapping[object, object] = current if isinstance(current, Mapping) else {}
    record: dict[object, object] = {**stored, **values}
    issues = _key_issues(entity, values)
    for spec in entity.fields.values():
        if spec.name in values or (is_new and spec.required):
            issues += _field_issues(spec, values, stored, when=when, full=full)
    issues += _rule_issues(
        entity, values, record, stored, current, is_new=is_new, when=when, full=full
    )
    return issues


def _key_issues(entity: EntitySchema, values: Mapping[str, object]) -> list[Issue]:
    """Keys that are not the entity's fields (nor a valid record id)."""
    issues: list[Issue] = []
    fields = entity.fields
    for key, value in values.items():
        if key.__class__ is str and key in fields:
            continue
        if key == RECORD_ID_KEY:
            if not _is_uuid(value):
                issues.append(Issue.error(RECORD_ID_KEY, "invalid_value", {"field": RECORD_ID_KEY}))
        elif not isinstance(key, str) or key not in fields:
            name = str(key)[:40]
            issues.append(Issue.error(name, "unknown_field", {"field": name}))
    return issues


def _rule_issues(
    entity: EntitySchema,
    values: Mapping[str, object],
    record: Mapping[object, object],
    stored: Mapping[object, object],
    current: object,
    *,
    is_new: bool,
    when: _Today,
    full: bool,
) -> list[Issue]:
    """The issues of the rules that relate several fields: the entity's own and its
    status workflow's."""
    context = _Context(
        entity, values, record, is_new or full, is_new or full or current is not None, when
    )
    issues: list[Issue] = []
    rules = _ENTITY_RULES.get(entity.name)
    if rules is not None:
        issues += rules(context)
    if entity.name in WORKFLOWS:
        issues += _workflow_issues(context, stored, is_new=is_new and not full)
    return issues


def _field_issues(
    spec: FieldSpec,
    values: Mapping[str, object],
    stored: Mapping[object, object],
    *,
    when: _Today,
    full: bool,
) -> list[Issue]:
    name = spec.name
    value = values.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):  # _is_blank
        if spec.required:
            return [Issue.error(name, "required", {"field": name, "label": spec.label})]
        if value is None:
            return []
    if spec.readonly and not full and value is not None and value != stored.get(name):
        return [Issue.error(name, "readonly", {"field": name, "label": spec.label})]
    problem = wire_value_problem(spec, value)
    if problem is not None:
        params = {"field": name, "label": spec.label, **dict(problem.params)}
        return [Issue.error(name, problem.code, params)]
    if spec.kind is FieldKind.NIK:
        return validate_nik(value, field=name, label=spec.label)
    if spec.kind is FieldKind.KK:
        return validate_kk(value, name, label=spec.label)
    if spec.kind is FieldKind.REGION:
        return validate_region(value, name, spec.region_level, label=spec.label)
    if spec.kind is FieldKind.DATE and name in _PAST_ONLY:
        parsed = as_date(value)
        if parsed is not None and parsed > when.today:
            base = {"field": name, "label": spec.label}
            if when.trusted:
                return [Issue.error(name, "date_in_future", base)]
            params = {**base, "today": f"{when.today:%d-%m-%Y}"}
            return [Issue.warning(name, "date_after_box_clock", params)]
    return []


@dataclasses.dataclass(slots=True)
class _Context:
    """What a cross-field rule sees. ``new``: the whole record is being written.
    ``complete``: fields absent from ``record`` are known to be empty (a new or whole
    record, or an update given its stored record)."""

    entity: EntitySchema
    values: Mapping[str, object]
    record: Mapping[object, object]
    new: bool
    complete: bool
    when: _Today

    @property
    def today(self) -> date:
        return self.when.today

    def touches(self, *names: str) -> bool:
        return any(name in self.values for name in names)

    def empty(self, name: str) -> bool:
        return (self.complete or name in self.record) and _is_blank(self.record.get(name))

    def label(self, name: str) -> str:
        spec = self.entity.fields.get(name)
        return spec.label if spec is not None else name

    def choice_label(self, name: str, code: object) -> str:
        spec = self.entity.fields.get(name)
        if spec is not None and code in spec.choices and spec.choice_labels:
            return spec.choice_labels[spec.choices.index(str(code))]
        return str(code)[:40]


def _member_rules(ctx: _Context) -> list[Issue]:
    """NIK against birth date and sex (warnings); who may be recorded as pregnant or
    breastfeeding (:func:`_woman_only_rules`)."""
    issues: list[Issue] = []
    record = ctx.record
    birth = as_date(record.get("birth_date"))
    sex = record.get("sex")
    if ctx.touches("nik", "birth_date", "sex"):
        # Only the cross-checks: the NIK's own issues come from its field check.
        issues += nik_mismatches(
            record.get("nik"),
            birth_date=birth,
            sex=sex if isinstance(sex, str) else None,
            label=ctx.label("nik"),
        )
    too_old = birth is not None and age_on(birth, ctx.today) > _MAX_PLAUSIBLE_AGE
    if too_old and ctx.touches("birth_date"):
        params = {"field": "birth_date", "max_age": str(_MAX_PLAUSIBLE_AGE)}
        issues.append(Issue.warning("birth_date", "age_implausible", params))
    issues += _woman_only_rules(
        ctx,
        "pregnant",
        male_code="pregnant_male",
        age_code="pregnant_age",
        inactive_code="pregnant_inactive",
    )
    issues += _woman_only_rules(
        ctx,
        "breastfeeding",
        flagged="ya",
        male_code="breastfeeding_male",
        age_code="breastfeeding_age",
        inactive_code="breastfeeding_inactive",
    )
    issues += _departure_rules(ctx)
    return issues


def _woman_only_rules(
    ctx: _Context,
    name: str,
    *,
    male_code: str,
    age_code: str,
    inactive_code: str,
    flagged: object = True,
) -> list[Issue]:
    """A flag only a woman of :data:`PREGNANCY_AGE` may carry (pregnant, breastfeeding),
    set (its value is ``flagged``): an error for a man or outside that age; for a member
    who moved or died only a warning, so that recording a death or a move is never blocked
    by a flag someone forgot to clear."""
    record = ctx.record
    if record.get(name) != flagged or not ctx.touches(name, "sex", "birth_date", "status"):
        return []
    issues: list[Issue] = []
    birth = as_date(record.get("birth_date"))
    base = {"field": name, "label": ctx.label(name)}
    if record.get("sex") == "laki_laki":
        issues.append(Issue.error(name, male_code, base))
    low, high = PREGNANCY_AGE
    if birth is not None and not low <= age_on(birth, ctx.today) <= high:
        params = {
            **base,
            "age": str(age_on(birth, ctx.today)),
            "minimum": str(low),
            "maximum": str(high),
        }
        if ctx.when.trusted:
            issues.append(Issue.error(name, age_code, params))
        else:  # the age is only as right as the device's date
            issues.append(Issue.warning(name, age_code, params))
    status = record.get("status")
    if _is_inactive(status):
        params = {**base, "status": ctx.choice_label("status", status)}
        issues.append(Issue.warning(name, inactive_code, params))
    return issues


def _departure_rules(ctx: _Context) -> list[Issue]:
    """A member who died or moved: when, and on which document (warnings: a death in a
    village often has no certificate yet, and the move must still be recorded); the date
    is not before the birth (nor in the future: :data:`_PAST_ONLY`)."""
    record = ctx.record
    issues: list[Issue] = []
    status = record.get("status")
    if not _is_inactive(status) or not ctx.touches("status", "status_date", "status_document"):
        return issues
    params = {"status": ctx.choice_label("status", status)}
    for name in ("status_date", "status_document"):
        if ctx.empty(name):
            issues.append(
                Issue.warning(name, "departure_missing", {**params, "label": ctx.label(name)})
            )
    when, birth = as_date(record.get("status_date")), as_date(record.get("birth_date"))
    if when is not None and birth is not None and when < birth:
        issues.append(Issue.error("status_date", "departure_date", params))
    return issues


def _complaint_rules(ctx: _Context) -> list[Issue]:
    """The due date is not before the date received; an anonymous reporter has no name."""
    issues = []
    record = ctx.record
    if ctx.touches("due_date", "received_date"):
        due, received = as_date(record.get("due_date")), as_date(record.get("received_date"))
        if due is not None and received is not None and due < received:
            base = {"field": "due_date", "label": ctx.label("due_date")}
            issues.append(Issue.error("due_date", "due_before_received", base))
    named = record.get("anonymous") is True and not _is_blank(record.get("reporter_name"))
    if named and ctx.touches("anonymous", "reporter_name"):
        base = {"field": "reporter_name", "label": ctx.label("reporter_name")}
        issues.append(Issue.warning("reporter_name", "anonymous_with_name", base))
    return issues


def _referral_rules(ctx: _Context) -> list[Issue]:
    """A referral is about a complaint or a member (or both)."""
    checked = ctx.new or ctx.touches("complaint_id", "member_id")
    if checked and ctx.empty("complaint_id") and ctx.empty("member_id"):
        base = {"field": "complaint_id", "label": ctx.label("complaint_id")}
        return [Issue.error("complaint_id", "referral_subject_missing", base)]
    return []


def _service_rules(ctx: _Context) -> list[Issue]:
    return service_issues(ctx.record, ctx.values)


_ENTITY_RULES = {
    "layanan": _service_rules,
    "member": _member_rules,
    "complaint": _complaint_rules,
    "referral": _referral_rules,
}


def _workflow_issues(
    ctx: _Context, stored: Mapping[object, object], *, is_new: bool
) -> list[Issue]:
    workflow = WORKFLOWS[ctx.entity.name]
    name = workflow.field
    status = ctx.record.get(name)
    if not isinstance(status, str) or status not in workflow.transitions:
        return []  # a missing or unknown status is reported by the field checks
    issues = []
    base = {"field": name, "label": ctx.label(name)}
    if is_new and name in ctx.values and status not in workflow.initial:
        params = {**base, "status": ctx.choice_label(name, status)}
        issues.append(Issue.error(name, "status_initial", params))
    old = stored.get(name)
    moved = not is_new and name in ctx.values and isinstance(old, str) and old != status
    if moved and status not in workflow.transitions.get(str(old), (status,)):
        params = {
            **base,
            "old": ctx.choice_label(name, old),
            "new": ctx.choice_label(name, status),
        }
        issues.append(Issue.error(name, "transition_not_allowed", params))
    reason = workflow.reasons.get(status)
    if reason is not None and ctx.touches(name, reason) and ctx.empty(reason):
        params = {
            "field": reason,
            "label": ctx.label(reason),
            "status": ctx.choice_label(name, status),
        }
        issues.append(Issue.error(reason, "reason_required", params))
    return issues


# --- small helpers -------------------------------------------------------------------------


def _is_inactive(status: object) -> bool:
    return isinstance(status, str) and status in _INACTIVE


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: object) -> str:
    return value.strip()[:100] if isinstance(value, str) else ""


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def as_date(value: object) -> date | None:
    """A wire date (``YYYY-MM-DD``) as a date; ``None`` for anything else."""
    # The pattern first: fromisoformat() also takes "2023-W01-1".
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def age_on(birth: date, today: date) -> int:
    """Completed years on ``today``. Someone born on 29 February turns a year older on
    1 March in a common year."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
