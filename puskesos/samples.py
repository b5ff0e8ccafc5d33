"""Sample records for the demo, the tests and the benchmarks: VALID households and members
that pass :mod:`protocol.validate` with no errors and no warnings (real kecamatan prefixes,
NIKs that match their owner's birth date and sex, one head per household).

Records are plain dicts as a form or the API would hold them: field name → wire value
(dates as ``YYYY-MM-DD``), plus the record's UUIDv7 under ``"id"``. The tests import
them through ``tests.factories``.

With a ``seed``, :func:`make_household_with_members` is a pure function of its arguments,
and different seeds give different NIKs (the serial number is derived from the seed).
Without one, every NIK handed out in this process is unique.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import date
from typing import Any

from protocol.entities import SERVICE_TYPES

__all__ = [
    "DEFAULT_KECAMATAN",
    "DEFAULT_VILLAGE",
    "make_household",
    "make_household_with_members",
    "make_kk",
    "make_member",
    "make_nik",
    "make_service",
    "new_id",
]

#: Desa Wanaherang, Kecamatan Gunung Putri, Kabupaten Bogor (Jawa Barat), 2025 edition.
#: Note: 32.01.01.2001 does not exist: Kecamatan Cibinong has kelurahan (1001–1013) only.
DEFAULT_VILLAGE = "3201022001"
#: Kecamatan Cibinong, Kabupaten Bogor.
DEFAULT_KECAMATAN = "320101"

_MALE = ("Asep", "Dede", "Ujang", "Budi", "Agus", "Cecep", "Iwan", "Rudi", "Dadan", "Yayan")
_FEMALE = ("Siti", "Euis", "Neneng", "Ai", "Dewi", "Rina", "Imas", "Lilis", "Nur", "Yuyun")
_SECOND = ("Saepudin", "Hidayat", "Rohmat", "Nurhayati", "Rahmawati", "Sopiah", "Kurniawan")
_PLACES = ("Kp. Babakan", "Kp. Cibeureum", "Kp. Sukamaju", "Jl. Melati", "Jl. Mawar", "Gg. Kenanga")
_EPOCH_MS = 1_748_736_000_000  # 2025-06-01, for UUIDv7 timestamps
_serials = itertools.count(1)
_issued: set[str] = set()
_default_rng = random.Random()


def make_nik(
    birth_date: date | str, sex: str, kecamatan: str = DEFAULT_KECAMATAN, serial: int = 1
) -> str:
    """A NIK for someone born on ``birth_date`` of ``sex`` (``"laki_laki"`` or
    ``"perempuan"``), first registered in ``kecamatan`` (6 digits), with ``serial`` 1–9999."""
    born = date.fromisoformat(birth_date) if isinstance(birth_date, str) else birth_date
    if sex not in ("laki_laki", "perempuan"):
        raise ValueError(f"sex must be laki_laki or perempuan, not {sex!r}")
    if len(kecamatan) != 6 or not kecamatan.isdigit() or not 1 <= serial <= 9999:
        raise ValueError("kecamatan is 6 digits and serial is 1..9999")
    day = born.day + (40 if sex == "perempuan" else 0)
    return f"{kecamatan}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"


def make_kk(issued: date, kecamatan: str = DEFAULT_KECAMATAN, serial: int = 1) -> str:
    """A family-card number issued in ``kecamatan`` on ``issued``."""
    return f"{kecamatan}{issued:%d%m%y}{serial:04d}"


def new_id(rng: random.Random | None = None) -> str:
    """A UUIDv7 string; deterministic when ``rng`` is seeded."""
    rng = rng or _default_rng
    millis = _EPOCH_MS + rng.randrange(10**9)
    value = (millis << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def make_household(**overrides: Any) -> dict[str, Any]:
    """A valid household (without members) in :data:`DEFAULT_VILLAGE`; any field, and
    ``id``, may be overridden."""
    village = overrides.get("village_code", DEFAULT_VILLAGE)
    kecamatan = "".join(ch for ch in str(village) if ch.isdigit())[:6].ljust(6, "0")
    household: dict[str, Any] = {
        "id": new_id(),
        "village_code": village,
        "address": "Kp. Babakan No. 12",
        "rt": "003",
        "rw": "005",
        "kk_number": make_kk(date(2019, 3, 12), kecamatan, next(_serials) % 9999 + 1),
        "floor_area_m2": 36.0,
        "floor_material": "semen_bata_merah",
        "wall_material": "tembok",
        "roof_material": "genteng",
        "drinking_water_source": "sumur_terlindung",
        "lighting_source": "pln_meteran",
        "cooking_fuel": "elpiji_3kg",
        "toilet_facility": "sendiri",
        "ownership_status": "milik_sendiri",
        "programmes": ["pbi_jk"],
        "assets": ["sepeda_motor"],
        "presence_status": "ditemukan",
    }
    household.update(overrides)
    return household


def make_member(
    household_id: str, *, kecamatan: str = DEFAULT_KECAMATAN, **overrides: Any
) -> dict[str, Any]:
    """A valid active member; by default a man born 1980-05-17 who heads the household.

    Any field may be overridden; unless ``nik`` is, the NIK is made to match the
    (possibly overridden) birth date and sex, first registered in ``kecamatan``.
    """
    member: dict[str, Any] = {
        "id": new_id(),
        "household_id": household_id,
        "name": "Asep Saepudin",
        "relation_to_head": "kepala_keluarga",
        "sex": "laki_laki",
        "birth_date": "1980-05-17",
        "birth_place": "Bogor",
        "marital_status": "kawin",
        "education": "sma",
        "occupation": "Buruh harian lepas",
        "disability": [],
        "chronic_illness": [],
        "pregnant": False,
        "status": "aktif",
    }
    member.update(overrides)
    if isinstance(member["birth_date"], date):
        member["birth_date"] = member["birth_date"].isoformat()
    if "nik" not in overrides:
        # A test of a bad birth date or sex still gets a well-formed NIK.
        born, sex = member["birth_date"], member["sex"]
        if not _is_date(born):
            born = "1980-05-17"
        if sex not in ("laki_laki", "perempuan"):
            sex = "laki_laki"
        member["nik"] = _unique_nik(born, sex, kecamatan)
    return member


def make_service(
    member: dict[str, Any], service_type: str = "penimbangan_balita", **overrides: Any
) -> dict[str, Any]:
    """A valid Posyandu service (``layanan``) for ``member``, recorded by a kader; by
    default a weighing on 2026-12-02 without measurements."""
    service: dict[str, Any] = {
        "id": new_id(),
        "household_id": member["household_id"],
        "member_id": member["id"],
        "service_date": "2026-12-02",
        "spm_field": SERVICE_TYPES[service_type].spm,
        "service_type": service_type,
        "officer": "Lilis Kurniasih",
        "officer_role": "kader",
    }
    service.update(overrides)
    return service


def make_household_with_members(
    n: int = 4, *, village: str = DEFAULT_VILLAGE, seed: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A valid household of ``n`` active members: a head, a spouse, then children.

    NIKs are first registered in the village's kecamatan. Birth dates are no later than
    2022, so the records are valid for any ``today`` from 2023 on.
    """
    if n < 1:
        raise ValueError("a household has at least its head")
    rng = random.Random(seed)
    kecamatan = village[:6]
    household = make_household(
        id=new_id(rng),
        village_code=village,
        rt=f"{rng.randint(1, 12):03d}",
        rw=f"{rng.randint(1, 6):03d}",
        kk_number=make_kk(_random_date(rng, 2005, 2022), kecamatan, rng.randint(1, 9999)),
        floor_area_m2=float(rng.randint(12, 120)),
    )
    head_sex = "perempuan" if rng.random() < 0.2 else "laki_laki"
    head_year = rng.randint(1960, 1990)
    people = [("kepala_keluarga", head_sex, _random_date(rng, head_year, head_year))]
    if n >= 2:
        spouse_sex = "laki_laki" if head_sex == "perempuan" else "perempuan"
        spouse_year = min(max(head_year + rng.randint(-5, 5), 1960), 1995)
        people.append(("istri_suami", spouse_sex, _random_date(rng, spouse_year, spouse_year)))
    for _ in range(n - len(people)):
        sex = rng.choice(("laki_laki", "perempuan"))
        first = min(head_year + 20, 2022)
        people.append(("anak", sex, _random_date(rng, first, min(head_year + 42, 2022))))
    members = []
    for index, (relation, sex, born) in enumerate(people):
        names = _MALE if sex == "laki_laki" else _FEMALE
        if seed is None:
            nik = _unique_nik(born.isoformat(), sex, kecamatan, rng)
        else:
            nik = make_nik(born, sex, kecamatan, (seed * 8 + index) % 9999 + 1)
        child = relation == "anak"
        members.append(
            make_member(
                household["id"],
                id=new_id(rng),
                nik=nik,
                name=f"{rng.choice(names)} {rng.choice(_SECOND)}",
                relation_to_head=relation,
                sex=sex,
                birth_date=born.isoformat(),
                marital_status="belum_kawin" if child else "kawin",
                education=rng.choice(("sd", "smp", "sma")),
                occupation="Pelajar" if child else rng.choice(("Petani", "Pedagang", "Buruh")),
            )
        )
    # Drawn last, so that every other value of a seed stays what it was before addresses varied.
    household["address"] = f"{rng.choice(_PLACES)} No. {rng.randint(1, 150)}"
    return household, members


def _is_date(value: object) -> bool:
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def _random_date(rng: random.Random, first_year: int, last_year: int) -> date:
    start = date(first_year, 1, 1).toordinal()
    return date.fromordinal(rng.randint(start, date(last_year, 12, 31).toordinal()))


def _unique_nik(birth_date: str, sex: str, kecamatan: str, rng: random.Random | None = None) -> str:
    serial = rng.randint(1, 9999) if rng is not None else next(_serials) % 9999 + 1
    for offset in range(9999):
        nik = make_nik(birth_date, sex, kecamatan, (serial + offset - 1) % 9999 + 1)
        if nik not in _issued:
            _issued.add(nik)
            return nik
    raise RuntimeError("all 9999 serials for this birth date are taken")
