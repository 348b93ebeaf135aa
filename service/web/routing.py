"""The app's URL converters: ``<int:...>`` in any route is a database id,
``<external_id:...>`` the login service's id of an account."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map, PathConverter

from service.accounts import ROUTE_SUFFIXES
from service.db.base import BIGINT_MAX


class DatabaseIdConverter(IntegerConverter):
    """``<int:...>`` bounded to what an id column holds: ASCII digits (werkzeug's ``\\d``
    also takes other scripts' digits) and at most ``BIGINT_MAX``. A larger number matches
    no route (a 404) instead of reaching PostgreSQL, which refuses it with a 500."""

    regex = r"[0-9]+"

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(url_map, *args, **kwargs)


class ExternalIdConverter(PathConverter):
    """Any id the product stores (``check_external_id``): ``tenant/42``, ``/x``, ``a//b``
    and ``x/`` too, so slashes anywhere (werkzeug's ``path`` wants no leading one).
    Non-greedy, so that ``/accounts/<id>/totp`` takes the suffix route; the ids that end
    in such a suffix are refused where ids enter (``ROUTE_SUFFIXES``), and no rule matches
    one either: ``GET /accounts/u-1/totp`` is then a 405 of the ``/totp`` route (its own
    ``Allow``), not ``GET /accounts/<id>`` of an id ``u-1/totp`` that cannot exist. Rules
    using it set ``merge_slashes=False``: a ``//`` inside an id is part of it, not a typo
    to redirect."""

    regex = ".+?" + "".join(f"(?<!{re.escape(suffix)})" for suffix in ROUTE_SUFFIXES)
    part_isolating = False  # werkzeug would infer True: the regex has no "/" in it


def register_converters(app: Flask) -> None:
    """Before any route is added: a rule binds its converter when it is added."""
    app.url_map.converters["int"] = DatabaseIdConverter
    app.url_map.converters["external_id"] = ExternalIdConverter


def keep_slashes_in_ids(app: Flask) -> None:
    """After the routes are added: a rule with an external id matches ``//`` as it is."""
    for rule in app.url_map.iter_rules():
        if "<external_id:" in rule.rule:
            rule.merge_slashes = False
