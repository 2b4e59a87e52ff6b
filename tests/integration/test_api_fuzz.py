"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis).

Every documented operation gets generated requests, valid and invalid, sent with a real
admin key. Whatever comes in, the server answers with a documented status and a JSON body
matching the documented schema, never a 5xx, and refuses what the schema calls invalid.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.engine import Engine, make_engine

EXAMPLES_PER_OPERATION = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    yield from make_engine(tmp_path_factory.mktemp("fuzz"))


def operations(engine: Engine) -> list[Any]:
    # An admin key gets the whole document, the operator's API included.
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", engine.app.api, headers=engine.headers()
    )
    return [result.ok() for result in schema.get_all_operations()]


def test_the_openapi_document_describes_every_wire_operation(fuzz_engine: Engine) -> None:
    paths = fuzz_engine.client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/compute/clusters"]) == {"get", "post"}
    assert set(paths["/v1/compute/clusters/{cluster_id}"]) == {"get", "put", "delete"}
    assert set(paths["/v1/compute/clusters/storage/volumes"]) == {"get", "post", "put"}
    assert "requestBody" in paths["/v1/compute/clusters"]["post"]
    assert "400" in paths["/v1/compute/clusters"]["post"]["responses"]


def test_no_generated_request_breaks_the_documented_contract(fuzz_engine: Engine) -> None:
    headers = fuzz_engine.headers()
    tried = 0
    for operation in operations(fuzz_engine):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
        tried += 1
    assert tried >= 20, "every documented operation was fuzzed"
