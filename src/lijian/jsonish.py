"""The one name for a JSON object whose values are only passed on (to msgspec, to a
reply, to a template): the code holding it never reads into it, so ``object`` is exact."""

from __future__ import annotations

Json = dict[str, object]
