"""The entities, declared once: household, member, proposal, complaint, referral, visit,
layanan (a service given at the Posyandu).

Fields follow the DTSEN / Regsosek household questionnaire (housing, assets, programmes)
and the Puskesos intake forms. Field names are English; labels and enum labels are
Bahasa Indonesia; enum codes are short Indonesian codes that travel on the wire and must
never be renamed (add a code instead).

To add an entity: declare its :class:`EntitySchema` here and add it to :data:`ENTITIES`;
if it has a status that moves through steps, add a :class:`Workflow` to :data:`WORKFLOWS`.

Boxes in the field run older versions and refuse what they do not know, so every
entity, field or enum code added after the first release names the :data:`SCHEMA_VERSION`
that added it (``since`` / ``codes_since``; raise the version then). Boxes report their
version in their status, and the hub sends each box only what its version knows
(``protocol/SPEC.md`` §8).

Record ids (UUIDv7) are not fields: a record dict may carry its id under
:data:`RECORD_ID_KEY`, which validation accepts next to the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from protocol.changes import FieldVersion
from protocol.schema import EntitySchema, FieldKind, FieldSpec

__all__ = [
    "COMPLAINT",
    "COMPLAINT_TRANSITIONS",
    "ENTITIES",
    "HOUSEHOLD",
    "LAYANAN",
    "MEMBER",
    "PROPOSAL",
    "PROPOSAL_TRANSITIONS",
    "RECORD_ID_KEY",
    "REFERRAL",
    "REFERRAL_TRANSITIONS",
    "SCHEMA_VERSION",
    "SERVICE_TYPES",
    "SPM_FIELDS",
    "VISIT",
    "VISIT_PROPOSALS",
    "WORKFLOWS",
    "ServiceType",
    "Workflow",
    "household_of",
    "known_state",
    "shown_status",
]

#: Key under which a record dict (a form, a factory's output) carries the record's UUID.
RECORD_ID_KEY = "id"

#: The version of the entities below; raise it with every field, entity or enum code
#: added, and mark what was added with ``since`` / ``codes_since``.
#: 1: the first release. 2: the district's review and published results (household
#: ``decile_period``, ``eligible_programmes``, ``review_*``; member status ``ganda``).
#: 3: the district's registry (``registry_id``, member ``civil_flags``). 4: field visits
#: (entity ``visit``, proposal kind ``tidak_ditemukan``). 5: member ``status_date`` and
#: ``status_document``. 6: the Posyandu's services (entity ``layanan``). 7: what the
#: vulnerable-group registers need (member ``school_status``, ``breastfeeding``,
#: ``health_insurance``).
SCHEMA_VERSION = 7

K = FieldKind


def _enum(
    name: str,
    label: str,
    options: tuple[tuple[str, str], ...],
    *,
    kind: FieldKind = K.ENUM,
    required: bool = False,
    codes_since: tuple[tuple[str, int], ...] = (),
    since: int = 1,
) -> FieldSpec:
    """An ENUM / ENUM_SET field from ``(code, Indonesian label)`` pairs."""
    codes = tuple(code for code, _ in options)
    labels = tuple(text for _, text in options)
    return FieldSpec(
        name,
        kind,
        label,
        required,
        choices=codes,
        choice_labels=labels,
        codes_since=codes_since,
        since=since,
    )


def _text(name: str, label: str, max_length: int, *, required: bool = False) -> FieldSpec:
    return FieldSpec(name, K.TEXT, label, required, max_length=max_length)


def _ref(name: str, label: str, entity: str, *, required: bool = False) -> FieldSpec:
    return FieldSpec(name, K.REF, label, required, ref=entity)


# --- household (rumah tangga / keluarga) -------------------------------------------------

_PROGRAMMES = (
    ("pkh", "PKH"),
    ("sembako_bpnt", "Sembako/BPNT"),
    ("pbi_jk", "PBI-JK (BPJS Kesehatan dibayar pemerintah)"),
    ("blt_dana_desa", "BLT Dana Desa"),
    ("pip", "PIP (Program Indonesia Pintar)"),
)

HOUSEHOLD = EntitySchema(
    "household",
    "Keluarga",
    (
        FieldSpec("village_code", K.REGION, "Kode desa/kelurahan", True, region_level="desa"),
        _text("address", "Alamat", 200),
        _text("rt", "RT", 3),
        _text("rw", "RW", 3),
        FieldSpec("kk_number", K.KK, "Nomor Kartu Keluarga (KK)"),
        FieldSpec("floor_area_m2", K.DECIMAL, "Luas lantai (m²)", minimum=0, maximum=10000),
        _enum(
            "floor_material",
            "Jenis lantai terluas",
            (
                ("marmer_granit", "Marmer/granit"),
                ("keramik", "Keramik"),
                ("parket_vinil_karpet", "Parket/vinil/karpet"),
                ("ubin_tegel_teraso", "Ubin/tegel/teraso"),
                ("kayu_papan", "Kayu/papan"),
                ("semen_bata_merah", "Semen/bata merah"),
                ("bambu", "Bambu"),
                ("tanah", "Tanah"),
                ("lainnya", "Lainnya"),
            ),
        ),
        _enum(
            "wall_material",
            "Jenis dinding terluas",
            (
                ("tembok", "Tembok"),
                ("plesteran_anyaman", "Plesteran anyaman bambu/kawat"),
                ("kayu_papan_gipsum", "Kayu/papan/gipsum/GRC/kalsiboard"),
                ("anyaman_bambu", "Anyaman bambu"),
                ("batang_kayu", "Batang kayu"),
                ("bambu", "Bambu"),
                ("lainnya", "Lainnya"),
            ),
        ),
        _enum(
            "roof_material",
            "Jenis atap terluas",
            (
                ("beton", "Beton"),
                ("genteng", "Genteng"),
                ("seng", "Seng"),
                ("asbes", "Asbes"),
                ("bambu", "Bambu"),
                ("kayu_sirap", "Kayu/sirap"),
                ("jerami_ijuk_rumbia", "Jerami/ijuk/daun-daunan/rumbia"),
                ("lainnya", "Lainnya"),
            ),
        ),
        _enum(
            "drinking_water_source",
            "Sumber air minum utama",
            (
                ("air_kemasan", "Air kemasan bermerk"),
                ("air_isi_ulang", "Air isi ulang"),
                ("leding", "Leding"),
                ("sumur_bor_pompa", "Sumur bor/pompa"),
                ("sumur_terlindung", "Sumur terlindung"),
                ("sumur_tak_terlindung", "Sumur tak terlindung"),
                ("mata_air_terlindung", "Mata air terlindung"),
                ("mata_air_tak_terlindung", "Mata air tak terlindung"),
                ("air_permukaan", "Air permukaan (sungai/danau/waduk/kolam/irigasi)"),
                ("air_hujan", "Air hujan"),
                ("lainnya", "Lainnya"),
            ),
        ),
        _enum(
            "lighting_source",
            "Sumber penerangan utama",
            (
                ("pln_meteran", "Listrik PLN dengan meteran"),
                ("pln_tanpa_meteran", "Listrik PLN tanpa meteran"),
                ("listrik_non_pln", "Listrik non-PLN"),
                ("bukan_listrik", "Bukan listrik"),
            ),
        ),
        _enum(
            "cooking_fuel",
            "Bahan bakar utama untuk memasak",
            (
                ("listrik", "Listrik"),
                ("elpiji_5_5_12kg", "Elpiji 5,5 kg/12 kg/blue gaz"),
                ("elpiji_3kg", "Elpiji 3 kg"),
                ("gas_kota", "Gas kota/meteran PGN"),
                ("biogas", "Biogas"),
                ("minyak_tanah", "Minyak tanah"),
                ("briket", "Briket"),
                ("arang", "Arang"),
                ("kayu_bakar", "Kayu bakar"),
                ("lainnya", "Lainnya"),
                ("tidak_memasak", "Tidak memasak di rumah"),
            ),
        ),
        _enum(
            "toilet_facility",
            "Fasilitas buang air besar",
            (
                ("sendiri", "Ada, digunakan hanya anggota keluarga sendiri"),
                ("bersama", "Ada, digunakan bersama rumah tangga tertentu"),
                ("mck_komunal", "Ada, di MCK komunal"),
                ("mck_umum", "Ada, di MCK umum/siapa pun menggunakan"),
                ("ada_tidak_digunakan", "Ada, anggota keluarga tidak menggunakan"),
                ("tidak_ada", "Tidak ada fasilitas"),
            ),
        ),
        _enum(
            "ownership_status",
            "Status kepemilikan bangunan tempat tinggal",
            (
                ("milik_sendiri", "Milik sendiri"),
                ("kontrak_sewa", "Kontrak/sewa"),
                ("bebas_sewa", "Bebas sewa"),
                ("dinas", "Dinas"),
                ("lainnya", "Lainnya"),
            ),
        ),
        _enum("programmes", "Program bantuan yang diterima", _PROGRAMMES, kind=K.ENUM_SET),
        _enum(
            "assets",
            "Aset yang dimiliki",
            (
                ("lpg_5_5kg", "Tabung gas 5,5 kg atau lebih"),
                ("kulkas", "Lemari es/kulkas"),
                ("ac", "AC"),
                ("sepeda_motor", "Sepeda motor"),
                ("mobil", "Mobil"),
                ("perahu", "Perahu/perahu motor"),
                ("lahan", "Lahan"),
                ("ternak", "Ternak"),
                ("emas_tabungan", "Emas/perhiasan/tabungan"),
            ),
            kind=K.ENUM_SET,
        ),
        _enum(
            "presence_status",
            "Status keberadaan keluarga",
            (
                ("ditemukan", "Ditemukan"),
                ("tidak_ditemukan", "Tidak ditemukan"),
                ("pindah", "Pindah"),
                ("meninggal", "Meninggal (seluruh anggota)"),
                ("ganda", "Data ganda"),
            ),
        ),
        # Written by the hub from the national publication (BPS, the 20th of each month).
        FieldSpec("decile", K.INT, "Desil", minimum=1, maximum=10, readonly=True),
        FieldSpec("decile_period", K.PERIOD, "Periode desil", readonly=True, since=2),
        FieldSpec(
            "eligible_programmes",
            K.ENUM_SET,
            "Program yang layak diterima",
            choices=tuple(code for code, _ in _PROGRAMMES),
            choice_labels=tuple(label for _, label in _PROGRAMMES),
            readonly=True,
            since=2,
        ),
        # Written by the hub when the district's verifier decides (docs/cycle.md).
        FieldSpec(
            "review_status",
            K.ENUM,
            "Hasil verifikasi kabupaten",
            choices=("disetujui", "ditolak", "periksa_lapangan"),
            choice_labels=("Disetujui", "Ditolak", "Perlu periksa lapangan"),
            readonly=True,
            since=2,
        ),
        FieldSpec(
            "review_note", K.TEXT, "Catatan verifikasi", max_length=1000, readonly=True, since=2
        ),
        FieldSpec("review_date", K.DATE, "Tanggal verifikasi", readonly=True, since=2),
        # The district's registry extract's own id of the family (docs/registry.md).
        FieldSpec(
            "registry_id", K.TEXT, "ID keluarga DTSEN", max_length=64, readonly=True, since=3
        ),
        _text("notes", "Catatan", 1000),
    ),
)

# --- member (anggota keluarga) ------------------------------------------------------------

MEMBER = EntitySchema(
    "member",
    "Anggota keluarga",
    (
        _ref("household_id", "Keluarga", "household", required=True),
        FieldSpec("nik", K.NIK, "NIK", True),
        _text("name", "Nama lengkap", 100, required=True),
        _enum(
            "relation_to_head",
            "Hubungan dengan kepala keluarga",
            (
                ("kepala_keluarga", "Kepala keluarga"),
                ("istri_suami", "Istri/suami"),
                ("anak", "Anak"),
                ("menantu", "Menantu"),
                ("cucu", "Cucu"),
                ("orang_tua", "Orang tua"),
                ("mertua", "Mertua"),
                ("famili_lain", "Famili lain"),
                ("lainnya", "Lainnya"),
            ),
            required=True,
        ),
        _enum(
            "sex",
            "Jenis kelamin",
            (("laki_laki", "Laki-laki"), ("perempuan", "Perempuan")),
            required=True,
        ),
        FieldSpec("birth_date", K.DATE, "Tanggal lahir", True),
        _text("birth_place", "Tempat lahir", 100),
        _enum(
            "marital_status",
            "Status perkawinan",
            (
                ("belum_kawin", "Belum kawin"),
                ("kawin", "Kawin"),
                ("cerai_hidup", "Cerai hidup"),
                ("cerai_mati", "Cerai mati"),
            ),
        ),
        _enum(
            "education",
            "Pendidikan tertinggi (ijazah)",
            (
                ("tidak_belum_sekolah", "Tidak/belum sekolah"),
                ("tidak_tamat_sd", "Tidak tamat SD/sederajat"),
                ("sd", "SD/sederajat"),
                ("smp", "SMP/sederajat"),
                ("sma", "SMA/SMK/sederajat"),
                ("d1_d3", "D1/D2/D3"),
                ("d4_s1", "D4/S1"),
                ("s2_s3", "S2/S3"),
            ),
        ),
        _text("occupation", "Pekerjaan", 100),
        _enum(
            "disability",
            "Disabilitas",
            (
                ("fisik", "Fisik"),
                ("intelektual", "Intelektual"),
                ("mental", "Mental"),
                ("sensorik_netra", "Sensorik netra"),
                ("sensorik_rungu", "Sensorik rungu"),
                ("sensorik_wicara", "Sensorik wicara"),
            ),
            kind=K.ENUM_SET,
        ),
        _enum(
            "chronic_illness",
            "Penyakit kronis/menahun",
            (
                ("hipertensi", "Hipertensi (darah tinggi)"),
                ("diabetes", "Diabetes (kencing manis)"),
                ("tbc", "TBC"),
                ("jantung", "Jantung"),
                ("kanker", "Kanker"),
                ("stroke", "Stroke"),
                ("ginjal", "Gagal ginjal"),
                ("lainnya", "Lainnya"),
            ),
            kind=K.ENUM_SET,
        ),
        FieldSpec("pregnant", K.BOOL, "Sedang hamil"),
        FieldSpec("registry_id", K.TEXT, "ID anggota DTSEN", max_length=64, readonly=True, since=3),
        # What the district's matching with the civil registry found (protocol/civil.py).
        FieldSpec(
            "civil_flags",
            K.ENUM_SET,
            "Pemadanan Dukcapil",
            choices=("nik_unknown", "name_differs", "birth_date_differs", "sex_differs"),
            choice_labels=(
                "NIK tidak ditemukan di Dukcapil",
                "Nama berbeda dengan Dukcapil",
                "Tanggal lahir berbeda dengan Dukcapil",
                "Jenis kelamin berbeda dengan Dukcapil",
            ),
            readonly=True,
            since=3,
        ),
        # Never delete a person: someone who moved or died gets a status.
        _enum(
            "status",
            "Status anggota",
            (
                ("aktif", "Aktif"),
                ("pindah", "Pindah"),
                ("meninggal", "Meninggal"),
                # Set by the district when the same person is recorded twice (docs/cycle.md).
                ("ganda", "Data ganda"),
            ),
            required=True,
            codes_since=(("ganda", 2),),
        ),
        # When the member died or moved out, and the document that says so.
        FieldSpec("status_date", K.DATE, "Tanggal meninggal/pindah", since=5),
        FieldSpec(
            "status_document",
            K.TEXT,
            "Nomor akta kematian / surat keterangan",
            max_length=100,
            since=5,
        ),
        # What the registers of protocol/vulnerable.py derive from (docs/posyandu.md §1).
        _enum(
            "school_status",
            "Status sekolah saat ini",
            (
                ("sekolah", "Masih sekolah"),
                ("tidak_sekolah", "Tidak/belum pernah sekolah"),
                ("putus_sekolah", "Putus sekolah / tidak melanjutkan"),
            ),
            since=7,
        ),
        # A choice, not a tick box: an unticked box would record "no" for every mother whose
        # form is saved, and only an empty field keeps the register's estimate.
        _enum(
            "breastfeeding",
            "Sedang menyusui",
            (("ya", "Ya, sedang menyusui"), ("tidak", "Tidak menyusui")),
            since=7,
        ),
        _enum(
            "health_insurance",
            "Jaminan kesehatan",
            (
                ("pbi_jk", "PBI-JK (dibayar APBN)"),
                ("pbi_daerah", "PBI daerah (dibayar APBD)"),
                ("bpjs_mandiri", "BPJS mandiri"),
                ("bpjs_ppu", "BPJS pekerja penerima upah"),
                ("lainnya", "Asuransi lain"),
                ("tidak_ada", "Tidak punya"),
            ),
            since=7,
        ),
    ),
)

# --- proposal (usulan to DTSEN) -----------------------------------------------------------

PROPOSAL = EntitySchema(
    "proposal",
    "Usulan",
    (
        _ref("household_id", "Keluarga", "household", required=True),
        _enum(
            "kind",
            "Jenis usulan",
            (
                ("usulan_baru", "Usulan keluarga baru"),
                ("perbaikan_data", "Perbaikan data"),
                ("sanggahan", "Sanggahan"),
                ("meninggal", "Meninggal"),
                ("pindah", "Pindah"),
                ("tidak_ditemukan", "Tidak ditemukan saat verifikasi lapangan"),
            ),
            required=True,
            codes_since=(("tidak_ditemukan", 4),),
        ),
        FieldSpec("period", K.PERIOD, "Periode (bulan)", True),
        _enum(
            "status",
            "Status usulan",
            (
                ("draf", "Draf"),
                ("disepakati_musdes", "Disepakati musyawarah desa"),
                ("disepakati_sptjm", "Disepakati dengan SPTJM"),
                ("dikirim", "Dikirim ke kabupaten/kota"),
                ("dikembalikan", "Dikembalikan"),
                ("diverifikasi", "Diverifikasi"),
                ("ditetapkan", "Ditetapkan"),
                ("ditolak", "Ditolak"),
            ),
            required=True,
        ),
        _text("agreement_ref", "Nomor berita acara musdes / SPTJM", 100),
        _text("description", "Keterangan", 2000),
        _text("return_reason", "Alasan dikembalikan", 1000),
    ),
)

# --- complaint (pengaduan) ----------------------------------------------------------------

COMPLAINT = EntitySchema(
    "complaint",
    "Pengaduan",
    (
        _enum(
            "channel",
            "Saluran pengaduan",
            (
                ("langsung", "Datang langsung"),
                ("cek_bansos", "Aplikasi Cek Bansos"),
                ("call_center_171", "Call center 171"),
                ("sms", "SMS"),
                ("whatsapp", "WhatsApp"),
                ("lapor", "LAPOR! (SP4N)"),
                ("rt_rw", "Melalui RT/RW"),
                ("musdes", "Musyawarah desa"),
                ("pendamping", "Pendamping PKH/sosial"),
            ),
            required=True,
        ),
        _enum(
            "category",
            "Kategori pengaduan",
            (
                ("data_tidak_valid", "Data tidak valid"),
                ("bantuan_belum_cair", "Bantuan belum cair/tidak diterima"),
                ("salah_sasaran", "Bantuan salah sasaran"),
                ("pemotongan", "Pemotongan bantuan"),
                ("pungutan_liar", "Pungutan liar"),
                ("akses_kesehatan_bpjs", "Akses layanan kesehatan/BPJS"),
                ("biaya_sekolah_ijazah", "Biaya sekolah/penebusan ijazah"),
                ("lainnya", "Lainnya"),
            ),
            required=True,
        ),
        _text("reporter_name", "Nama pelapor", 100),
        FieldSpec("anonymous", K.BOOL, "Pelapor minta dirahasiakan"),
        _text("reporter_contact", "Kontak pelapor", 100),
        _ref("household_id", "Keluarga terkait", "household"),
        _text("chronology", "Kronologi/uraian masalah", 4000, required=True),
        _enum(
            "status",
            "Status pengaduan",
            (
                ("baru", "Baru"),
                ("diproses", "Diproses"),
                ("dirujuk", "Dirujuk"),
                ("selesai", "Selesai"),
                ("ditolak", "Ditolak"),
            ),
            required=True,
        ),
        _text("rejection_reason", "Alasan ditolak", 1000),
        FieldSpec("due_date", K.DATE, "Batas waktu tindak lanjut"),
        FieldSpec("received_date", K.DATE, "Tanggal diterima", True),
    ),
)

# --- referral (rujukan) -------------------------------------------------------------------

REFERRAL = EntitySchema(
    "referral",
    "Rujukan",
    (
        _ref("complaint_id", "Pengaduan", "complaint"),
        _ref("member_id", "Anggota keluarga", "member"),
        _text("need", "Kebutuhan", 1000, required=True),
        _enum(
            "destination",
            "Tujuan rujukan",
            (
                ("dinas_sosial", "Dinas Sosial"),
                ("pendamping_pkh", "Pendamping PKH"),
                ("puskesmas_posyandu", "Puskesmas/Posyandu"),
                ("sekolah", "Sekolah"),
                ("lainnya", "Lainnya"),
            ),
            required=True,
        ),
        _text("destination_name", "Nama instansi/petugas tujuan", 200),
        _text("letter_number", "Nomor surat rujukan", 100),
        _enum(
            "status",
            "Status rujukan",
            (
                ("dirujuk", "Dirujuk"),
                ("diterima", "Diterima"),
                ("dilayani", "Dilayani"),
                ("ditolak", "Ditolak"),
                ("selesai", "Selesai"),
            ),
            required=True,
        ),
        _text("outcome", "Hasil tindak lanjut", 2000),
        FieldSpec("follow_up_date", K.DATE, "Tanggal tindak lanjut"),
    ),
)

# --- visit (kunjungan verifikasi lapangan) ------------------------------------------------

#: What an officer found at the door; the household's ``presence_status`` takes it.
_OUTCOMES = HOUSEHOLD.fields["presence_status"]

VISIT = EntitySchema(
    "visit",
    "Kunjungan verifikasi",
    (
        _ref("household_id", "Keluarga", "household", required=True),
        FieldSpec("visit_date", K.DATE, "Tanggal kunjungan", True),
        _text("officer", "Petugas", 100, required=True),
        _enum(
            "outcome",
            "Hasil kunjungan",
            tuple(zip(_OUTCOMES.choices, _OUTCOMES.choice_labels, strict=True)),
            required=True,
        ),
        _text("notes", "Catatan", 1000),
    ),
    since=4,
)

#: A visit outcome → the proposal (usulan) kind it makes.
VISIT_PROPOSALS: Mapping[str, str] = MappingProxyType(
    {"tidak_ditemukan": "tidak_ditemukan", "pindah": "pindah", "meninggal": "meninggal"}
)

# --- layanan (a service given at the Posyandu or on a home visit) -------------------------

#: The six fields of the minimum service standards (SPM) the integrated Posyandu serves.
SPM_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "pendidikan": "Pendidikan",
        "kesehatan": "Kesehatan",
        "pekerjaan_umum": "Pekerjaan umum",
        "perumahan_rakyat": "Perumahan rakyat",
        "trantibum": "Ketenteraman dan ketertiban umum",
        "sosial": "Sosial",
    }
)


@dataclass(frozen=True, slots=True)
class ServiceType:
    """A kind of service: its SPM field, the vulnerable-group register it serves (a code
    of :data:`protocol.vulnerable.REGISTERS`, empty for anyone), the measurements it
    records, and whether it is a referral (counted as one in the monthly report)."""

    code: str
    label: str
    spm: str
    group: str = ""
    measures: tuple[str, ...] = ()
    referral: bool = False


_SERVICE_TYPES = (
    ServiceType(
        "penimbangan_balita", "Penimbangan balita", "kesehatan", "balita",
        ("weight_kg", "height_cm", "muac_cm"),
    ),
    ServiceType(
        "pemeriksaan_ibu_hamil", "Pemeriksaan ibu hamil", "kesehatan", "ibu-hamil",
        ("weight_kg", "muac_cm"),
    ),
    ServiceType("konseling_ibu_menyusui", "Konseling ibu menyusui", "kesehatan", "ibu-menyusui"),
    ServiceType(
        "pemeriksaan_lansia", "Pemeriksaan lansia", "kesehatan", "lansia",
        ("weight_kg", "height_cm"),
    ),
    ServiceType("imunisasi", "Imunisasi", "kesehatan", "balita"),
    ServiceType("rujukan_puskesmas", "Rujukan ke Puskesmas", "kesehatan", referral=True),
    ServiceType(
        "rujukan_sekolah", "Rujukan sekolah", "pendidikan", "anak-usia-sekolah", referral=True
    ),
    ServiceType("pendaftaran_paud", "Pendaftaran PAUD", "pendidikan"),
    ServiceType("air_bersih_sanitasi", "Air bersih dan sanitasi", "pekerjaan_umum"),
    ServiceType("rumah_tidak_layak_huni", "Pendataan rumah tidak layak huni", "perumahan_rakyat"),
    ServiceType("ketertiban_kebencanaan", "Ketertiban dan siaga bencana", "trantibum"),
    ServiceType("pendampingan_disabilitas", "Pendampingan disabilitas", "sosial", "disabilitas"),
    ServiceType("pengurusan_adminduk", "Pengurusan adminduk (KTP, KK, akta)", "sosial"),
    ServiceType("penyaluran_bansos", "Penyaluran bansos", "sosial"),
    ServiceType("rujukan_dinas_sosial", "Rujukan ke Dinas Sosial", "sosial", referral=True),
)  # fmt: skip

#: Every service type, by code, in the order forms offer them.
SERVICE_TYPES: Mapping[str, ServiceType] = MappingProxyType({t.code: t for t in _SERVICE_TYPES})

LAYANAN = EntitySchema(
    "layanan",
    "Layanan Posyandu",
    (
        _ref("household_id", "Keluarga", "household", required=True),
        _ref("member_id", "Anggota keluarga", "member", required=True),
        FieldSpec("service_date", K.DATE, "Tanggal layanan", True),
        _enum("spm_field", "Bidang SPM", tuple(SPM_FIELDS.items()), required=True),
        _enum(
            "service_type",
            "Jenis layanan",
            tuple((t.code, t.label) for t in _SERVICE_TYPES),
            required=True,
        ),
        _text("officer", "Petugas", 100, required=True),
        _enum(
            "officer_role",
            "Peran petugas",
            (("kader", "Kader"), ("operator", "Operator"), ("pendamping", "Pendamping")),
            required=True,
        ),
        # Wide bounds for any person; protocol.posyandu narrows them per service type.
        FieldSpec("weight_kg", K.DECIMAL, "Berat badan (kg)", minimum=0.5, maximum=250),
        FieldSpec("height_cm", K.DECIMAL, "Tinggi/panjang badan (cm)", minimum=30, maximum=250),
        FieldSpec("muac_cm", K.DECIMAL, "Lingkar lengan atas/LiLA (cm)", minimum=5, maximum=60),
        FieldSpec("referred", K.BOOL, "Dirujuk ke Puskesmas/instansi lain"),
        _text("notes", "Catatan", 1000),
    ),
    since=6,
)

#: Every entity, by wire name. The codec, the stores and validation all look here.
ENTITIES: Mapping[str, EntitySchema] = MappingProxyType(
    {
        entity.name: entity
        for entity in (HOUSEHOLD, MEMBER, PROPOSAL, COMPLAINT, REFERRAL, VISIT, LAYANAN)
    }
)

# --- status workflows ---------------------------------------------------------------------

#: Usulan: agreed by the village deliberation (or an SPTJM statement), sent to the district,
#: returned for correction (back to draft) or verified, then set or refused.
PROPOSAL_TRANSITIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "draf": ("disepakati_musdes", "disepakati_sptjm"),
        "disepakati_musdes": ("dikirim", "draf"),
        "disepakati_sptjm": ("dikirim", "draf"),
        "dikirim": ("dikembalikan", "diverifikasi"),
        "dikembalikan": ("draf",),
        "diverifikasi": ("ditetapkan", "ditolak"),
        "ditetapkan": (),
        "ditolak": (),
    }
)

#: Pengaduan: taken up, possibly referred (a refused referral brings it back to
#: "diproses"), then closed as resolved or refused. Closed cases stay closed: a resident
#: who comes back opens a new complaint, so the history of each case stays readable.
COMPLAINT_TRANSITIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "baru": ("diproses", "ditolak"),
        "diproses": ("dirujuk", "selesai", "ditolak"),
        "dirujuk": ("diproses", "selesai", "ditolak"),
        "selesai": (),
        "ditolak": (),
    }
)

#: Rujukan: the destination accepts or refuses, serves the person, and the case is closed.
REFERRAL_TRANSITIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "dirujuk": ("diterima", "ditolak"),
        "diterima": ("dilayani", "ditolak"),
        "dilayani": ("selesai",),
        "ditolak": (),
        "selesai": (),
    }
)


@dataclass(frozen=True, slots=True)
class Workflow:
    """How an entity's status field may move.

    ``initial``: the statuses a new record may start in. ``transitions``: status → the
    statuses it may move to. ``reasons``: status → the text field that must be filled
    while the record is in that status (a refusal needs its reason).
    """

    field: str
    initial: tuple[str, ...]
    transitions: Mapping[str, tuple[str, ...]]
    reasons: Mapping[str, str]


#: Entities with a status workflow, by wire name.
WORKFLOWS: Mapping[str, Workflow] = MappingProxyType(
    {
        "proposal": Workflow(
            "status",
            ("draf",),
            PROPOSAL_TRANSITIONS,
            MappingProxyType(
                {
                    "disepakati_musdes": "agreement_ref",
                    "disepakati_sptjm": "agreement_ref",
                    "dikirim": "agreement_ref",
                    "dikembalikan": "return_reason",
                }
            ),
        ),
        "complaint": Workflow(
            "status",
            ("baru", "diproses"),
            COMPLAINT_TRANSITIONS,
            MappingProxyType({"ditolak": "rejection_reason"}),
        ),
        "referral": Workflow(
            "status",
            ("dirujuk",),
            REFERRAL_TRANSITIONS,
            MappingProxyType({"ditolak": "outcome"}),
        ),
    }
)


def household_of(entity: str, record_id: str, shown: Mapping[str, object]) -> str | None:
    """The household a record belongs to: itself for a household, else its
    ``household_id`` field (members, proposals, complaints may have one)."""
    if entity == "household":
        return record_id
    parent = shown.get("household_id")
    return parent if isinstance(parent, str) else None


def shown_status(entity: str, shown: Mapping[str, object]) -> str | None:
    """A record's status as lists show it: a household's ``presence_status``, else its
    ``status`` (``None`` when it has none)."""
    status = shown.get("presence_status" if entity == "household" else "status")
    return status if isinstance(status, str) else None


def known_state(
    entity: str, state: Mapping[str, tuple[FieldVersion, ...]], schema: int
) -> dict[str, tuple[FieldVersion, ...]]:
    """What of a record's merge state a receiver at entity schema version ``schema`` can
    read: the fields it knows, each with every version's value known to it (a field with
    a code it lacks is left out whole, so it keeps what it had). Empty when it does not
    know the entity."""
    spec = ENTITIES.get(entity)
    if spec is None or spec.since > schema:
        return {}
    kept = {}
    for name, frontier in state.items():
        field_spec = spec.fields.get(name)
        if field_spec is not None and all(field_spec.known_in(schema, v.value) for v in frontier):
            kept[name] = frontier
    return kept
