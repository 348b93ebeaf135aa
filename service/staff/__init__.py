"""The internal site for support and on-call staff, under ``/staff``.

Domain modules (no Flask): ``users`` (staff accounts, enrolment, login), ``sessions``
(server-side sessions and their timeouts), ``passwords``, ``throttle`` (login attempts),
``audit`` (``record_staff_action``), ``audit_log`` (the audit page's query),
``lookup`` (finding an account); for incidents, accounts and queues: ``incidents`` (the
leak list and a leak's funnel), ``charts`` (the funnel as SVG), ``campaigns`` (previews,
seeds, retraction), ``upload`` (a leak file from the page), ``dossier`` (an account's
page), ``actions`` (support's acts on an account), ``queues`` (review, failed warnings,
bulk verdicts). The face: ``access`` (roles, re-authentication, the default-deny check)
and ``views/`` with ``templates/staff`` and ``static/``.
"""
