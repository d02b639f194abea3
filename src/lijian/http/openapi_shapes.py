"""The types of ``openapi.py``'s builders, which it passes to the modules that add their
paths (``openapi_operations``, ``openapi_claims``): passed in, so no import cycle."""

from __future__ import annotations

from collections.abc import Callable

from lijian.jsonish import Json

# (name, description) -> a response or a path parameter object
Described = Callable[[str, str], Json]
# A schema's name -> its {"$ref": ...}
Ref = Callable[[str], dict[str, str]]


# ``openapi._op``: one operation object, from (summary, roles, ok, errors, *, params,
# body, tag, description, signed). Only _op states that signature: a Callable alias
# cannot name keywords, so it says ``...`` (building the spec makes every call).
Op = Callable[..., Json]
