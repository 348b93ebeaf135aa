"""The app's URL converters: ``<int:...>`` in any route is a database id."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from service.db.base import BIGINT_MAX


class DatabaseIdConverter(IntegerConverter):
    """``<int:...>`` bounded to what an id column holds: ASCII digits (werkzeug's ``\\d``
    also takes other scripts' digits) and at most ``BIGINT_MAX``. A larger number matches
    no route (a 404) instead of reaching PostgreSQL, which refuses it with a 500."""

    regex = r"[0-9]+"

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(url_map, *args, **kwargs)


def register_converters(app: Flask) -> None:
    """Before any route is added: a rule binds its converter when it is added."""
    app.url_map.converters["int"] = DatabaseIdConverter
