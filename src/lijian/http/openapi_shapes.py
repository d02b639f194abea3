"""The types of ``openapi.py``'s builders, which it passes to the modules that add their
paths (``openapi_operations``, ``openapi_claims``): passed in, so no import cycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from lijian.jsonish import Json

# (name, description) -> a response or a path parameter object
Described = Callable[[str, str], Json]
# A schema's name -> its {"$ref": ...}
Ref = Callable[[str], dict[str, str]]


class Op(Protocol):
    """``openapi._op``: one operation object."""

    def __call__(
        self,
        summary: str,
        roles: str,
        ok: dict[int, Json],
        errors: tuple[int, ...],
        *,
        params: list[Json] | None = None,
        body: Json | None = None,
        tag: str = "orders",
        description: str = "",
        signed: bool = True,
    ) -> Json: ...
