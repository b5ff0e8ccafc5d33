"""The Prometheus side of monitoring: what an ops team loads into Prometheus must be valid,
every alert must say how bad it is and where its runbook section is, every alert must have
promtool unit tests that show it firing and staying silent, and the rules may only use
metrics that the hub and the boxes really expose (``monitoring/METRICS.md``).

The PromQL helpers here are shared with ``test_dashboards.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.catalogue import ROOT, entries

PROMETHEUS = ROOT / "monitoring" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
EDGE_TARGETS = PROMETHEUS / "edge-targets.yml"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.rules.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
RUNBOOK = ROOT / "monitoring" / "RUNBOOK.md"
RUNBOOK_URL = "https://github.com/puskesos/puskesos-sync/blob/main/monitoring/RUNBOOK.md#"
SEVERITIES = {"critical", "warning", "info"}

# --- PromQL: which metrics an expression names --------------------------------------------

_NAME_MATCHER = re.compile(r"""__name__\s*=\s*["']([a-zA-Z_:][\w:]*)["']""")
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_COMMENT = re.compile(r"#[^\n]*")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
#: An identifier that is not the tail of a number (``1e3``) or of a duration (``5m``).
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
}
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    aggregations or keywords, outside label matchers, grouping lists and strings."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _COMMENT.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def unknown_metrics(expr: str) -> set[str]:
    """Names in ``expr`` that are not in the catalogue.

    ``up`` (Prometheus' own) is allowed, and so are a histogram's ``_bucket``/``_sum``/``_count``
    series and the standard ``process_*`` metrics the catalogue lists as ``standard``.
    """
    catalogue = entries()
    standard = any(
        e.kind == "standard" and e.name.startswith("process_") for e in catalogue.values()
    )
    return {
        name
        for name in metric_names(expr) - set(catalogue) - {"up"}
        if not _histogram_of(name) and not (standard and name.startswith("process_"))
    }


def _histogram_of(name: str) -> str | None:
    """The catalogue histogram whose ``_bucket``/``_sum``/``_count`` series ``name`` is."""
    catalogue = entries()
    for suffix in _HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and base in catalogue and catalogue[base].kind == "histogram":
            return base
    return None


def label_names(expr: str) -> set[str]:
    """The label names an expression matches on or groups by."""
    text = _COMMENT.sub("", _STRING.sub('""', expr))
    names = set()
    for block in _MATCHERS.findall(text):
        names |= set(_MATCHER_LABEL.findall(block))
    for group in _GROUPING.findall(text):
        names |= {label.strip() for label in group.split(",") if label.strip()}
    return names - {"__name__"}


def unknown_labels(expr: str) -> set[str]:
    """Labels in ``expr`` that none of the metrics it names carries: the catalogue's labels,
    plus ``job`` and ``instance`` (every target), ``le`` (a histogram's buckets) and the
    labels the example edge targets file gives the boxes Prometheus scrapes itself."""
    catalogue = entries()
    known = {"job", "instance"}
    for name in metric_names(expr):
        if histogram := _histogram_of(name):
            known |= catalogue[histogram].labels | {"le"}
        elif name in catalogue:
            known |= catalogue[name].labels
        if name.startswith("puskesos_edge_"):
            known |= edge_target_labels()
    return label_names(expr) - known


def edge_target_labels() -> set[str]:
    """Labels that ``edge-targets.yml`` puts on the scraped boxes (district, village, node)."""
    groups = yaml.safe_load(EDGE_TARGETS.read_text(encoding="utf-8"))
    return {label for group in groups for label in group.get("labels", {})}


def promtool(*args: str | Path) -> str:
    """Run ``promtool`` and return its output; fails the test with it when promtool fails."""
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (tests/run.sh installs the prometheus package)"
    done = subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


# --- the rule files -----------------------------------------------------------------------


def rules() -> Iterator[dict[str, Any]]:
    """Every rule (alerting and recording) of every rule file."""
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            yield from group["rules"]


def alerts() -> dict[str, dict[str, Any]]:
    """Alert name → its rule."""
    found: dict[str, dict[str, Any]] = {}
    for rule in rules():
        if "alert" in rule:
            assert rule["alert"] not in found, f"alert {rule['alert']} is defined twice"
            found[rule["alert"]] = rule
    return found


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the ``## `` headings of the runbook (lowercased, for our names)."""
    text = RUNBOOK.read_text(encoding="utf-8")
    return {m.lower() for m in re.findall(r"^## (\S+)\s*$", text, flags=re.MULTILINE)}


ALERT_NAMES = sorted(alerts())


def test_metric_names_skip_functions_keywords_labels_and_strings() -> None:
    expr = """
      sum by (district, reason) (
        increase(puskesos_hub_batches_rejected_total{reason=~"node|on|by", job='x'}[1h:5m])
      ) > 1e3
      and on (district) group_left (village)
      max without (instance) (puskesos_box_online offset 1d) unless bool absent(up)
      or histogram_quantile(0.99, rate(puskesos_hub_apply_duration_seconds_bucket[5m]))
      or {__name__="puskesos_broker_uptime_seconds"}  # a comment naming not_a_metric
    """
    assert metric_names(expr) == {
        "puskesos_hub_batches_rejected_total",
        "puskesos_box_online",
        "up",
        "puskesos_hub_apply_duration_seconds_bucket",
        "puskesos_broker_uptime_seconds",
    }
    assert unknown_metrics(expr) == set()
    assert label_names(expr) == {"district", "reason", "job", "village", "instance"}
    assert unknown_labels(expr) == set()
    assert unknown_labels("sum by (vilage) (puskesos_box_online)") == {"vilage"}
    assert unknown_metrics("rate(puskesos_hub_batches_totl[5m])") == {"puskesos_hub_batches_totl"}
    assert unknown_metrics("puskesos_box_online_bucket") == {"puskesos_box_online_bucket"}


def test_rule_files_pass_promtool_check() -> None:
    assert RULE_FILES, "no rule files in monitoring/prometheus/rules"
    output = promtool("check", "rules", *RULE_FILES)
    assert output.count("SUCCESS") == len(RULE_FILES)


def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES, "no promtool tests in monitoring/prometheus/tests"
    output = promtool("test", "rules", *TEST_FILES)
    assert output.count("SUCCESS") == len(TEST_FILES)


def test_example_prometheus_config_loads_every_rule_file() -> None:
    # promtool resolves rule_files and file_sd files relative to the configuration, wherever
    # it is run from, and checks the edge targets file too.
    output = promtool("check", "config", CONFIG)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in output
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"puskesos-hub", "puskesos-edge"}
    for sd in jobs["puskesos-edge"]["file_sd_configs"]:
        for pattern in sd["files"]:
            assert list(CONFIG.parent.glob(pattern)), f"no edge targets file {pattern}"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_says_how_long_how_bad_what_and_where_to_read_more(name: str) -> None:
    rule = alerts()[name]
    assert rule.get("for"), f"{name} has no for:"
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip()
    assert annotations.get("description", "").strip()
    assert annotations.get("runbook_url") == RUNBOOK_URL + name.lower()
    assert name.lower() in runbook_anchors(), f"monitoring/RUNBOOK.md has no '## {name}'"


def test_runbook_sections_are_alerts_of_the_rules() -> None:
    alert_anchors = {name.lower() for name in ALERT_NAMES}
    orphans = {a for a in runbook_anchors() if a.startswith("puskesos")} - alert_anchors
    assert not orphans, f"runbook sections for alerts that do not exist: {sorted(orphans)}"


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    defined = set(ALERT_NAMES)
    assert not (firing | silent) - defined, (
        f"tests of unknown alerts: {(firing | silent) - defined}"
    )
    assert not defined - firing, f"never seen firing: {sorted(defined - firing)}"
    assert not defined - silent, f"never seen silent: {sorted(defined - silent)}"


@pytest.mark.parametrize(
    "rule", list(rules()), ids=lambda rule: rule.get("alert") or rule.get("record")
)
def test_rule_uses_only_catalogue_metrics(rule: dict[str, Any]) -> None:
    assert unknown_metrics(rule["expr"]) == set(), "not in monitoring/METRICS.md"
