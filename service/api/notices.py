"""/v1/notices: what the mail provider reports back about our messages."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import Tag

from service.api import api
from service.api.auth import requires_scope, runtime
from service.api.limits import no_rate_limit
from service.api.problems import problem_responses
from service.api.schemas import BounceBatchBody, BounceBatchOut, answer
from service.clients import Scope
from service.db import utcnow
from service.notices.outbox import record_bounces

TAG = Tag(name="notices", description="Delivery reports on warning notices")


@api.post(
    "/notices/bounces",
    tags=[TAG],
    responses={200: BounceBatchOut, **problem_responses(400, 413, 415, 422)},
)
@requires_scope(Scope.NOTICES_BOUNCES)
@no_rate_limit("the mail provider's reports; each call is bounded to 1,000 bounces")
def report_bounces(body: BounceBatchBody) -> Response:
    """Record bounces by Message-ID: the notice fails and the address is marked undeliverable.

    Unknown Message-IDs are counted, not refused: a provider reports all its bounces.
    """
    bounces = [(item.message_id, item.code, item.reason) for item in body.bounces]
    with runtime().db.transaction() as session:
        outcome = record_bounces(session, bounces, now=utcnow())
    return answer(BounceBatchOut(matched=outcome.matched, unknown=outcome.unknown))
