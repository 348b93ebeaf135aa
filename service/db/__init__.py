"""Storage: the declarative base, the engine and sessions, migrations, bulk statements.

Domain modules import ``Database``, ``Base`` and ``utcnow`` from here; the one place that
knows which database it talks to is ``service.db.bulk``.
"""

from service.db.base import Base, BigId, UTCDateTime, among, str_enum, utcnow
from service.db.engine import Database, make_engine, rowcount, run_in_transaction
from service.db.masked import MaskedJSON, MaskedText

__all__ = [
    "Base",
    "BigId",
    "Database",
    "MaskedJSON",
    "MaskedText",
    "UTCDateTime",
    "among",
    "make_engine",
    "rowcount",
    "run_in_transaction",
    "str_enum",
    "utcnow",
]
