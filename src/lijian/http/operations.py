"""Running a live campaign over HTTP (docs/API.md): pause, resume, amendments, blocks,
and a new campaign (``POST /v1/campaigns`` with its settings file).

Each handler decodes its body into a strict struct (unknown fields, wrong types: 422),
takes the operator's key id from the verified signature, and makes one engine call,
``operate``: the change is decided by the one writer in arrival order, checked there
(reasons, amounts, days, four eyes) and committed before this answers. The lists are
plain reads of the ledger. Writes are the operator's; reads also the auditor's.
"""

from __future__ import annotations

import msgspec

from lijian.core.settings_text import SETTINGS_TOML_MAX_BYTES
from lijian.http.api import (
    OPERATOR,
    REPORTS,
    ApiHost,
    _media_type,
    decode,
    outcome_reply,
    path_id,
    query_param,
)
from lijian.http.arguments import invalid
from lijian.http.operation_bodies import AmendmentBody, BlockBody, ReasonBody, ReviewBody
from lijian.http.problems import Problem
from lijian.http.types import Call, Reply, Route, json_reply
from lijian.jsonish import Json

_decode_reason = msgspec.json.Decoder(ReasonBody).decode
_decode_amendment = msgspec.json.Decoder(AmendmentBody).decode
_decode_block = msgspec.json.Decoder(BlockBody).decode
_decode_review = msgspec.json.Decoder(ReviewBody).decode
# application/octet-stream: the TOML bytes from clients generated from /openapi.json by
# tools that send a non-JSON body only as a byte stream (http/openapi_extras.py).
TOML_TYPES = frozenset({"application/toml", "application/octet-stream"})
NEW_CAMPAIGN_REASON = "a new campaign"


def _fields(body: msgspec.Struct) -> Json:
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}


class OperationsApi:
    def __init__(self, app: ApiHost) -> None:
        # No engine of its own: a handler calls ``call.engine``, which for a signed
        # request is the one that carries its ticket (a gateway sends it along).
        self.app = app

    def routes(self) -> list[Route]:
        c = "/v1/campaigns/{campaign_id}"
        r = [
            Route(
                "POST",
                "/v1/campaigns",
                self.propose_campaign,
                OPERATOR,
                body_max_bytes=SETTINGS_TOML_MAX_BYTES,
            ),
            Route("POST", c + "/pause", self.pause, OPERATOR),
            Route("POST", c + "/resume", self.resume, OPERATOR),
            Route("POST", c + "/amendments", self.propose, OPERATOR),
            Route("GET", c + "/amendments", self.amendments, REPORTS),
            Route("POST", c + "/amendments/{amendment_id}/approve", self.approve, OPERATOR),
            Route("POST", c + "/amendments/{amendment_id}/reject", self.reject, OPERATOR),
            Route("POST", c + "/blocks", self.block, OPERATOR),
            Route("GET", c + "/blocks", self.blocks, REPORTS),
            Route("POST", c + "/blocks/{block_id}/lift", self.lift, OPERATOR),
            Route("GET", c + "/changes", self.changes, REPORTS),
            Route("GET", c + "/risk/queue", self.review_queue, REPORTS),
            Route("POST", c + "/risk/{flag_id}/review", self.review, OPERATOR),
        ]
        return [
            Route(x.method, x.template, x.handler, x.roles, x.reader, x.body_max_bytes,
                  f"{x.method} {x.template}")
            for x in r
        ]  # fmt: skip

    async def _operate(self, call: Call, op: str, body: Json) -> Reply:
        cid = path_id(call, "campaign_id")
        assert call.client is not None  # every route here is signed
        return outcome_reply(await call.engine.operate(op, cid, body, call.client.key_id))

    async def pause(self, call: Call) -> Reply:
        return await self._operate(call, "pause", _fields(decode(call, _decode_reason)))

    async def resume(self, call: Call) -> Reply:
        return await self._operate(call, "resume", _fields(decode(call, _decode_reason)))

    async def propose(self, call: Call) -> Reply:
        return await self._operate(call, "propose", _fields(decode(call, _decode_amendment)))

    async def propose_campaign(self, call: Call) -> Reply:
        """A new campaign: the body is its settings file (TOML); the reason may be given
        as ``?reason=`` (the file is the body), else it says which campaign is proposed."""
        if _media_type(call) not in TOML_TYPES:
            raise Problem(415, "unsupported_media_type", "Content-Type must be application/toml")
        try:
            text = call.body.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("body", "the settings file is not UTF-8 text") from None
        body: Json = {"settings_toml": text}
        reason = query_param(call, "reason")
        body["reason"] = NEW_CAMPAIGN_REASON if reason is None else reason
        assert call.client is not None
        # No campaign id in the path: the core reads it from the file.
        return outcome_reply(await call.engine.operate("propose_campaign", "", body,
                                                       call.client.key_id))  # fmt: skip

    async def approve(self, call: Call) -> Reply:
        am_id = path_id(call, "amendment_id")
        body = _fields(decode(call, _decode_reason))
        return await self._operate(call, "approve", {**body, "amendment_id": am_id})

    async def reject(self, call: Call) -> Reply:
        am_id = path_id(call, "amendment_id")
        body = _fields(decode(call, _decode_reason))
        return await self._operate(call, "reject", {**body, "amendment_id": am_id})

    async def block(self, call: Call) -> Reply:
        return await self._operate(call, "block", _fields(decode(call, _decode_block)))

    async def lift(self, call: Call) -> Reply:
        bl_id = path_id(call, "block_id")
        body = _fields(decode(call, _decode_reason))
        return await self._operate(call, "lift", {**body, "block_id": bl_id})

    async def review(self, call: Call) -> Reply:
        fid = path_id(call, "flag_id")
        body = _fields(decode(call, _decode_review))
        return await self._operate(call, "review", {**body, "flag_id": fid})

    async def review_queue(self, call: Call) -> Reply:
        return await self._list(call, "review_queue")

    async def _list(self, call: Call, what: str) -> Reply:
        cid = path_id(call, "campaign_id")
        return json_reply(200, await call.engine.read_operations(cid, what))

    async def amendments(self, call: Call) -> Reply:
        return await self._list(call, "amendments")

    async def blocks(self, call: Call) -> Reply:
        return await self._list(call, "blocks")

    async def changes(self, call: Call) -> Reply:
        return await self._list(call, "changes")
