"""The tests' factories of valid records: the package's sample records (one definition)."""

from puskesos.samples import (
    DEFAULT_KECAMATAN,
    DEFAULT_VILLAGE,
    make_household,
    make_household_with_members,
    make_kk,
    make_member,
    make_nik,
    make_service,
    new_id,
)

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
