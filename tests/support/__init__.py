"""The test kit: factories and helpers the tests share (fixtures stay in ``conftest.py``).

One module per kind of thing: ``settings`` (the test keys), ``services`` (claiming
PostgreSQL and Redis), ``factories`` (rows made the way the service makes them), ``db``
(the database as the tests read it), ``http`` (problem+json and auth headers), ``cli``
(the ``leakguard`` command, in process and as a real process), ``leakfiles`` (leak and
account files), ``mail`` (one message, one person), ``smtp`` (a real SMTP server),
``delivery`` (relaying and delivering as the workers do) and ``processes``.
"""
