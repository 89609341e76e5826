"""What every console page shares: the templates, who may see which page
(from the same role tables as the bus permissions), and the answers for
someone who may not."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from infra.auth.permissions import command_roles
from infra.console.sessions import Person
from infra.figures import FORMATS
from ticketing.access import QUERIES

PAGES: dict[str, tuple[str, str]] = {
    # path          (label, the query behind it: who may ask it may see it)
    "/": ("Now", "dashboard"),
    "/limits": ("Limits", "sla.open"),
    "/dangerous": ("Dangerous customers", "customers.dangerous"),
    "/cases": ("Cases", "case.history"),
    "/reports": ("Reports", "report"),
    "/staff": ("Staff", "staff.assessment"),
    "/audit": ("Audit", "audit.verify"),
}
IN_NAV = ("/", "/limits", "/dangerous", "/reports", "/staff", "/audit")

environment = Environment(loader=ChoiceLoader([PackageLoader("infra.console", "templates"),
                                               PackageLoader("infra", "templates")]),
                          autoescape=select_autoescape(default=True, default_for_string=True))
environment.globals.update(FORMATS)
templates = Jinja2Templates(env=environment)


def may_see(person: Person, page: str) -> bool:
    return person.role in QUERIES[PAGES[page][1]]


def may_do(person: Person, command: str) -> bool:
    """`aggregate.command`: whether the person's role may ever run it (the domain decides the rest)."""
    return person.role in command_roles().get(command, frozenset())


def render(request: Request, name: str, person: Person | None, status: int = 200, **context: Any) -> HTMLResponse:
    nav = [(path, PAGES[path][0]) for path in IN_NAV if person is not None and may_see(person, path)]
    csrf = request.state.csrf if hasattr(request.state, "csrf") else ""
    return templates.TemplateResponse(request, name, {"person": person, "nav": nav, "csrf": csrf,
                                                      "path": request.url.path, **context}, status_code=status)


def forbidden(request: Request, person: Person, what: str) -> HTMLResponse:
    return render(request, "forbidden.html", person, 403, what=what)


def failed(request: Request, person: Person, reply: dict[str, Any], status: int = 502) -> HTMLResponse:
    """A query answered with an error: the page says which, plainly."""
    code = (reply.get("error") or {}).get("code") or reply.get("code") or "error"
    message = (reply.get("error") or {}).get("message") or reply.get("message") or str(reply)
    details = (reply.get("error") or {}).get("details") or []
    if details:
        message += ": " + "; ".join(f"{d['field']}: {d['reason']}" for d in details)
    status = {"forbidden": 403, "not_found": 404, "validation_error": 400}.get(code, status)
    return render(request, "failed.html", person, status, code=code, message=message)
