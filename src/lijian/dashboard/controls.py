"""The dashboard's controls of a live campaign (docs/OPERATIONS.md, docs/DASHBOARD.md).

``POST /dashboard/api/operate`` (a form: the page's CSRF token, ``op``, ``campaign``,
``reason`` and the fields of that change) makes the same engine call as the signed API
(``Engine.operate``): the change is decided by the one writer and committed before this
answers, with the same checks and the same answers. Only an operator's session may make
a change; an auditor's sees the lists. The identity a change records is the account's:
an operator logged in with its API key id is that key (so the four-eyes rule sees the
same person on the API and on the dashboard); a ``[[users]]`` account is
``dashboard:<name>``, so two accounts are two people.

``GET /dashboard/api/changes?campaign=…&list=changes|amendments|blocks|review_queue`` lists
them (the review queue: open risk flags, which ``op=review`` dismisses or turns into a
block).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lijian.core.errors import LijianError
from lijian.jsonish import Json
from lijian.operations import LISTS
from lijian.outcome import error_status

if TYPE_CHECKING:
    from lijian.dashboard.accounts import Account
    from lijian.dashboard.session import Session, SessionSigner
    from lijian.engine import Engine


class Host(Protocol):
    """What the controls read of the dashboard (``routes.Dashboard``)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def accounts(self) -> Mapping[str, Account]: ...

    @property
    def signer(self) -> SessionSigner: ...

    def _session(self, request: Request) -> Session | None: ...

    def _require(self, request: Request) -> Session | Response: ...

    def _campaign(self, request: Request) -> str | None: ...


OPS = {
    "pause": (),
    "resume": (),
    "propose": ("kind", "delta_fen", "days", "last_date"),
    "approve": ("amendment_id",),
    "reject": ("amendment_id",),
    "block": ("kind", "person_id", "platform", "sku"),
    "lift": ("block_id",),
    "review": ("flag_id", "action", "person_id", "sku"),  # a risk flag (docs/RISK.md)
}
DAYS_FIELD_MAX_CHARS = 12_000  # "remaining", or dates separated by commas


def identity(username: str, source: str) -> str:
    """Who a dashboard change is by: the API key id, or the dashboard-only account."""
    return username if source == "client" else f"dashboard:{username}"


def _body(op: str, form: dict[str, str]) -> Json | str:
    """The change's fields from the form (the writer checks them); or what is wrong."""
    body: Json = {"reason": form.get("reason", "")}
    for name in OPS[op]:
        value = form.get(name)
        if value is None or value == "":
            continue
        if name == "delta_fen":
            text = value.strip()
            if not text.lstrip("-").isdigit() or len(text) > 20:
                return "delta_fen: an integer number of fen"
            body[name] = int(text)
        elif name == "days" and op == "propose":
            if len(value) > DAYS_FIELD_MAX_CHARS:
                return "days: too long"
            days = value.strip()
            body[name] = days if days == "remaining" else [d.strip() for d in days.split(",")]
        else:
            body[name] = value
    return body


@dataclass(frozen=True, slots=True)
class Web:
    """routes.py's response helpers, handed in: this module does not import it back."""

    problem: Callable[[int, str, str], Response]
    secure: Callable[[Response], Response]
    read_form: Callable[[Request], Awaitable[dict[str, str] | None]]
    same_origin: Callable[[Request], bool]


class Controls:
    def __init__(self, dashboard: Host, web: Web) -> None:
        self.d = dashboard
        self.problem, self.secure = web.problem, web.secure
        self.read_form, self.same_origin = web.read_form, web.same_origin

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard/api/operate", self.operate, methods=["POST"]),
            Route("/dashboard/api/changes", self.changes, methods=["GET"]),
        ]

    async def operate(self, request: Request) -> Response:
        _problem, _secure = self.problem, self.secure
        s = self.d._session(request)
        if s is None:
            return _problem(401, "login_required", "log in at /login")
        form = await self.read_form(request)
        if (
            not self.same_origin(request)
            or form is None
            or not self.d.signer.check_session_csrf(s, form.get("csrf"))
        ):
            return _problem(403, "csrf", "a change needs the page's token")
        if s.role != "operator":
            return _problem(403, "forbidden", "only an operator may change a campaign")
        op = form.get("op", "")
        if op not in OPS:
            return _problem(422, "invalid_request", f"op: one of {', '.join(OPS)}")
        cid = self.d._campaign(request) if "campaign" not in form else form["campaign"]
        if cid is None or cid not in self.d.engine.ledger.books:
            return _problem(404, "campaign_not_found", "unknown campaign")
        body = _body(op, form)
        if isinstance(body, str):
            return _problem(422, "invalid_request", body)
        account = self.d.accounts.get(s.username)
        by = identity(s.username, account.source if account else "user")
        try:
            out = await self.d.engine.operate(op, cid, body, by)
        except LijianError as exc:
            return _problem(error_status(exc), exc.code, exc.detail)
        return _secure(JSONResponse(out.body, out.status))

    async def changes(self, request: Request) -> Response:
        _problem, _secure = self.problem, self.secure
        s = self.d._require(request)
        if isinstance(s, Response):
            return s
        cid = self.d._campaign(request)
        if cid is None:
            return _problem(404, "campaign_not_found", "unknown campaign")
        what = request.query_params.get("list", "changes")
        if what not in LISTS:
            return _problem(422, "invalid_request", f"list: one of {', '.join(sorted(LISTS))}")
        return _secure(JSONResponse(await self.d.engine.read_operations(cid, what)))
