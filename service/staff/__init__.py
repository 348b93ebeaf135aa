"""The internal site for support and on-call staff, under ``/staff``.

Domain modules (no Flask): ``users`` (staff accounts, enrolment, login), ``sessions``
(server-side sessions and their timeouts), ``passwords``, ``throttle`` (login attempts),
``audit`` (``record_staff_action``), ``audit_log`` (the audit page's query),
``lookup`` (finding an account). The face: ``access`` (roles, re-authentication, the
default-deny check) and ``views/`` with ``templates/staff`` and ``static/``.
"""
