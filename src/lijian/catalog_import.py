"""``lijian catalog import``: a catalogue file stored into a stopped server's ledger.

The command line's side of the catalogue (the HTTP upload is ``http/ndjson.py``'s, whose
parser both use): it opens the ledger's store itself, so it lives beside the other
commands that do, not in ``http/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lijian.http.ndjson import CatalogParser, new_category_overflow, unknown_category
from lijian.store import shown_db

FILE_CHUNK_BYTES = 1 << 20


@dataclass
class ImportResult:
    rows: int = 0
    error: str | None = None


IMPORT_CHUNK_ROWS = 100_000  # one transaction each: bounded memory in the store's driver


def import_catalog_file(
    db: str,
    campaign: str,
    path: str,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """``lijian catalog import``: parse an NDJSON file, then store it through the engine.

    ``campaign`` is a campaign id stored in ``db`` or a campaign TOML file. For a
    stopped server: a running one would not see the rows until its next start (use
    ``PUT /v1/campaigns/{id}/catalog`` there). Nothing is stored unless every line is good.
    """
    from pathlib import Path

    from lijian.catalog import Catalog
    from lijian.core.settings import Settings
    from lijian.inputs import load_settings_file, settings_fingerprint
    from lijian.store import is_postgres_url, open_store
    from lijian.stored_ledger import StoredSettingsError, stored_settings

    stored: list[Settings] = []
    if is_postgres_url(db) or Path(db).exists():
        known = open_store(db)
        try:
            stored = stored_settings(known)
        except StoredSettingsError as exc:
            return ImportResult(error=str(exc))
        finally:
            known.close()
    if campaign.endswith(".toml") and Path(campaign).is_file():
        s = load_settings_file(campaign)
        stored = [x for x in stored if x.campaign.id != s.campaign.id] + [s]
        cid = s.campaign.id
    else:
        cid = campaign
    target = next((x for x in stored if x.campaign.id == cid), None)
    if target is None:
        db_text = shown_db(db)
        why = f"campaign {cid!r} is not in {db_text} (give its TOML file instead)"
        return ImportResult(error=why)
    parser = CatalogParser()
    with open(path, "rb") as f:
        while chunk := f.read(FILE_CHUNK_BYTES):
            parser.feed(chunk)
            if progress is not None:
                progress(len(chunk))
    parser.close()
    if parser.error is not None:
        e = parser.error
        return ImportResult(error=f"{path}: line {e.line}: {e.field}: {e.message}")
    for platform, line in parser.platforms.items():
        if platform not in target.campaign.platforms:
            return ImportResult(
                error=f"{path}: line {line}: platform {platform!r} does not take part in {cid!r}"
            )
    unknown = unknown_category(parser, target.eligibility.categories)
    if unknown is not None:
        return ImportResult(error=f"{path}: line {unknown.line}: {unknown.message}")
    # Straight into the store, not through an Engine: an engine would also run the
    # ledger's timed events (open a tranche, expire holds) under this tool's clock, which
    # is the servers' job, and on a multi-worker PostgreSQL ledger not this tool's at all.
    store = open_store(db)
    try:
        for s in stored:
            store.save_campaign(s.campaign.id, settings_fingerprint(s))
        existing = Catalog()
        existing.upsert(store.catalog_rows())
        full = new_category_overflow(existing, parser.categories)
        if full is not None:
            return ImportResult(
                error=f"{path}: line {parser.categories[full]}: too many categories"
            )
        for i in range(0, len(parser.rows), IMPORT_CHUNK_ROWS):
            store.commit_batch([], (), (), parser.rows[i : i + IMPORT_CHUNK_ROWS])
        existing.set_reference_prices(store.reference_prices())
        changed = existing.changed_prices(parser.prices)
        for i in range(0, len(changed), IMPORT_CHUNK_ROWS):
            store.commit_batch([], reference_prices=changed[i : i + IMPORT_CHUNK_ROWS])
    finally:
        store.close()
    return ImportResult(rows=len(parser.rows))
