"""What the signed-in staff member may do, for templates: a page shows only the actions
its reader's role allows (the views refuse the others anyway)."""

from __future__ import annotations

from flask import current_app, g

from service.models import StaffRole
from service.staff.access import current_staff, has_role
from service.staff.views.blueprint import staff


@staff.app_template_global("staff_can")
def staff_can(role: str) -> bool:
    """Whether the signed-in staff member has ``role`` (viewer, agent, admin) or higher."""
    if "staff_session" not in g:
        return False
    return has_role(current_staff(), StaffRole(role))


@staff.app_template_global("staff_page")
def staff_page(endpoint: str) -> bool:
    """Whether the site has the page ``endpoint`` (a link to a page not built is left out,
    as the nav does)."""
    return endpoint in current_app.view_functions
