"""The search rules of the box (``puskesos.search``) without a database: how text is folded,
what a query asks for, and how long a NIK search's token answers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from puskesos.search import Query, SearchTokens, fold, parse_query, search_key

NIK = "3201024506900003"


@given(st.text())
def test_folding_twice_changes_nothing(text: str) -> None:
    assert fold(fold(text)) == fold(text)


@given(st.text(alphabet=st.characters(categories=("L", "Zs")), min_size=1), st.data())
def test_a_name_is_found_by_any_part_of_it(name: str, data: st.DataObject) -> None:
    key = search_key("member", {"name": name}) or ""
    start = data.draw(st.integers(0, len(key)))
    part = key[start : data.draw(st.integers(start, len(key)))]
    assert parse_query(part).text in key


def test_capitals_and_latin_accents_do_not_matter() -> None:
    assert fold("  DÉSY   Ratnasari ") == fold("desy ratnasari") == "desy ratnasari"
    assert fold("Muhammad Şükrü") == "muhammad sukru"


def test_a_query_is_a_number_or_text_and_an_rt_rw() -> None:
    assert parse_query(NIK) == Query(number=NIK)
    assert parse_query(f"KK {NIK[:4]}-{NIK[4:8]} {NIK[8:]}") == Query(number=NIK)
    assert parse_query("Kp. Babakan RT 03/RW 5") == Query(text="kp. babakan", rt="03", rw="5")
    assert parse_query("003/005") == Query(rt="003", rw="005")
    assert parse_query("rw.7 siti") == Query(text="siti", rw="7")
    assert not parse_query("  ")


def test_typed_text_never_matches_the_rt_and_rw_of_an_address() -> None:
    key = search_key("household", {"address": "Kp. Babakan", "rt": "003", "rw": "005"}) or ""
    assert parse_query("RT 3 RW 5").area in key and parse_query("rt 3").area in key
    assert parse_query("rt 5").area not in key
    assert all(parse_query(text).text not in key for text in ("3", "5", "d", "rtd", "r"))


def test_a_search_token_answers_its_user_until_it_expires() -> None:
    tokens = SearchTokens(lifetime_ms=1000, capacity=2)
    token = tokens.hold("operator1", NIK, now_ms=0)
    assert NIK not in token
    assert tokens.number(token, "operator1", now_ms=999) == NIK
    assert tokens.number(token, "kades", now_ms=1) is None
    assert tokens.number(token, "operator1", now_ms=1000) is None
    first = tokens.hold("operator1", NIK, now_ms=0)
    tokens.hold("operator1", NIK, now_ms=0)
    tokens.hold("operator1", NIK, now_ms=0)
    assert tokens.number(first, "operator1", now_ms=1) is None  # the oldest went first
