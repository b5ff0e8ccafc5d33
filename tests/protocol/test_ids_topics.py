"""Record ids sort by creation; topics build and parse one way only."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import TopicError
from protocol.ids import UuidV7Generator, is_node_id, uuid7
from protocol.topics import Topic, TopicKind, hub_filters, node_prefix, parse_topic

NOV_2026 = 1_795_478_400_000


def test_uuid7_carries_its_millisecond_and_is_version_7():
    value = uuid.UUID(UuidV7Generator()(NOV_2026))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == NOV_2026


def test_the_shared_generator_never_goes_back_in_one_process():
    later = uuid7(NOV_2026 + 1000)
    assert uuid7(NOV_2026) > later


def test_ids_made_in_one_millisecond_or_after_the_clock_went_back_still_increase():
    make = UuidV7Generator()
    ids = [make(NOV_2026) for _ in range(10_000)] + [make(NOV_2026 - 86_400_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("edge-3201012001-a", True),
        ("hub-1", True),
        ("ab", False),
        ("Edge-1", False),
        ("edge/1", False),
        ("edge+1", False),
        ("-edge", False),
        ("a" * 48, True),
        ("a" * 49, False),
    ],
)
def test_node_ids_are_safe_topic_levels_and_user_names(text, ok):
    assert is_node_id(text) is ok


def test_topic_tree_round_trips():
    topic = Topic("3201012001", "edge-a", TopicKind.UP)
    assert str(topic) == "puskesos/v1/3201/3201012001/edge-a/up"
    assert parse_topic(str(topic)) == topic
    assert topic.district == "3201"
    assert node_prefix("3201012001", "edge-a") == "puskesos/v1/3201/3201012001/edge-a"


@pytest.mark.parametrize(
    "text",
    [
        "puskesos/v2/3201/3201012001/edge-a/up",
        "puskesos/v1/3202/3201012001/edge-a/up",
        "puskesos/v1/3201/3201012001/edge-a/sideways",
        "puskesos/v1/3201/3201012001/EDGE/up",
        "puskesos/v1/3201/32010120/edge-a/up",
        "puskesos/v1/3201/3201012001/edge-a/up/extra",
        "",
    ],
)
def test_foreign_topics_are_refused(text):
    with pytest.raises(TopicError):
        parse_topic(text)


@given(st.text(max_size=80))
def test_parsing_any_text_raises_only_topic_errors(text):
    with contextlib.suppress(TopicError):
        parse_topic(text)


def test_hub_subscribes_to_what_boxes_publish_with_a_shared_group():
    assert hub_filters() == [
        "$share/hub/puskesos/v1/+/+/+/up",
        "$share/hub/puskesos/v1/+/+/+/down-ack",
        "$share/hub/puskesos/v1/+/+/+/telemetry",
        "$share/hub/puskesos/v1/+/+/+/status",
    ]
    assert hub_filters((TopicKind.UP,), district="3201", share_group=None) == [
        "puskesos/v1/3201/+/+/up"
    ]
