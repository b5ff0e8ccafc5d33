"""Every metric the edge and the hub expose is in the catalogue (``monitoring/METRICS.md``),
every catalogued metric is exposed, and all follow Prometheus' naming rules with bounded
labels: what ops teams build their dashboards and alerts on cannot drift from what runs."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from puskesos.fleet import Box, Fleet, Hub, puskesos
from tests.e2e.conftest import QUICK, VILLAGE_A, register, wait_for
from tests.hub.test_registry import household_row, member_rows, write_csv
from tests.metrics_text import value
from tests.monitoring.catalogue import entries

pytestmark = pytest.mark.slow

#: Shown only where the machine has a sensor (a Raspberry Pi has; a CI machine may not).
WHERE_READABLE = {"puskesos_edge_cpu_temperature_celsius", "puskesos_box_cpu_temperature_celsius"}
#: Label names a metric may have: each is bounded by code lists, route templates or the
#: device registry. A NIK, record id or user name must never be a label.
BOUNDED_LABELS = {
    "district",
    "village",
    "node",
    "entity",
    "reason",
    "outcome",
    "method",
    "route",
    "software",
    "wire",
    "state",  # of a household in the verification round: five values
    "register",  # a vulnerable-group register: protocol.vulnerable.REGISTERS, eight
    "spm",  # an SPM field: protocol.entities.SPM_FIELDS, six
    "flag",  # a Posyandu flag: protocol.posyandu.Flag, two
}
#: Units Prometheus asks for, by what a name measures.
UNIT_WORDS = {
    "_seconds": ("duration", "age", "uptime", "timestamp", "offset", "ahead"),
    "_bytes": ("size", "free", "bytes"),
    "_celsius": ("temperature",),
}
NOT_BASE_UNITS = re.compile(
    r"_(ms|milliseconds|minutes|hours|days|kb|kilobytes|mb|megabytes|pct)(_|$)"
)


def exposed(url: str) -> dict[str, tuple[str, str, set[str]]]:
    """Metric name (counters with ``_total``) → (type, HELP, label names) of a /metrics page."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k not in ("le", "quantile")}
        found[name] = (family.type, family.documentation, labels)
    return found


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    """A hub and a box that has reported, with the broker's statistics arrived."""
    fleet = Fleet(tmp_path_factory.mktemp("district"), sync=replace(QUICK, telemetry_interval_s=1))
    fleet.add_hub(start=False)
    box = fleet.enrol(VILLAGE_A, "edge-a")
    fleet.start()
    try:
        yield from _reported(fleet, box)
    finally:
        fleet.stop()


def _reported(fleet: Fleet, box: Box) -> Iterator[tuple[Hub, Box]]:
    register(box, seed=1)
    hub = fleet.hubs[0]
    # The district's extract, imported twice: the newer one no longer lists household 2.
    for number, households in enumerate(((1, 2), (1,))):
        rows = [row for h in households for row in (household_row(h), *member_rows(h))]
        extract = write_csv(fleet.root / f"dtsen-{number}.csv", rows)
        puskesos("hub", "registry", "import", str(extract), "--config", str(hub.config))

    def ready() -> bool:
        with urllib.request.urlopen(hub.service.plain_url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        return bool(
            value(text, "puskesos_box_uptime_seconds", node="edge-a")
            and value(text, "puskesos_hub_village_records", entity="household")
            and value(text, "puskesos_broker_uptime_seconds")
        )

    wait_for(ready, 40, "the box's report and the broker's statistics at the hub")
    yield hub, box


def test_what_runs_is_what_the_catalogue_lists(district):
    hub, box = district
    catalogue = entries()
    live = {**exposed(box.service.plain_url), **exposed(hub.service.plain_url)}
    listed = {name for name, entry in catalogue.items() if not entry.pending}
    ours = {name for name in live if not name.startswith("process_")}
    missing = listed - live.keys() - WHERE_READABLE
    unlisted = ours - listed
    assert not missing, f"catalogued but not exposed: {sorted(missing)}"
    assert not unlisted, f"exposed but not in monitoring/METRICS.md: {sorted(unlisted)}"
    for name, (kind, _help, labels) in live.items():
        if name.startswith("process_"):
            continue
        entry = catalogue[name]
        assert entry.kind.startswith(kind), f"{name} is a {kind}, catalogued as {entry.kind}"
        if labels or name not in WHERE_READABLE:  # a family without samples shows no labels
            assert labels == entry.labels, f"{name} has labels {labels}, not {entry.labels}"
    pending = {name for name, entry in catalogue.items() if entry.pending}
    assert not pending & live.keys(), (
        "these are exposed now: move them out of 'Provided with the monthly cycle'"
    )


def test_every_metric_follows_the_naming_rules(district):
    hub, box = district
    for url in (box.service.plain_url, hub.service.plain_url):
        for name, (kind, help_text, labels) in exposed(url).items():
            if name.startswith("process_"):
                continue
            assert name.startswith(("puskesos_edge_", "puskesos_hub_", "puskesos_box_",
                                    "puskesos_broker_")), name  # fmt: skip
            assert help_text.strip(), f"{name} has no HELP text"
            assert (kind == "counter") == name.endswith("_total"), f"{name} is a {kind}"
            assert not NOT_BASE_UNITS.search(name), f"{name}: use base units"
            for unit, words in UNIT_WORDS.items():
                if any(f"_{word}" in name for word in words):
                    assert name.removesuffix("_total").endswith(unit), f"{name} wants {unit}"
            assert labels <= BOUNDED_LABELS, f"{name} has unbounded labels {labels}"


def test_label_values_name_no_person_and_no_record(district):
    hub, box = district
    personal = re.compile(r"\d{16}|[0-9a-f]{8}-[0-9a-f]{4}-")  # a NIK or KK, a record id
    for url in (box.service.plain_url, hub.service.plain_url):
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for label, text_value in sample.labels.items():
                    assert not personal.search(text_value), (sample.name, label, text_value)


def test_the_registry_state_of_each_village_is_on_metrics(district):
    hub, _ = district
    with urllib.request.urlopen(hub.service.plain_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    listed = "puskesos_hub_village_registry_listed_records"
    missing = "puskesos_hub_village_registry_missing_records"
    assert value(text, listed, village=VILLAGE_A, entity="household") == 1
    assert value(text, listed, village=VILLAGE_A, entity="member") == 2
    assert value(text, missing, village=VILLAGE_A, entity="household") == 1
    assert value(text, missing, village=VILLAGE_A, entity="member") == 2
