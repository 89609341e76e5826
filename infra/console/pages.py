"""The console's pages. Each asks the bus as the signed-in person (through the
console's gateway identity) and shows what the reply says; a page the
person's role may not see answers 403, an action it may not take is not
shown and is refused when posted anyway (here, then by the bus)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from infra import report_files
from infra.console.gateway import BusError
from infra.console.sessions import Person
from infra.console.web import failed, forbidden, may_do, may_see, render
from ticketing.access import QUERIES
from ticketing.values import Role

router = APIRouter()
FILTERS = ("kind", "tier", "priority", "assignee")


async def _ask(request: Request, page: str, query: str, body: dict[str, Any]) -> tuple[Person, Any]:
    """(person, reply) or (person, the response that says why not)."""
    person: Person = request.state.person
    if not may_see(person, page):
        return person, forbidden(request, person, page)
    try:
        reply = await request.app.state.gateway.ask(query, body, person)
    except BusError as error:
        return person, failed(request, person, {"code": "unavailable", "message": str(error)}, 503)
    return person, (reply if reply.get("ok") else failed(request, person, reply))


@router.get("/")
async def now(request: Request, fragment: bool = False) -> Response:
    person, reply = await _ask(request, "/", "dashboard", {})
    if isinstance(reply, Response):
        return reply
    return render(request, "_now.html" if fragment else "now.html", person, board=reply)


@router.get("/limits")
async def limits(request: Request, fragment: bool = False, kind: str = "", tier: str = "", priority: str = "",
                 assignee: str = "", done: str = "", error: str = "") -> Response:
    asked = {name: value for name, value in (("kind", kind), ("tier", tier), ("assignee", assignee)) if value}
    person, reply = await _ask(request, "/limits", "sla.open", asked | {"limit": 500})
    if isinstance(reply, Response):
        return reply
    shown = [limit for limit in reply["limits"] if not priority or limit["priority"] == priority]
    shown.sort(key=lambda limit: (limit["deadline"] is None, limit["deadline"] or ""))
    agents = [u.name for u in request.app.state.directory.users() if u.role is Role.AGENT]
    return render(request, "_limits.html" if fragment else "limits.html", person, reply=reply, limits=shown,
                  filters={"kind": kind, "tier": tier, "priority": priority, "assignee": assignee},
                  agents=agents, may_assign=may_do(person, "complaint.assign"), done=done, error=error,
                  query=urlencode({k: v for k, v in (("kind", kind), ("tier", tier), ("priority", priority),
                                                      ("assignee", assignee)) if v}))


@router.post("/cases/{case_id}/assign")
async def assign(request: Request, case_id: str, assignee: str = Form(""), csrf: str = Form(""),
                 back: str = Form("")) -> Response:
    return await _act(request, csrf, "complaint", "assign", {"assignee": assignee}, case_id,
                      "/limits" + (f"?{back}" if back and "\n" not in back else ""), f"assigned to {assignee}")


@router.get("/dangerous")
async def dangerous(request: Request, done: str = "", error: str = "") -> Response:
    person, reply = await _ask(request, "/dangerous", "customers.dangerous", {"limit": 200})
    if isinstance(reply, Response):
        return reply
    return render(request, "dangerous.html", person, reply=reply, done=done, error=error,
                  may_clear=may_do(person, "customer.clear_danger"))


@router.post("/customers/{customer_id}/clear")
async def clear(request: Request, customer_id: str, reason: str = Form(""), csrf: str = Form("")) -> Response:
    return await _act(request, csrf, "customer", "clear_danger", {"reason": reason}, customer_id, "/dangerous",
                      "cleared from the list")


async def _act(request: Request, csrf: str, aggregate: str, command: str, data: dict[str, Any], target: str,
               back: str, said: str) -> Response:
    """A form's command, sent as the person; back to the page with what happened."""
    person: Person = request.state.person
    if not request.app.state.sessions.csrf_ok(person.sid, csrf):
        return render(request, "failed.html", person, 403, code="forbidden",
                      message="this form's CSRF token is missing or forged: reload the page and try again")
    if not may_do(person, f"{aggregate}.{command}"):
        return forbidden(request, person, f"{aggregate}.{command}")
    try:
        reply = await request.app.state.gateway.send(aggregate, command, data, person, target)
    except BusError as error:
        reply = {"ok": False, "error": {"code": "unavailable", "message": str(error)}}
    if reply.get("ok"):
        outcome = {"done": said}
    else:
        outcome = {"error": f"{reply['error']['code']}: {reply['error']['message']}"}
    return RedirectResponse(back + ("&" if "?" in back else "?") + urlencode(outcome), status_code=303)


@router.get("/cases")
async def find_case(request: Request, case_id: str = "") -> Response:
    person: Person = request.state.person
    if case_id:
        return RedirectResponse(f"/cases/{case_id.strip()}", status_code=303)
    if not may_see(person, "/cases"):
        return forbidden(request, person, "/cases")
    return render(request, "find_case.html", person)


@router.get("/cases/{case_id}")
async def case(request: Request, case_id: str, at: str = "") -> Response:
    body = {"case_id": case_id} | ({"at": at} if at else {})
    person, reply = await _ask(request, "/cases", "case.history", body)
    if isinstance(reply, Response):
        return reply
    everything = reply
    if at:  # the whole timeline for the slider, the case as of `at` for the rest
        _, everything = await _ask(request, "/cases", "case.history", {"case_id": case_id})
        if isinstance(everything, Response):
            return everything
    return render(request, "case.html", person, case=reply, timeline=everything["events"], at=at,
                  shown=len(reply["events"]))


@router.get("/reports")
async def reports(request: Request) -> Response:
    return RedirectResponse(f"/reports/{datetime.now(request.app.state.zone):%Y-%m}", status_code=303)


@router.get("/reports/{name}")
async def report(request: Request, name: str) -> Response:
    period, _, suffix = name.partition(".")
    person, reply = await _ask(request, "/reports", "report", {"period": period})
    if isinstance(reply, Response):
        return reply
    if person.role in QUERIES["staff.assessment"]:
        staff = await request.app.state.gateway.ask("staff.assessment", {"period": period}, person)
        if staff.get("ok"):
            reply["staff"] = staff
    if suffix == "json":
        return Response(report_files.json_text(reply), media_type="application/json")
    if suffix == "csv":
        return Response(report_files.csv_text(reply), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="report-{period}.csv"'})
    if suffix == "html":
        return Response(report_files.html_page(reply), media_type="text/html; charset=utf-8")
    if suffix:
        return failed(request, person, {"code": "not_found", "message": f"no report format {suffix!r}: "
                                        f"html, json or csv"})
    return render(request, "report_page.html", person, **report_files.context(reply))


@router.get("/staff")
async def staff_now(request: Request) -> Response:
    return RedirectResponse(f"/staff/{datetime.now(request.app.state.zone):%Y-%m}", status_code=303)


@router.get("/staff/{period}")
async def staff(request: Request, period: str) -> Response:
    person, reply = await _ask(request, "/staff", "staff.assessment", {"period": period})
    if isinstance(reply, Response):
        return reply
    return render(request, "staff.html", person, staff=reply)


@router.get("/audit")
async def audit(request: Request) -> Response:
    person, reply = await _ask(request, "/audit", "audit.verify", {})
    if isinstance(reply, Response):
        return reply
    return render(request, "audit.html", person, verdict=reply)


@router.get("/audit/bundle")
async def bundle(request: Request, case_id: str = "") -> Response:
    person: Person = request.state.person
    if not may_see(person, "/audit"):
        return forbidden(request, person, "/audit")
    try:
        found = await request.app.state.bundle(case_id.strip())
    except (LookupError, ValueError) as error:
        return failed(request, person, {"code": "not_found", "message": str(error)})
    return JSONResponse(found, headers={"Content-Disposition": f'attachment; filename="case-{case_id}.bundle.json"'})
