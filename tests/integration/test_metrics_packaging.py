"""The Grafana dashboard, the alerting rules and docs/metrics.md agree with what `/metrics`
serves: every query parses as PromQL and names only series the server exports, and every
series the server exports is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.support.engine import Engine
from tests.support.metrics import Scrape, parse

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "packaging/grafana/clusterplane.json"
ALERTS = ROOT / "packaging/prometheus/alerts.yml"
DOCS = ROOT / "docs/metrics.md"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself records for every target
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")
LABEL_VALUES = re.compile(r"label_values\((.*),\s*\w+\)")


@pytest.fixture
def scraped(engine: Engine) -> Scrape:
    response = engine.client.get("/metrics", headers=engine.headers())
    assert response.status_code == 200, response.text
    return parse(response.text)


def series_in(expr: str) -> set[str]:
    """The series an expression selects; it must parse (Grafana's intervals made concrete)."""
    for interval in GRAFANA_INTERVALS:
        expr = expr.replace(interval, "5m")
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = LABEL_VALUES.fullmatch(variable["definition"])
            assert found, variable["definition"]
            queries.append(found.group(1))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_dashboard_query_parses_and_names_only_exported_series(scraped: Scrape):
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    queries = dashboard_queries()
    assert len(queries) > 30
    exported = scraped.series_names() | PROMETHEUS_OWN
    for query in queries:
        unknown = series_in(query) - exported
        assert not unknown, f"{query}: {unknown}"


def test_every_alert_parses_names_only_exported_series_and_is_documented(scraped: Scrape):
    rules = alert_rules()
    assert len(rules) >= 10
    exported = scraped.series_names() | PROMETHEUS_OWN
    docs = DOCS.read_text()
    for rule in rules:
        unknown = series_in(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']}: {unknown}"
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert f"| `{rule['alert']}` | `{rule['expr']}` |" in docs, rule["alert"]


def test_every_exported_series_of_the_server_is_documented(scraped: Scrape):
    docs = DOCS.read_text()
    ours = {name for name in scraped.series_names() if name.startswith("clusterplane_")}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in ours}
    assert len(families) >= 20
    documented = set(re.findall(r"^\| `(clusterplane_[a-z_]+)` \|", docs, re.MULTILINE))
    written = {re.sub(r"_total$", "", name) for name in documented}
    assert families - written == set(), "exported but not in docs/metrics.md"
    assert written - families == set(), "in docs/metrics.md but not exported"
