"""Log records carry the ids of the work in hand: a scope's ids, filled in as they are
learnt (first value wins), reach every record as text or JSON; outside a scope none."""

from __future__ import annotations

import json
import logging

from clusterplane import logs


def record(message: str) -> logging.LogRecord:
    made = logging.LogRecord("clusterplane.test", logging.INFO, __file__, 1, message, (), None)
    logs.ContextFilter().filter(made)
    return made


def test_ids_learnt_inside_a_scope_reach_json_records_and_end_with_it():
    with logs.scope(request_id="req-1") as context:
        logs.annotate(cluster_id="c-1", project_id="p-1")
        logs.annotate(project_id="p-2", node_id=None)
        line = json.loads(logs.JsonFormatter().format(record("hello %s")))
    assert context.ids() == {"request_id": "req-1", "cluster_id": "c-1", "project_id": "p-1"}
    assert line["message"] == "hello %s" and line["level"] == "info"
    assert (line["request_id"], line["cluster_id"], line["project_id"]) == ("req-1", "c-1", "p-1")
    assert "node_id" not in line
    outside = record("later")
    assert outside.request_id is None  # type: ignore[attr-defined]
    logs.annotate(cluster_id="ignored")  # no scope open: nothing to fill in
    assert logs.current() is None


def test_text_records_name_their_ids_in_brackets():
    with logs.scope(request_id="req-2", node_id="n-1"):
        text = logs.TextFormatter().format(record("step"))
    assert text.endswith("INFO clusterplane.test: step [request_id=req-2 node_id=n-1]")
    assert logs.TextFormatter().format(record("plain")).endswith("clusterplane.test: plain")
