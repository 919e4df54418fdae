"""/v1/alerts: rules and their deliveries. Reading needs the read key; changing needs the admin key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from starlette.concurrency import run_in_threadpool

from trend.api import models
from trend.api.admission import Admission
from trend.api.deps import Authorization, is_admin, read_access, write_access
from trend.api.errors import ApiError, error_responses, trend_router
from trend.service import Trend
from trend.shapes import delivery_shape, rule_shape

# A database id: bounded, so a huge number is a 422, not an overflow in the driver.
RuleId = Annotated[int, Path(ge=1, le=2**62)]


# OpenAPI links: what a client (or a stateful fuzzer) can do next with the rule it just made.
_RULE_LINKS = {name: {"operationId": operation, "parameters": {"rule_id": "$response.body#/id"}}
               for name, operation in (("Deliveries", "alert_deliveries"), ("Test", "test_alert"),
                                       ("Remove", "remove_alert"))}


def router(trend: Trend, admission: Admission) -> APIRouter:
    api = trend_router(tags=["alerts"], responses=error_responses(401, 403, 503))

    @api.post("/v1/alerts", status_code=201, response_model=models.NewAlertRule, dependencies=[write_access(trend)],
              responses={**error_responses(400, 422), 201: {"description": "The rule", "links": _RULE_LINKS}},
              summary="Add a rule; the answer is the only one that shows its secret")
    async def add_alert(rule: Annotated[models.AlertRuleIn, Body()]) -> dict[str, Any]:
        added = await run_in_threadpool(lambda: trend.add_alert(**rule.model_dump(exclude_none=True)))
        return rule_shape(added, trend.settings.zone)

    @api.get("/v1/alerts", response_model=models.AlertRules, dependencies=[read_access(trend), admission.read()],
             summary="Every rule, without its secret")
    async def list_alerts(request: Request, authorization: Authorization = None) -> dict[str, Any]:
        async with admission.reading(request):
            found = await admission.run(admission.read_pool, trend.alert_rules)
        full = is_admin(trend, authorization, request)
        return {"rules": [rule_shape(rule, trend.settings.zone, full_url=full) for rule in found]}

    @api.delete("/v1/alerts/{rule_id}", status_code=204, dependencies=[write_access(trend)],
                responses=error_responses(404, 422), summary="Remove a rule")
    async def remove_alert(rule_id: RuleId) -> None:
        if not await run_in_threadpool(trend.remove_alert, rule_id):
            raise ApiError(404, "unknown_alert", f"no alert rule {rule_id}")

    @api.post("/v1/alerts/{rule_id}/test", response_model=models.Delivery, dependencies=[write_access(trend)],
              responses=error_responses(404, 422), summary="Send one delivery, marked as a test, now")
    async def test_alert(rule_id: RuleId) -> dict[str, Any]:
        delivery = await run_in_threadpool(trend.test_alert, rule_id)
        if delivery is None:
            raise ApiError(404, "unknown_alert", f"no alert rule {rule_id}")
        return delivery_shape(delivery, trend.settings.zone)

    @api.get("/v1/alerts/{rule_id}/deliveries", response_model=models.Deliveries,
             dependencies=[read_access(trend), admission.read()],
             responses=error_responses(404, 422),
             summary="The rule's deliveries, newest first: status, attempts, the receiver's last status code")
    async def alert_deliveries(request: Request, rule_id: RuleId) -> dict[str, Any]:
        async with admission.reading(request):
            found = await admission.run(admission.read_pool, lambda: trend.alert_deliveries(rule_id))
        if found is None:
            raise ApiError(404, "unknown_alert", f"no alert rule {rule_id}")
        return {"deliveries": [delivery_shape(d, trend.settings.zone) for d in found]}

    return api
