"""Security events for the login service: the RFC 8936 poll endpoint under /v1, and the
transmitter's discovery documents under /.well-known (no key needed: they are public)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from flask import Response, current_app, jsonify
from flask_openapi3 import OpenAPI, Tag
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from service.api import api
from service.api.auth import requires_scope, runtime
from service.api.limits import rate_limit
from service.api.problems import problem_responses
from service.clients import Scope
from service.db import utcnow
from service.errors import NotFound
from service.events.discovery import CONFIGURATION_PATH, JWKS_PATH, ssf_configuration
from service.events.keys import EventKeys, issue, load_event_keys
from service.events.poll import (
    DEFAULT_EVENTS,
    MAX_EVENTS,
    SetError,
    acknowledge,
    record_errors,
    waiting_sets,
)

TAG = Tag(
    name="events",
    description=(
        "Security events (OpenID Shared Signals 1.0: CAEP and RISC event types) as Security "
        "Event Tokens (RFC 8417): JWTs signed with a key of `/.well-known/jwks.json`, typed "
        '`secevent+jwt`, with `iss`, `aud`, `jti`, `iat`, `sub_id` (`{"format": '
        '"opaque", "id": <the login service\'s account id>}`) and one event. '
        "**Push** (RFC 8935): each SET is POSTed to `LEAKGUARD_EVENTS_PUSH_URL` as the body, "
        "`Content-Type: application/secevent+jwt`, with `Authorization: Bearer "
        "<LEAKGUARD_EVENTS_PUSH_TOKEN>` when set; answer 202 to accept, 400 with "
        '`{"err", "description"}` to refuse it for good; anything else (or no answer) '
        "is retried with backoff, in order per account. **Poll** (RFC 8936): "
        "`POST /v1/events/poll` returns the same SETs."
    ),
)
KEYS = "leakguard.event_keys"  # the app's EventKeys, in app.extensions
WAIT_STEP_SECONDS = 0.25


def _whole_number(value: object) -> object:
    # JSON has one number type: 5.0 is the integer 5 to a JSON Schema validator.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Constraints before the validator: pydantic leaves those after it out of the JSON schema.
EventCount = Annotated[int, Field(ge=0, le=MAX_EVENTS), BeforeValidator(_whole_number)]

Jti = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]


class SetErrorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    err: str = Field(min_length=1, max_length=100, description="An SSF error code")
    description: str = Field("", max_length=500)


class PollBody(BaseModel):
    """RFC 8936 section 2.4 poll request."""

    model_config = ConfigDict(extra="forbid", strict=True)
    max_events: EventCount | None = Field(
        None,
        alias="maxEvents",
        description=f"SETs to return at most (default {DEFAULT_EVENTS}; 0: only acknowledge)",
    )
    return_immediately: bool = Field(
        False,
        alias="returnImmediately",
        description="false: wait up to LEAKGUARD_EVENTS_POLL_WAIT_SECONDS for a first SET",
    )
    ack: list[Jti] = Field(
        default_factory=list, max_length=MAX_EVENTS, description="jti of the SETs received"
    )
    # Keys are not constrained here: the OpenAPI document cannot carry a key pattern, and a
    # key that names no SET of ours is ignored, as an unknown ``jti`` is.
    set_errs: dict[str, SetErrorIn] = Field(
        default_factory=dict,
        alias="setErrs",
        max_length=MAX_EVENTS,
        description="jti -> {err, description}: SETs the receiver refused; they are dropped",
    )


class PollOut(BaseModel):
    """RFC 8936 section 2.5 poll response."""

    model_config = ConfigDict(serialize_by_alias=True)
    sets: dict[str, str] = Field(description="jti -> the SET (a signed JWT)")
    more_available: bool = Field(alias="moreAvailable")


def event_keys() -> EventKeys:
    """This app's signing keys, read (or, in development, generated) on first use."""
    keys: EventKeys | None = current_app.extensions.get(KEYS)
    if keys is None:
        keys = current_app.extensions.setdefault(KEYS, load_event_keys(runtime().settings))
    return keys


@api.post(
    "/events/poll",
    tags=[TAG],
    responses={200: PollOut, **problem_responses(400, 404, 413, 415, 422, 429, 503)},
)
@requires_scope(Scope.EVENTS_READ)
@rate_limit("rate_limit_step_up")
def poll_events(body: PollBody) -> Response:
    """Acknowledge SETs received, report refused ones, and fetch the next ones (RFC 8936).

    `ack` and `setErrs` are applied first; then up to `maxEvents` SETs not yet acknowledged
    come back as `{"sets": {jti: SET}, "moreAvailable": bool}`, oldest first. A SET not
    acknowledged comes back in the next poll (ignore a `jti` already processed). With
    `returnImmediately` false and nothing waiting, the answer waits a few seconds for one.
    404 when polling is off (`LEAKGUARD_EVENTS_POLL`).
    """
    rt = runtime()
    settings = rt.settings
    if not settings.events_poll:
        raise NotFound("polling for security events is off on this deployment")
    if body.ack or body.set_errs:
        with rt.db.transaction() as session:
            acknowledge(session, body.ack, now=utcnow())
            errors = {j: SetError(e.err, e.description) for j, e in body.set_errs.items()}
            record_errors(session, errors, now=utcnow())
    limit = DEFAULT_EVENTS if body.max_events is None else body.max_events
    deadline = time.monotonic() + (
        0 if body.return_immediately else settings.events_poll_wait_seconds
    )
    while True:
        with rt.db.read_session() as session:
            found, more = waiting_sets(session, limit=limit, now=utcnow())
        if found or limit == 0 or time.monotonic() >= deadline:
            break
        time.sleep(WAIT_STEP_SECONDS)
    keys = event_keys()
    sets = {jti: issue(keys, settings, claims) for jti, claims in found}
    out = PollOut(sets=sets, moreAvailable=more)
    return Response(out.model_dump_json(), status=200, mimetype="application/json")


class JwksOut(BaseModel):
    keys: list[dict[str, Any]] = Field(description="Public JWKs (RFC 7517), by kid")


class SsfConfigurationOut(BaseModel):
    spec_version: str
    issuer: str
    jwks_uri: str
    delivery_methods_supported: list[str]
    events_supported: list[str]
    default_subjects: str
    poll_endpoint: str | None = None


def register_well_known(app: OpenAPI) -> None:
    """The transmitter's public documents: 404 while no receiver takes events."""

    def enabled() -> None:
        if not runtime().settings.events_enabled:
            raise NotFound("security events are off on this deployment")

    @app.get(
        CONFIGURATION_PATH,
        tags=[TAG],
        responses={200: SsfConfigurationOut, **problem_responses(404)},
        operation_id="ssf_configuration",
    )
    def ssf_configuration_document() -> Response:
        """Transmitter configuration metadata (SSF 1.0 section 7.1): `issuer`, `jwks_uri`,
        the delivery methods offered, the event types sent."""
        enabled()
        return jsonify(ssf_configuration(runtime().settings))

    @app.get(
        JWKS_PATH,
        tags=[TAG],
        responses={200: JwksOut, **problem_responses(404)},
        operation_id="jwks",
    )
    def jwks_document() -> Response:
        """The public keys that verify the SETs (RFC 7517), the previous one too during a
        rotation; pick the key by the SET's `kid`."""
        enabled()
        response = jsonify(event_keys().jwks())
        response.headers["Cache-Control"] = "public, max-age=300"
        return response
