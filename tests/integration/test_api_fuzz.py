"""schemathesis drives every /v1 operation from the OpenAPI document the app serves.

No generated request, valid or not, may produce a 5xx, an undocumented status, a wrong
media type or a body that breaks the documented schema. (schemathesis's pytest plugin
does not run on pytest 9, so the operations are driven through its strategies directly.)
"""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

OPENAPI_PATH = "/openapi/openapi.json"  # where the README says the document is

EXAMPLES_PER_OPERATION = 60


def test_api_conforms_to_its_openapi_document(
    make_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    # schemathesis sends requests without a key on purpose, hundreds of them: at the
    # default budget of failed authentications they would be 429 (test_limits_by_client).
    app = make_app(rate_limit_auth_failures="100000/minute")
    schema = schemathesis.openapi.from_wsgi(OPENAPI_PATH, app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4
    sent = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            nonlocal sent
            sent += 1
            # An address can be schema-valid and still no address (a special-use domain,
            # an IP literal); its 422 is right, so only that one check is left out.
            case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])

        exercise()
    assert sent >= len(operations) * 10
