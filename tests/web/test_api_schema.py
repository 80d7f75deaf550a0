"""The JSON API against its own OpenAPI document (schemathesis): whatever a client sends,
generated from the schema or not, the answer is never a 500 and never a traceback."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from cancelq.store.audit import AuditStore
from tests.producers.seed import seed
from tests.web.conftest import PASSWORDS

AUTH = "Basic " + base64.b64encode(f"bob:{PASSWORDS['bob']}".encode()).decode()


@pytest.fixture
def api_schema(app: FastAPI, fake_store: AuditStore) -> schemathesis.BaseSchema:
    seed(fake_store)
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case[Any]) -> None:
    response = case.call(headers={"Authorization": AUTH})
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text


def test_the_document_lists_every_read_and_no_write(app: FastAPI) -> None:
    document = app.openapi()
    assert set(document["paths"]) == {
        "/api/v1/jobs/{job_id}", "/api/v1/jobs", "/api/v1/runs", "/api/v1/runs/{run_id}",
        "/api/v1/dead-letters", "/api/v1/overview"}
    assert {m for path in document["paths"].values() for m in path} == {"get"}
