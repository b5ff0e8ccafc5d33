"""The roles of the district's staff in the review UI (docs/cycle.md, "Roles")."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ROLE_LABELS", "Role"]


class Role(StrEnum):
    """What a hub account may do; stored as its value."""

    VERIFIER = "verifikator"  # the queue, conflicts, duplicates, freeze early, submit
    LEADER = "pimpinan"  # the regent's office: return villages, sign
    ADMIN = "admin"  # accounts, published results, delivery retries
    IT = "it"  # devices


#: The Indonesian name of each role, for the UI.
ROLE_LABELS = {
    Role.VERIFIER: "Verifikator kabupaten",
    Role.LEADER: "Pimpinan (kantor bupati)",
    Role.ADMIN: "Administrator",
    Role.IT: "Petugas TI",
}
