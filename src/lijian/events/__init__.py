"""Events for the operator (docs/API.md "Webhooks"): recorded in the ledger's commits, then
delivered to the receivers of the clients file.

model.py      event types, the stored row, the delivered body and its ``evt_`` id
watch.py      thresholds (today's tranche, the whole budget) and sold out / restocked
spikes.py     a decline reason's rate over the last minute against its baseline
outbox.py     what the writer adds to its next commit (events, receivers' cursors)
receivers.py  the ``[[webhooks]]`` of the clients file
delivery.py   the bounded delivery task: sign, post, retry with back-off, in order

Transactional outbox: an event row is written in the same transaction as the entries
that caused it (or, for spikes and audit failures, in the next commit), so an event is
never announced for money that was not committed, and never lost once it was. Delivery
reads the rows back after a receiver's cursor, which is itself committed by the writer:
a restart (or a kill -9) resumes at the cursor, so each event arrives at least once,
duplicates only with the same id.
"""
