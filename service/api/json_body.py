"""The one parser of request bodies: strict JSON, and an object at the top.

Every ``request.get_json`` of the app, the views', flask-openapi3's and the rate-limit
keys', goes through ``StrictJsonRequest.json_module``, so no two readers of one body can see
two different objects. Python's ``json`` is lenient where JSON is not: it takes ``NaN``,
``Infinity`` and ``-Infinity``, turns ``1e400`` into infinity, and keeps the last of two
members with one name. A body naming ``email`` twice is ambiguous (RFC 8259 section 4), and
the two readers of a lenient parser (a proxy, a log, this service) may each pick another:
it is refused rather than guessed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Request

from service.errors import InvalidRequest, UnsupportedMediaType

# Member names short and plain enough to quote back; anything else may be input the
# client did not mean as a name (an address pasted in the wrong place).
_QUOTABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "true or false",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
}


class JsonBodyError(ValueError):
    """A request body that is not one JSON object; the message says why, for the caller."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            shown = f' ("{name}")' if _QUOTABLE_NAME.fullmatch(name) else ""
            raise JsonBodyError(f"the body names a member more than once{shown}")
        members[name] = value
    return members


def _refuse_constant(name: str) -> float:
    raise JsonBodyError(f"{name} is not JSON: numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: valid JSON syntax, but no number a field can hold
        raise JsonBodyError("the body holds a number too large to represent")
    return value


def load_json_object(data: bytes | str) -> dict[str, Any]:
    """Parse a request body: one JSON object (RFC 8259), member names unique, numbers finite.

    Raises JsonBodyError with a message for the caller: empty, not UTF-8 or not JSON,
    nested too deeply, a duplicate member name, NaN/Infinity, or a top-level value that is
    not an object (``null``, an array, a string: flask-openapi3 would even parse a string
    body a second time, as JSON).
    """
    if not data or not data.strip():
        raise JsonBodyError("the body is empty: send a JSON object")
    try:
        value = json.loads(
            data,
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except JsonBodyError:
        raise
    except RecursionError:  # deeply nested arrays exhaust the parser's recursion
        raise JsonBodyError("the body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise JsonBodyError(
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:  # not UTF-8, or an integer past Python's digit limit
        raise JsonBodyError("the body is not valid JSON") from None
    if not isinstance(value, dict):
        kind = _JSON_TYPE_NAMES.get(type(value), "not an object")
        raise JsonBodyError(f"the body must be a JSON object, not {kind}")
    return value


class StrictJsonModule:
    """What werkzeug's ``Request.get_json`` calls ``loads`` on."""

    @staticmethod
    def loads(data: bytes | str, **_kwargs: Any) -> dict[str, Any]:
        return load_json_object(data)

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, **kwargs)


class StrictJsonRequest(Request):
    """The app's request class: ``get_json`` parses with ``load_json_object`` and a
    non-silent call raises InvalidRequest (400) with its reason."""

    @property  # type: ignore[override]  # werkzeug types it as a module
    def json_module(self) -> type[StrictJsonModule]:
        return StrictJsonModule

    @json_module.setter
    def json_module(self, _provider: Any) -> None:
        """Flask hands every request the app's JSON provider, which is lenient and also
        serves the session cookie: ignored here, bodies keep the strict parser."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise UnsupportedMediaType("send the body as JSON (Content-Type: application/json)")
        raise InvalidRequest(str(e) if isinstance(e, JsonBodyError) else None) from e
