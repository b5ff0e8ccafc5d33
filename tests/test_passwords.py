"""The password rule of box and hub accounts (puskesos/passwords.py)."""

from __future__ import annotations

import pytest

from puskesos.passwords import WeakPassword, check_password, place_words, weakness

#: Kelurahan Wanaherang, Kecamatan Gunung Putri, Kabupaten Bogor.
VILLAGE = "3201022001"


@pytest.mark.parametrize(
    "password",
    ["password123", "12345678910", "Bismillah2026!", "p@ssw0rd!!", "indonesia1", "qwerty12345",
     "Puskesos2026", "ADMIN12345", "aaaaaaaaaaaa", "08123456789", "alhamdulillah"],
)  # fmt: skip
def test_common_passwords_are_refused_even_dressed_up(password):
    assert weakness(password).code == "common"


def test_a_password_needs_ten_characters():
    assert weakness("Kopi-9").code == "too_short"
    assert weakness("Kopi-Tubruk") is None


def test_the_user_name_and_the_places_of_the_box_are_refused_inside_a_password():
    places = place_words(VILLAGE)
    assert {"wanaherang", "gunungputri", "bogor", VILLAGE} <= set(places)
    assert weakness("budi.santoso-99", username="budi.santoso").code == "has_username"
    assert weakness("Gunung Putri 2026", places=places).code == "has_place"
    assert weakness(f"jalan-{VILLAGE}-x", places=places).code == "has_place"
    assert place_words("") == () and place_words("9999") == ()


def test_good_passwords_pass_and_a_weak_one_says_why_in_both_languages():
    for password in ("rahasia-desa-123", "kopi-tubruk-2026", "sawah hijau tiga petak"):
        assert weakness(password, username="operator1", places=place_words(VILLAGE)) is None
    with pytest.raises(WeakPassword) as refused:
        check_password("pendek")
    assert str(refused.value) == (
        "a password needs at least 10 characters (Kata sandi minimal 10 karakter.)"
    )
