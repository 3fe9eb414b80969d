"""Alert rule routes: create, list, get, replace and delete rules (docs/alerts.md).

Reading rules takes a read key; changing them an admin key. The evaluator in the ingest
service picks a change up at its next evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from psycopg.types.json import Jsonb

from api import alert_queries as queries
from api.alert_models import (
    AlertRuleOut,
    AlertRulePage,
    ListRulesParams,
    NoDataRuleOut,
    OfflineRuleOut,
    RuleDefinition,
    RuleParams,
    ThresholdRule,
    ThresholdRuleOut,
)
from api.context import DATABASE
from api.errors import NotFoundError
from api.models import ErrorBody, NoParams
from api.pagination import decode_cursor, encode_cursor
from api.routing import Reply, Router

__all__ = ["router", "rule_out"]

router = Router()

_NO_RULE = Reply(404, "no such rule", ErrorBody)
_OUT_MODELS: dict[str, type[ThresholdRuleOut | NoDataRuleOut | OfflineRuleOut]] = {
    "threshold": ThresholdRuleOut,
    "no_data": NoDataRuleOut,
    "offline": OfflineRuleOut,
}


def rule_out(row: Sequence[Any]) -> ThresholdRuleOut | NoDataRuleOut | OfflineRuleOut:
    """Return a rule's row (``alert_queries.RULE_COLUMNS``) as the model of its kind."""
    values = dict(zip(queries.RULE_COLUMNS, row, strict=True))
    model = _OUT_MODELS[values["kind"]]
    return model.model_validate({k: v for k, v in values.items() if k in model.model_fields})


def _columns(definition: RuleDefinition) -> dict[str, Any]:
    """Return the rule as the parameters of INSERT_RULE and UPDATE_RULE."""
    rule = definition.root
    values: dict[str, Any] = dict.fromkeys(queries.RULE_INPUT_COLUMNS) | rule.model_dump()
    if isinstance(rule, ThresholdRule):
        # Without a clear threshold a rule resolves where it fires: no hysteresis.
        if rule.op == "outside":
            values["clear_low"] = rule.low if rule.clear_low is None else rule.clear_low
            values["clear_high"] = rule.high if rule.clear_high is None else rule.clear_high
        elif rule.clear_threshold is None:
            values["clear_threshold"] = rule.threshold
    values["for_s"] = values["for_s"] or 0
    values["labels"] = Jsonb(values["labels"])
    values["selector"] = None if values["selector"] is None else Jsonb(values["selector"])
    return values


@router.json_with_body(
    "POST",
    "/v1/alert-rules",
    body=RuleDefinition,
    reply=AlertRuleOut,
    scope="admin",
    tag="alerts",
    status=201,
    description="created",
)
async def post_alert_rule(
    request: web.Request, _params: NoParams, body: RuleDefinition
) -> ThresholdRuleOut | NoDataRuleOut | OfflineRuleOut:
    """Create an alert rule; it is evaluated from the next evaluation on."""
    async with request.app[DATABASE].connection() as conn:
        row = await (await conn.execute(queries.INSERT_RULE, _columns(body))).fetchone()
    assert row is not None
    return rule_out(row)


@router.json(
    "GET",
    "/v1/alert-rules",
    params=ListRulesParams,
    reply=AlertRulePage,
    scope="read",
    tag="alerts",
)
async def list_alert_rules(request: web.Request, params: ListRulesParams) -> AlertRulePage:
    """List the alert rules by id, optionally of one kind or severity."""
    after = 0 if params.cursor is None else int(str(decode_cursor(params.cursor, int)[0]))
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(
            queries.LIST_RULES,
            {
                "after": after,
                "kind": params.kind,
                "severity": params.severity,
                "limit": params.limit + 1,
            },
        )
        rows = await cur.fetchall()
    rules = [rule_out(row) for row in rows[: params.limit]]
    more = len(rows) > params.limit
    return AlertRulePage(
        rules=rules, next_cursor=encode_cursor(rules[-1].rule_id) if more else None
    )


@router.json(
    "GET",
    "/v1/alert-rules/{rule_id}",
    params=RuleParams,
    reply=AlertRuleOut,
    scope="read",
    tag="alerts",
    errors=[_NO_RULE],
)
async def get_alert_rule(
    request: web.Request, params: RuleParams
) -> ThresholdRuleOut | NoDataRuleOut | OfflineRuleOut:
    """Return an alert rule."""
    async with request.app[DATABASE].connection() as conn:
        row = await (await conn.execute(queries.GET_RULE, [params.rule_id])).fetchone()
    if row is None:
        raise NotFoundError(f"no alert rule {params.rule_id}")
    return rule_out(row)


@router.json_with_body(
    "PUT",
    "/v1/alert-rules/{rule_id}",
    params=RuleParams,
    body=RuleDefinition,
    reply=AlertRuleOut,
    scope="admin",
    tag="alerts",
    errors=[_NO_RULE],
)
async def put_alert_rule(
    request: web.Request, params: RuleParams, body: RuleDefinition
) -> ThresholdRuleOut | NoDataRuleOut | OfflineRuleOut:
    """Replace an alert rule (its version goes up by one); its alerts keep their state."""
    values = _columns(body) | {"rule_id": params.rule_id}
    async with request.app[DATABASE].connection() as conn:
        row = await (await conn.execute(queries.UPDATE_RULE, values)).fetchone()
    if row is None:
        raise NotFoundError(f"no alert rule {params.rule_id}")
    return rule_out(row)


@router.stream(
    "DELETE",
    "/v1/alert-rules/{rule_id}",
    params=RuleParams,
    replies=[Reply(204, "deleted; its firing alerts resolve at the next evaluation", None, ())],
    scope="admin",
    tag="alerts",
    errors=[_NO_RULE],
)
async def delete_alert_rule(request: web.Request, params: RuleParams) -> web.StreamResponse:
    """Delete an alert rule: its firing alerts resolve, its history stays."""
    async with request.app[DATABASE].connection() as conn:
        cur = await conn.execute(queries.DELETE_RULE, [params.rule_id])
    if cur.rowcount == 0:
        raise NotFoundError(f"no alert rule {params.rule_id}")
    return web.Response(status=204)
