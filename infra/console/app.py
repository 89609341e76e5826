"""The console's web application: signing in and out, who each request is
(the session cookie), the live stream, the contracts, the static files; the
pages themselves are `pages.py`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from fastapi import FastAPI, Form, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from infra.auth.passwords import check_password
from infra.console.gateway import Gateway
from infra.console.pages import router
from infra.console.sessions import COOKIE, LOGIN_COOKIE, Sessions, Throttle
from infra.console.web import render
from projections.base import UTC_ZONE
from ticketing.access import ALERT_READERS, EVENT_READERS

PUBLIC = ("/login", "/static/", "/contracts", "/favicon.ico")
KEEPALIVE_SECONDS = 15.0
HEADERS = {
    # scripts only from here (htmx and ours, no inline script); inline styles
    # for the report's charts, which matplotlib draws as SVG with style attributes
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def make_app(gateway: Gateway, sessions: Sessions, contracts_dir: Path,
             bundle: Callable[[str], Awaitable[dict[str, Any]]], zone: ZoneInfo = UTC_ZONE,
             secure_cookie: bool = False) -> FastAPI:
    """The console: `bundle(case_id)` exports a case's signed audit bundle."""
    app = FastAPI(title="ticketing console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway
    app.state.sessions = sessions
    app.state.bundle = bundle
    app.state.directory = sessions.directory
    app.state.zone = zone  # the department's: where its months begin
    throttle = Throttle()

    def keep(response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=secure_cookie,
                            path="/")

    @app.middleware("http")
    async def who(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        found = sessions.read(request.cookies.get(COOKIE))
        request.state.person = found[0] if found else None
        request.state.csrf = sessions.csrf(found[0].sid) if found else ""
        path = request.url.path
        if found is None and not path.startswith(PUBLIC):
            if path == "/stream" or request.headers.get("HX-Request"):
                response: Response = Response("sign in first", status_code=401, media_type="text/plain")
            else:
                wanted = path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/login?next={quote(wanted)}", status_code=303)
        else:
            response = await call_next(request)
            if found is not None and path != "/logout":
                keep(response, COOKIE, found[1])  # re-signed: the idle timeout starts again
        response.headers.update(HEADERS)
        if not path.startswith(("/static/", "/contracts")):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/login")
    async def login_page(request: Request, next: str = "/") -> Response:
        token = sessions.login_token()
        response = render(request, "login.html", None, next=_local(next), token=token)
        keep(response, LOGIN_COOKIE, token, 600)
        return response

    @app.post("/login")
    async def login(request: Request, name: str = Form(""), password: str = Form(""), token: str = Form(""),
                    next: str = Form("/")) -> Response:
        if not sessions.login_token_ok(request.cookies.get(LOGIN_COOKIE), token):
            return render(request, "login.html", None, 403, next=_local(next), token=sessions.login_token(),
                          error="the sign-in form expired or did not come from this console: try again")
        wait = throttle.retry_after(name)
        if wait is not None:
            response = render(request, "login.html", None, 429, next=_local(next), token=token,
                              error=f"too many failed sign-ins for {name}: try again in {wait} s")
            response.headers["Retry-After"] = str(wait)
            return response
        user = sessions.directory.get(name)
        ok = await asyncio.to_thread(check_password, user.password if user else "", password)
        if not ok or user is None or sessions.read_role(user) is None:
            throttle.failed(name)
            return render(request, "login.html", None, 401, next=_local(next), token=token,
                          error="wrong name or password")
        _, cookie = sessions.sign_in(user.name)
        response = RedirectResponse(_local(next), status_code=303)
        keep(response, COOKIE, cookie)
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request, csrf: str = Form("")) -> Response:
        person = request.state.person
        if not sessions.csrf_ok(person.sid, csrf):
            return Response("forged or missing CSRF token", status_code=403, media_type="text/plain")
        sessions.end(person)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        person = request.state.person
        cookie = request.cookies.get(COOKIE)
        may = {"event": person.role in EVENT_READERS, "alert": person.role in ALERT_READERS}

        async def feed() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n: live\n\n"
            with gateway.listening() as arrivals:
                while True:
                    try:
                        kind, said = await asyncio.wait_for(arrivals.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        kind, said = "", {}
                    if sessions.read(cookie) is None:  # signed out, removed, password changed: the feed ends
                        yield b"event: ended\ndata: {}\n\n"
                        return
                    if not kind:
                        yield b": keepalive\n\n"
                    elif may[kind]:
                        yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(said) + b"\n\n"
                    elif kind == "event":  # a role that may not read events learns only that something changed
                        yield b"event: changed\ndata: {}\n\n"

        return StreamingResponse(feed(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/contracts/", response_class=HTMLResponse)
    async def contracts_index(request: Request) -> Response:
        files = sorted(p.relative_to(contracts_dir).as_posix() for p in contracts_dir.rglob("*.json"))
        return render(request, "contracts.html", request.state.person, files=files)

    @app.get("/contracts/{name:path}")
    async def contract(name: str) -> Response:
        path = (contracts_dir / name).resolve()
        if not path.is_file() or path.suffix != ".json" or not path.is_relative_to(contracts_dir.resolve()):
            return JSONResponse({"error": f"no contract {name}"}, status_code=404)
        return FileResponse(path, media_type="application/json")

    app.mount("/static", StaticFiles(packages=[("infra.console", "static")]), name="static")
    app.include_router(router)
    return app


def _local(target: str) -> str:
    """Where to go after signing in: a path on this console, never another site."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"
