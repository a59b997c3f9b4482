"""The console's web application: sign-in, the pages, and the approve/reject forms.

Starlette (it comes with the MCP SDK) with Jinja2 templates and no JavaScript beyond one static
file that shows times in the viewer's zone; every asset is served from the package. Each page
is one or a few daemon calls made *as the signed-in person* (:mod:`railguard.console.calls`), turned
into a view model (:mod:`railguard.console.views`) and rendered. Guarding the browser is this
module's job: an HttpOnly, SameSite=Strict session cookie (Secure over TLS), a CSRF token on
every form, an Origin check, a Content-Security-Policy without inline scripts, and refusals of
forged or stale posts recorded in the audit log. Guarding Railguard stays the daemon's job: it
checks every call again. Started by :mod:`railguard.console.serve`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from railguard.console import views
from railguard.console.calls import Calls, Clients
from railguard.console.sessions import Session, Sessions
from railguard.engine.workspace import Workspace
from railguard.model.api import PlanDetail, RefusalReport
from railguard.model.diagnostics import Diagnostic, RailguardError
from railguard.model.principals import Permission, Role

HERE = Path(__file__).parent
COOKIE = "rg_session"
LOGIN_COOKIE = "rg_login"  # double-submit token of the sign-in form (there is no session yet to hold one)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")
ENDED_SESSION = {"expired": "Your session expired. Sign in again.",
                 "ended": "You signed out in this session. Sign in again.",
                 "unknown": "That session is not known here (the console restarted, or the cookie is forged). "
                            "Sign in again.",
                 "none": "Sign in with a Railguard token to continue."}
SESSION_CODES = {"none": "console.session_none", "ended": "console.session_ended",
                 "expired": "console.session_expired", "unknown": "console.session_unknown"}
UNAUTHORIZED = ("auth.unknown_token", "auth.token_revoked", "auth.token_expired")


class Headers(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"  # no-referrer would make browsers send Origin: null
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response


class Console:
    """The application's state: the workspace, the sessions and the clients."""

    def __init__(self, ws: Workspace, sessions: Sessions | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.ws = ws
        self.sessions = sessions or Sessions()
        self.clients = Clients(ws, transport)
        self.templates = Jinja2Templates(env=jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined))

    # -- plumbing ------------------------------------------------------------------------------
    def page(self, request: Request, name: str, session: Session | None, status: int = 200,
             **context: Any) -> Response:
        flash = list(session.flash) if session else []
        if session:
            session.flash.clear()
        response: Response = self.templates.TemplateResponse(request, name, {
            "session": session, "me": session.principal if session else None, "flash": flash,
            "csrf": session.csrf if session else "", "is_admin": bool(session and session.principal.role is Role.admin),
            **context}, status_code=status)
        return response

    def signed_in(self, request: Request) -> tuple[Session | None, str]:
        return self.sessions.find(request.cookies.get(COOKIE))

    def to_login(self, why: str, back: str = "/") -> Response:
        return RedirectResponse(f"/login?why={quote(why)}&next={quote(back)}", status_code=303)

    def failed(self, request: Request, session: Session, exc: RailguardError) -> Response:
        if any(d.code in UNAUTHORIZED for d in exc.diagnostics):
            self.sessions.end_all_for(session.token)
            self.clients.drop(session.token)
            return self.to_login("expired", request.url.path)
        status = 403 if any(d.code.startswith("auth.") for d in exc.diagnostics) else 404 if any(
            d.code.endswith("not_found") for d in exc.diagnostics) else 422
        return self.page(request, "error.html", session, status, diagnostics=exc.diagnostics)

    def calls(self, session: Session) -> Calls:
        return Calls(self.clients.for_token(session.token))

    def refuse(self, request: Request, session: Session | None, action: str, code: str, message: str,
               plan_id: str | None = None, env: str | None = None) -> Response:
        """A change refused here, before the daemon saw it: say so on the page and in the audit log."""
        recorded = self.clients.report(RefusalReport(action=action, code=code, plan_id=plan_id, env=env),
                                       session.token if session else None)
        diag = Diagnostic(code=code, severity="error", summary="The console refused this change", detail=message,
                          remediation="Reload the page and try again." if session else "Sign in again.")
        return self.page(request, "error.html", session, 403, diagnostics=[diag], recorded=recorded)

    def form_guard(self, request: Request, session: Session | None, why: str, form: dict[str, str],
                   action: str, plan_id: str | None = None) -> Response | None:
        """The checks every state-changing post passes first; a Response when it is refused."""
        if session is None:
            return self.refuse(request, None, action, SESSION_CODES.get(why, "console.session_unknown"),
                               ENDED_SESSION.get(why, why),
                               plan_id=plan_id)
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            return self.refuse(request, session, action, "console.bad_origin",
                               f"The form was posted from {origin}, not from this console.", plan_id=plan_id)
        if not session.csrf_ok(form.get("csrf")):
            return self.refuse(request, session, action, "console.csrf",
                               "The form did not carry this session's CSRF token (a forged or stale form).",
                               plan_id=plan_id)
        return None

    # -- sign-in -------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        nonce = secrets.token_urlsafe(24)
        why = request.query_params.get("why", "")
        response = self.page(request, "login.html", None, nonce=nonce, message=ENDED_SESSION.get(why, ""),
                             next=_local(request.query_params.get("next", "/")))
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/login")
        return response

    async def login(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not hmac.compare_digest(nonce, form.get("nonce", "")):
            return self.page(request, "login.html", None, 403, nonce="", next="/",
                             message="The sign-in form expired or was not posted from this console. Reload it.")
        token = form.get("token", "").strip()
        try:
            principal = Calls(self.clients.for_token(token)).client.whoami().principal if token else None
        except RailguardError as exc:
            self.clients.drop(token)
            return self.page(request, "login.html", None, 401, nonce="", next="/",
                             message=f"Sign-in refused: {exc.diagnostics[0].summary}.")
        if principal is None or principal.kind != "token":
            self.clients.drop(token)
            return self.page(request, "login.html", None, 401, nonce="", next="/",
                             message="Sign-in needs a Railguard token (`railguard token create NAME --role ROLE`).")
        session = self.sessions.start(token, principal)
        response = RedirectResponse(_local(form.get("next", "/")), status_code=303)
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/", max_age=int(self.sessions.max_s))
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request) -> Response:
        session, why = self.signed_in(request)
        form = {k: str(v) for k, v in (await request.form()).items()}
        refused = self.form_guard(request, session, why, form, "logout")
        if refused is not None:
            return refused
        assert session is not None
        self.sessions.end(session)
        response = self.to_login("ended")
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages ---------------------------------------------------------------------------------
    def _get(self, request: Request, render: Callable[[Session, Calls], Response]) -> Response:
        session, why = self.signed_in(request)
        if session is None:
            return self.to_login(why, request.url.path)
        try:
            return render(session, self.calls(session))
        except RailguardError as exc:
            return self.failed(request, session, exc)

    def _protected(self) -> dict[str, bool]:
        spec, _ = self.ws.load_valid()
        return {name: env.protected for name, env in spec.environments.items()}

    def overview(self, request: Request) -> Response:
        def render(session: Session, calls: Calls) -> Response:
            spec = str(self.ws.spec_path)
            readable = {env: protected for env, protected in self._protected().items()
                        if session.principal.allows(Permission.read, env)}
            unresolved = [i.env for i in calls.client.incidents()]
            rows = [views.env_row(calls.client.status(env, spec), protected, unresolved.count(env))
                    for env, protected in readable.items()]
            return self.page(request, "overview.html", session, rows=rows)
        return self._get(request, render)

    def environment(self, request: Request) -> Response:
        env = request.path_params["env"]

        def render(session: Session, calls: Calls) -> Response:
            protected = self._protected()
            if env not in protected:
                return self.page(request, "error.html", session, 404, diagnostics=[Diagnostic(
                    code="console.not_found", severity="error", summary=f"No environment {env!r}",
                    detail="The spec does not declare it.", remediation="Pick one from the overview.")])
            view = views.environment(calls.client.status(env, str(self.ws.spec_path)), protected[env],
                                     calls.client.releases(env, 20), calls.client.events(env, 30), session.principal,
                                     calls.client.incidents(env))
            return self.page(request, "environment.html", session, view=view)
        return self._get(request, render)

    def plan_page(self, request: Request) -> Response:
        plan_id = request.path_params["plan_id"]

        def render(session: Session, calls: Calls) -> Response:
            view = views.plan(calls.client.plan_record(plan_id), session.principal)
            return self.page(request, "plan.html", session, view=view)
        return self._get(request, render)

    def approvals(self, request: Request) -> Response:
        def render(session: Session, calls: Calls) -> Response:
            waiting = [p for p in calls.client.plans() if p.status == "saved"]
            details: list[PlanDetail] = [calls.client.plan_record(p.id) for p in waiting]
            return self.page(request, "approvals.html", session, rows=views.queue(details))
        return self._get(request, render)

    def operation_page(self, request: Request) -> Response:
        op_id = request.path_params["op_id"]

        def render(session: Session, calls: Calls) -> Response:
            return self.page(request, "operation.html", session, view=views.operation(calls.client.operation(op_id)))
        return self._get(request, render)

    def audit_page(self, request: Request) -> Response:
        def render(session: Session, calls: Calls) -> Response:
            return self.page(request, "audit.html", session, view=views.audit(calls.audit(200), calls.audit_verify()))
        return self._get(request, render)

    def tokens_page(self, request: Request) -> Response:
        def render(session: Session, calls: Calls) -> Response:
            return self.page(request, "tokens.html", session, rows=views.tokens(calls.tokens()))
        return self._get(request, render)

    # -- decisions -----------------------------------------------------------------------------
    async def decide(self, request: Request) -> Response:
        plan_id, decision = request.path_params["plan_id"], request.path_params["decision"]
        if decision not in ("approve", "reject"):
            return Response("Not Found", status_code=404)
        session, why = self.signed_in(request)
        posted = await request.form()
        form = {k: str(v) for k, v in posted.items()}
        confirm = [str(v).strip() for v in posted.getlist("confirm") if str(v).strip()]
        action = f"plans/{decision}"
        refused = self.form_guard(request, session, why, form, action, plan_id)
        if refused is not None:
            return refused
        assert session is not None
        calls = self.calls(session)
        try:
            detail = calls.client.plan_record(plan_id)
        except RailguardError as exc:
            return self.failed(request, session, exc)
        if form.get("plan_hash") != detail.plan.hash:
            return self.refuse(request, session, action, "console.plan_changed",
                               "The plan's hash is not the one on the page you decided on; read it again.",
                               plan_id=plan_id, env=detail.plan.env)
        if form.get("typed", "").strip() != detail.plan.short_hash:
            return self.refuse(request, session, action, "console.hash_not_typed",
                               f"Type the plan's short hash ({detail.plan.short_hash}) to {decision} it.",
                               plan_id=plan_id, env=detail.plan.env)
        try:
            calls.decide(plan_id, decision, detail.plan.short_hash, form.get("reason", ""), confirm)
        except RailguardError as exc:
            return self.failed(request, session, exc)
        session.flash.append(f"{'Approved' if decision == 'approve' else 'Rejected'} {plan_id}.")
        return RedirectResponse(f"/plans/{plan_id}", status_code=303)


def _local(target: str) -> str:
    """Only a path on this console (no open redirect to another site)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _closing(console: Console) -> Callable[[Starlette], Any]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        console.clients.close()
    return lifespan


def create_app(ws: Workspace, sessions: Sessions | None = None,
               transport: httpx.BaseTransport | None = None) -> Starlette:
    console = Console(ws, sessions, transport)
    app = Starlette(routes=[
        Route("/", console.overview),
        Route("/login", console.login_form, methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/env/{env}", console.environment),
        Route("/plans/{plan_id}", console.plan_page),
        Route("/plans/{plan_id}/{decision:str}", console.decide, methods=["POST"]),
        Route("/approvals", console.approvals),
        Route("/operations/{op_id}", console.operation_page),
        Route("/audit", console.audit_page),
        Route("/tokens", console.tokens_page),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ], middleware=[Middleware(Headers)], lifespan=_closing(console))
    app.state.console = console
    return app
