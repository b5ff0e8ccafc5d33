"""The Grafana dashboards an ops team imports must load, lay out, reach the provisioned
Prometheus, and query only metrics and labels that exist, in valid PromQL (checked by
promtool, with Grafana's variables filled in): a panel that silently shows "No data"
because a metric was renamed is what this catches."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.catalogue import ROOT, entries
from tests.monitoring.test_rules import RUNBOOK, promtool, unknown_labels, unknown_metrics

GRAFANA = ROOT / "monitoring" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "puskesos.yml"
#: Grafana's interval variables → a duration PromQL accepts.
_INTERVALS = re.compile(r"\$\{?__(?:rate_interval|interval|range)\b\}?")
#: A dashboard variable (``$village``, ``${village}``, ``${village:regex}``) → a label value.
_VARIABLE = re.compile(r"\$(?:\{\w+(?::\w+)?\}|\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def load(path: Path) -> dict[str, Any]:
    """One dashboard's JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(key, title, PromQL) of every panel target (key ``panel_<id>_<refId>``) and of every
    template variable's selector (key ``variable_<name>``)."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel_{panel['id']}_{target['refId']}", panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["definition"])
            assert match, f"variable {variable['name']}: not label_values(selector, label)"
            yield f"variable_{variable['name']}", f"${variable['name']}", match["selector"]


def filled_in(expr: str) -> str:
    """``expr`` with Grafana's variables replaced the way Grafana would."""
    return _VARIABLE.sub("3201", _INTERVALS.sub("5m", expr))


def provisioned_uid() -> str:
    """The uid of the provisioned Prometheus data source."""
    (source,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert source["type"] == "prometheus"
    return source["uid"]


def by_name() -> dict[str, dict[str, Any]]:
    """File name → dashboard."""
    return {path.name: load(path) for path in DASHBOARDS}


def test_the_three_dashboards_load_with_unique_uids() -> None:
    dashboards = by_name()
    assert set(dashboards) == {"district-overview.json", "hub-internals.json", "box.json"}
    uids = [d["uid"] for d in dashboards.values()]
    titles = [d["title"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    for dashboard in dashboards.values():
        assert 36 <= dashboard["schemaVersion"] <= 41
        assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
        assert dashboard["templating"]["list"] is not None


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_has_a_title_and_its_own_place_on_the_grid(path: Path) -> None:
    dashboard = load(path)
    cells: dict[tuple[int, int], str] = {}
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    for panel in panels(dashboard):
        assert panel.get("title", "").strip(), f"panel {panel['id']} has no title"
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(set(refs)) == len(refs), f"{panel['title']}: refIds repeat"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_and_variables_query_the_provisioned_prometheus(path: Path) -> None:
    dashboard = load(path)
    uid = provisioned_uid()
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, variable["name"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_queries_name_only_catalogue_metrics_and_their_labels(path: Path) -> None:
    for key, title, expr in queries(load(path)):
        assert unknown_metrics(expr) == set(), f"{path.name} {key} ({title}): not in METRICS.md"
        assert unknown_labels(expr) == set(), f"{path.name} {key} ({title}): no such label"


def test_variables_offer_labels_their_metric_has() -> None:
    catalogue = entries()
    box = by_name()["box.json"]
    assert [v["name"] for v in box["templating"]["list"]] == ["district", "village", "node"]
    for dashboard in by_name().values():
        for variable in dashboard["templating"]["list"]:
            match = _LABEL_VALUES.match(variable["definition"])
            assert match and variable["query"]["query"] == variable["definition"]
            metric = match["selector"].split("{")[0]
            labels = catalogue[metric].labels if metric in catalogue else {"job", "instance"}
            assert match["label"] in labels, f"{variable['name']}: {metric} has no {match['label']}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # Recording rules named after where each query is (box_panel_12_A), so that promtool's
    # complaint names the panel.
    rules = [
        {"record": f"{path.stem.replace('-', '_')}_{key}", "expr": filled_in(expr)}
        for path in DASHBOARDS
        for key, _, expr in queries(load(path))
    ]
    assert len(rules) > 40
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    promtool("check", "rules", path)


def test_provisioning_points_grafana_at_these_dashboards() -> None:
    (provider,) = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file"
    installed = provider["options"]["path"]
    # The runbook's setup copies this folder to the provider's path.
    runbook = RUNBOOK.read_text(encoding="utf-8")
    copy = re.search(
        rf"^\s*(?:sudo )?cp (?:-\S+ )*(\S+\.json)\s+{re.escape(installed)}/?\s*$", runbook, re.M
    )
    assert copy, f"monitoring/RUNBOOK.md does not copy the dashboards to {installed}"
    assert sorted(ROOT.glob(copy[1])) == DASHBOARDS
