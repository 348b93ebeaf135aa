"""/v1/risk/check: the login service asks, on every sign-in, how to treat the person."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import Tag

from service.api import api
from service.api.auth import current_principal, requires_scope, runtime
from service.api.limits import rate_limit
from service.api.problems import problem_responses
from service.api.schemas import ExposureOut, RiskCheckBody, RiskCheckOut, answer
from service.clients import Scope
from service.db import utcnow
from service.metrics import count_risk_decision
from service.risk import assess

TAG = Tag(name="risk", description="The sign-in decision: allow, step up or deny")


@api.post(
    "/risk/check",
    tags=[TAG],
    responses={200: RiskCheckOut, **problem_responses(400, 413, 415, 422, 429, 503)},
)
@requires_scope(Scope.RISK_CHECK)
@rate_limit("rate_limit_risk")
def risk_check(body: RiskCheckBody) -> Response:
    """Decide how the login service treats this sign-in.

    `allow` when the account is in no open leak (or unknown to Leakguard, or a fresh
    assurance token comes along, or `context.device_id` names a device trusted by a step-up
    passed on it: reason `trusted_device`); `step_up` when its address leaked, or while a
    hold stands (`email_change_reverted`, or `support_hold`: support forced a step-up), with
    the `methods` open now (and `retry_after` seconds when another one is locked for a
    while); `deny`
    when the submitted password is the leaked one, when every usable method is locked
    (`locked`), or when the account has no method left (`no_usable_method`: support).
    An expired, forged or outdated `assurance_token` is a 400: drop it and ask again.
    """
    # The device id is stored only as a keyed hash: it never goes into the audit row.
    context = (
        body.context.model_dump(exclude_none=True, exclude={"device_id"}) if body.context else None
    )
    device_id = body.context.device_id if body.context else None
    rt = runtime()
    verdict = assess(
        rt.db,
        rt.step_up,
        body.account_id,
        password=body.password,
        assurance_token=body.assurance_token,
        actor=f"api:{current_principal().name}",
        context=context,
        now=utcnow(),
        device_id=device_id,
    )
    count_risk_decision(verdict.decision.value, tuple(r.value for r in verdict.reasons))
    return answer(
        RiskCheckOut(
            decision=verdict.decision,
            reasons=list(verdict.reasons),
            methods=list(verdict.methods),
            retry_after=verdict.retry_after,
            exposures=[
                ExposureOut(leak=e.leak, kind=e.kind, since=e.since) for e in verdict.exposures
            ],
        )
    )
