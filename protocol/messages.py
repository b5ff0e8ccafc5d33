"""The one catalogue of validation messages: code → (Bahasa Indonesia, English).

Codes are stable strings (they travel in API responses and are stored with confirmed
warnings); templates use ``str.format`` fields filled from an issue's params. Every code
that :mod:`protocol.validate` and :func:`protocol.schema.wire_value_problem` produce is here,
and a test checks it.

Params validation fills in: ``label`` (the field's Indonesian label) and ``field`` for every
field-level issue, plus the ones named in each template.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

__all__ = ["MESSAGES", "Lang", "render"]

Lang = Literal["id", "en"]

MESSAGES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        # --- the shape of a value (protocol.schema) and the generic field rules ---
        "invalid_value": ("Isian tidak sah.", "Invalid value."),
        # --- rows of a district's registry extract (protocol.registry, hub.registry) ---
        "registry_id_missing": (
            "Baris ini tidak punya ID keluarga atau ID anggota DTSEN.",
            "The row has no registry household or member id.",
        ),
        "registry_id_twice": (
            "ID {id} sudah ada di baris lain dengan isi berbeda; baris ini tidak disimpan.",
            "Id {id} appears on another row with other values; this row is not saved.",
        ),
        "registry_household_missing": (
            "Keluarga dengan ID {id} tidak ada di data ini maupun di kabupaten.",
            "No household with id {id} in this extract or at the hub.",
        ),
        "registry_record_taken": (
            "ID data {id} sudah dipakai data lain (jenis atau desa berbeda); baris ini tidak "
            "disimpan.",
            "Record id {id} belongs to another record (another entity or village); the row is "
            "not saved.",
        ),
        "registry_moved": (
            "ID {id} sudah tercatat di desa {village}; perpindahan desa diusulkan lewat desa, "
            "bukan lewat impor.",
            "Id {id} is registered in village {village}; a move is proposed by the village, "
            "not imported.",
        ),
        "registry_other_village": (
            "Anggota ini tercatat di desa {village}, keluarganya di desa {household_village}.",
            "The member is listed in village {village}, its household in {household_village}.",
        ),
        "unknown_field": (
            "Isian {field} tidak dikenal.",
            "Unknown field {field}.",
        ),
        "required": ("{label} wajib diisi.", "{label} ({field}) is required."),
        "no_proposal_chosen": ("Pilih minimal satu usulan.", "Choose at least one proposal."),
        "readonly": (
            "{label} diisi oleh kabupaten/pusat dan tidak bisa diubah di desa.",
            "{label} ({field}) is set by the district hub and cannot be changed here.",
        ),
        "not_text": ("{label} harus berupa teks.", "{label} must be text."),
        "not_integer": ("{label} harus berupa bilangan bulat.", "{label} must be a whole number."),
        "not_number": ("{label} harus berupa angka.", "{label} must be a number."),
        "not_boolean": ("{label} harus ya atau tidak.", "{label} must be yes or no."),
        "not_list": ("{label} harus berupa daftar pilihan.", "{label} must be a list of choices."),
        "too_long": (
            "{label} paling banyak {limit} karakter.",
            "{label} must be at most {limit} characters.",
        ),
        "out_of_range": (
            "{label} harus antara {minimum} dan {maximum}.",
            "{label} must be between {minimum} and {maximum}.",
        ),
        "below_minimum": (
            "{label} paling sedikit {minimum}.",
            "{label} must be at least {minimum}.",
        ),
        "above_maximum": (
            "{label} paling banyak {maximum}.",
            "{label} must be at most {maximum}.",
        ),
        "unknown_choice": (
            "Pilihan {value} tidak dikenal untuk {label}.",
            "{value} is not a known choice for {label}.",
        ),
        "repeated_choice": (
            "Ada pilihan yang tercantum dua kali pada {label}.",
            "A choice is listed twice in {label}.",
        ),
        "invalid_date": (
            "{label} bukan tanggal yang benar (format TTTT-BB-HH).",
            "{label} is not a real date (YYYY-MM-DD).",
        ),
        "invalid_period": (
            "{label} harus berupa bulan (format TTTT-BB).",
            "{label} must be a month (YYYY-MM).",
        ),
        "invalid_ref": (
            "{label} tidak menunjuk data yang sah.",
            "{label} does not point to a valid record.",
        ),
        "date_in_future": (
            "{label} tidak boleh setelah hari ini.",
            "{label} cannot be after today.",
        ),
        "date_after_box_clock": (
            "{label} setelah tanggal hari ini menurut perangkat ini ({today}). Jam perangkat "
            "ini mungkin salah: periksa tanggalnya, lalu simpan bila sudah benar.",
            "{label} is after today by this device ({today}). The device's clock may be "
            "wrong: check the date, then save if it is right.",
        ),
        "age_implausible": (
            "Umur lebih dari {max_age} tahun. Periksa kembali tanggal lahir.",
            "Older than {max_age} years. Please check the birth date.",
        ),
        # --- the household search box (puskesos.search) ---
        "search_number_length": (
            "Untuk mencari NIK atau nomor KK, ketik 16 angka lengkap (sekarang {length} angka).",
            "To search by NIK or family-card number, type all 16 digits (this has {length}).",
        ),
        # --- NIK ---
        "nik_digits": ("NIK hanya boleh berisi angka.", "A NIK contains digits only."),
        "nik_length": (
            "NIK harus 16 angka (sekarang {length}).",
            "A NIK must be 16 digits (this one has {length}).",
        ),
        "nik_serial_zero": (
            "Nomor urut NIK (4 angka terakhir) tidak boleh 0000.",
            "The NIK's serial number (last 4 digits) cannot be 0000.",
        ),
        "nik_day": (
            "Tanggal lahir pada NIK (angka ke-7 dan ke-8: {day}) harus 01–31, "
            "atau 41–71 untuk perempuan.",
            "The NIK's birth day (digits 7–8: {day}) must be 01–31, or 41–71 for women.",
        ),
        "nik_month": (
            "Bulan lahir pada NIK (angka ke-9 dan ke-10: {month}) harus 01–12.",
            "The NIK's birth month (digits 9–10: {month}) must be 01–12.",
        ),
        "nik_date": (
            "Tanggal lahir pada NIK ({nik_date}) bukan tanggal yang ada.",
            "The NIK's birth date ({nik_date}) does not exist.",
        ),
        "nik_prefix_unknown": (
            "Kode kecamatan pada NIK ({prefix}) tidak dikenal. Periksa kembali NIK.",
            "The NIK's kecamatan code ({prefix}) is unknown. Please check the NIK.",
        ),
        "nik_prefix_old": (
            "Kode kecamatan pada NIK ({prefix}, {name}) adalah kode lama sebelum 2025. "
            "NIK tetap berlaku.",
            "The NIK's kecamatan code ({prefix}, {name}) is from before 2025. "
            "The NIK is still valid.",
        ),
        "nik_birth_date_mismatch": (
            "Tanggal lahir pada NIK ({nik_date}) berbeda dengan tanggal lahir ({birth_date}). "
            "NIK tidak diubah; periksa tanggal lahir.",
            "The NIK's birth date ({nik_date}) differs from the birth date ({birth_date}). "
            "A NIK is never changed; please check the birth date.",
        ),
        "nik_sex_mismatch": (
            "NIK menunjukkan {nik_sex}, sedangkan jenis kelamin diisi {sex}.",
            "The NIK says {nik_sex_en} but the sex is recorded as {sex_en}.",
        ),
        # --- family card (KK) ---
        "kk_digits": (
            "Nomor KK hanya boleh berisi angka.",
            "A family card number contains digits only.",
        ),
        "kk_length": (
            "Nomor KK harus 16 angka (sekarang {length}).",
            "A family card number must be 16 digits (this one has {length}).",
        ),
        "kk_prefix_unknown": (
            "Kode kecamatan pada nomor KK ({prefix}) tidak dikenal. Periksa kembali nomor KK.",
            "The family card's kecamatan code ({prefix}) is unknown. Please check it.",
        ),
        "kk_prefix_old": (
            "Kode kecamatan pada nomor KK ({prefix}, {name}) adalah kode lama sebelum 2025.",
            "The family card's kecamatan code ({prefix}, {name}) is from before 2025.",
        ),
        # --- region codes ---
        "region_shape": (
            "Kode wilayah {value} harus 2, 4, 6 atau 10 angka (boleh bertitik: 32.01.02.2001).",
            "Region code {value} must be 2, 4, 6 or 10 digits (dots allowed: 32.01.02.2001).",
        ),
        "region_unknown": (
            "Kode wilayah {code} tidak ada dalam daftar Kemendagri 2025.",
            "Region code {code} is not in the 2025 Kemendagri list.",
        ),
        "region_outdated": (
            "Kode wilayah {code} ({name}) sudah tidak berlaku sejak 2025. Gunakan kode baru.",
            "Region code {code} ({name}) is no longer valid since 2025. Use the new code.",
        ),
        "region_level": (
            "Kode {code} ({name}) adalah kode {actual}, seharusnya kode {expected}.",
            "Code {code} ({name}) is a {actual_en} code; expected a {expected_en} code.",
        ),
        # --- member ---
        "pregnant_male": (
            "Status hamil hanya untuk perempuan.",
            "Only a woman can be recorded as pregnant.",
        ),
        "pregnant_age": (
            "Status hamil hanya untuk umur {minimum}–{maximum} tahun (umur sekarang {age}).",
            "Pregnancy is recorded only at ages {minimum}–{maximum} (age now {age}).",
        ),
        "pregnant_inactive": (
            "Anggota berstatus {status} masih tercatat hamil. Sebaiknya status hamil dihapus.",
            "A member whose status is {status} is still recorded as pregnant; "
            "consider clearing it.",
        ),
        "breastfeeding_male": (
            "Status menyusui hanya untuk perempuan.",
            "Only a woman can be recorded as breastfeeding.",
        ),
        "breastfeeding_age": (
            "Status menyusui hanya untuk umur {minimum}–{maximum} tahun (umur sekarang {age}).",
            "Breastfeeding is recorded only at ages {minimum}–{maximum} (age now {age}).",
        ),
        "breastfeeding_inactive": (
            "Anggota berstatus {status} masih tercatat menyusui. Sebaiknya status menyusui "
            "dihapus.",
            "A member whose status is {status} is still recorded as breastfeeding; "
            "consider clearing it.",
        ),
        "service_spm_mismatch": (
            "{type} termasuk bidang SPM {spm}.",
            "The service type {type} belongs to the SPM field {spm}.",
        ),
        "measure_not_for_type": (
            "{label} tidak dicatat untuk {type}; kosongkan isian ini.",
            "{label} is not recorded for {type}; leave it empty.",
        ),
        "measure_range": (
            "{label} untuk {type} harus antara {minimum} dan {maximum}.",
            "{label} for {type} must be between {minimum} and {maximum}.",
        ),
        "departure_missing": (
            "Anggota berstatus {status}: {label} belum diisi.",
            "A member whose status is {status} has no {label} yet.",
        ),
        "departure_date": (
            "Tanggal meninggal/pindah tidak boleh sebelum tanggal lahir.",
            "The date of death or move cannot be before the birth.",
        ),
        # --- household ---
        "household_mismatch": (
            "Anggota ini tercatat pada keluarga lain.",
            "This member belongs to another household.",
        ),
        "no_active_members": (
            "Keluarga ini tidak punya anggota aktif.",
            "This household has no active member.",
        ),
        "head_missing": (
            "Keluarga harus punya satu kepala keluarga di antara anggota aktif.",
            "A household needs one head among its active members.",
        ),
        "head_multiple": (
            "Ada {count} kepala keluarga; hanya boleh satu di antara anggota aktif.",
            "There are {count} heads of household; only one active member may be head.",
        ),
        "nik_duplicate_household": (
            "NIK ini sudah dipakai anggota lain di keluarga ini ({other_name}).",
            "This NIK is already used by another member of this household ({other_name}).",
        ),
        "nik_duplicate_village": (
            "NIK ini sudah terdaftar untuk penduduk lain di desa ini.",
            "This NIK is already registered for another resident of this village.",
        ),
        # --- complaint and referral ---
        "due_before_received": (
            "Batas waktu tidak boleh sebelum tanggal diterima.",
            "The due date cannot be before the date received.",
        ),
        "anonymous_with_name": (
            "Pelapor minta dirahasiakan, tetapi nama pelapor diisi. Nama tidak akan ditampilkan.",
            "The reporter asked to stay anonymous but a name is filled in; it will not be shown.",
        ),
        "referral_subject_missing": (
            "Rujukan harus terkait dengan pengaduan atau anggota keluarga.",
            "A referral must name a complaint or a household member.",
        ),
        # --- status workflows ---
        "status_initial": (
            "Data baru tidak bisa langsung berstatus {status}.",
            "A new record cannot start with status {status}.",
        ),
        "transition_not_allowed": (
            "Status tidak bisa diubah dari {old} ke {new}.",
            "The status cannot change from {old} to {new}.",
        ),
        "reason_required": (
            "{label} wajib diisi untuk status {status}.",
            "{label} ({field}) is required for status {status}.",
        ),
    }
)


class _KeepMissing(dict[str, str]):
    """Leave a placeholder visible rather than fail when a param is missing."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(code: str, lang: str = "id", /, **params: str) -> str:
    """Render the message for a validation code in ``"id"`` (default) or ``"en"``.

    Never raises: an unknown code renders as the code itself, an unknown language as
    Indonesian, and a missing param stays visible as ``{name}``.
    """
    templates = MESSAGES.get(code)
    if templates is None:
        return code
    template = templates[1] if lang == "en" else templates[0]
    try:
        return template.format_map(_KeepMissing(params))
    except (ValueError, IndexError, AttributeError, KeyError):
        return template
