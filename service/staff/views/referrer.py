"""Pages whose forms may send their reader through re-authentication.

The staff site answers with ``Referrer-Policy: no-referrer`` (an enrolment link carries its
token in the path), and ``requires_reauth`` brings a form's sender back to the page the form
came from: its Referer. Without one, the reader lands on the home page after typing the
code and has to find the page again. So a page with such a form, whose own address holds
nothing secret, lets its forms name it to this site only (``same-origin``).
"""

from __future__ import annotations

from flask import make_response
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response


def keeps_referrer(body: ResponseReturnValue) -> Response:
    """``body`` as a response whose same-site requests carry its address as Referer."""
    response = make_response(body)
    response.headers["Referrer-Policy"] = "same-origin"
    return response
