"""Fuzz the HTTP API from its own OpenAPI schema, on every backend: no 5xx, and every response conforms
to the schema; then statefully, along the schema's links (a rule made, then its deliveries, its test
delivery, its removal).

``TREND_FUZZ_EXAMPLES`` sets the examples per operation (CI: 40); see docs/reliability.md for a long run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.conftest import BACKENDS, MARIADB, TrendFactory
from trend.api.app import create_app

EXAMPLES = int(os.environ.get("TREND_FUZZ_EXAMPLES", "40"))
# Receivers are refused at creation unless public or allowed: loopback is allowed, and nothing listens
# on the fuzzer's ports, so deliveries fail fast.
ALLOW = {"alert_webhook_allow": ["127.0.0.1/32"], "alert_timeout_seconds": 1.0}


@pytest.fixture(params=[*BACKENDS, MARIADB])
def backend(request: pytest.FixtureRequest) -> str:
    """Every backend, MariaDB's too: each has its own types, collations and errors to get wrong."""
    name: str = request.param
    return name


@pytest.fixture
def api_schema(make_trend: TrendFactory, request: pytest.FixtureRequest) -> Any:
    # Schemathesis's lazy schema (4.32) renames the test node through a private attribute that pytest 9
    # no longer has: give it one, holding the node's id.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    trend = make_trend(log_level="ERROR", max_batch_events=50, **ALLOW)
    trend.ingest([{"event": "search", "key": "우산"}])
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(trend=trend))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.faults
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api_never_fails_and_matches_its_schema(case: schemathesis.Case[Any]) -> None:
    # Every other check runs. This one expects 2xx for any schema-valid request, but some refusals are
    # semantic and cannot be expressed in a schema: an event type never stored, a time beyond the
    # accepted lateness, a range too long for its interval. Those get 422 by design.
    # A repeated query parameter (series' key) cannot be given a value that is not an array: `key=false`
    # is the one-item array ["false"]. Schemathesis still counts it as invalid data accepted.
    repeated = case.operation.path == "/v1/series"
    case.call_and_validate(excluded_checks=[positive_data_acceptance, *([negative_data_rejection] if repeated else [])])


@pytest.mark.faults
def test_api_statefully_along_its_links(api_schema: Any) -> None:
    @api_schema.hook  # type: ignore[untyped-decorator]  # the schema comes from a fixture, typed Any
    def map_body(context: schemathesis.HookContext, body: Any) -> Any:
        """Every other rule made here is one the server takes (the stateless test above fuzzes this body
        in full), so that the links have rules to lead to: a receiver that may be called, no secret of
        its own, and the rest of a plain rising rule."""
        operation = context.operation
        if operation is None or operation.label != "POST /v1/alerts" or not isinstance(body, dict) \
                or len(body) % 2:
            return body
        return {"name": body.get("name"), "event": "search", "condition": "rising", "window": "15m",
                "url": "http://127.0.0.1:9/hook"}

    machine = api_schema.as_state_machine()
    answered: list[tuple[str, int]] = []

    class Checked(machine):  # type: ignore[misc, valid-type]  # a class made at run time by schemathesis
        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            answered.append((f"{case.method} {case.path}", response.status_code))
            # As above: semantic refusals (an unknown event type) are 422 by design.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

    # Derandomized: the same sequences every run, so whether they reach a rule's deliveries never
    # depends on luck.
    Checked.run(settings=settings(max_examples=max(10, EXAMPLES // 2), stateful_step_count=6, deadline=None,
                                  derandomize=True, suppress_health_check=list(HealthCheck)))
    # The links were followed: a rule was made, and the deliveries of a rule that exists were read.
    assert ("POST /v1/alerts", 201) in answered, sorted(set(answered))
    assert ("GET /v1/alerts/{rule_id}/deliveries", 200) in answered
