"""Storage adapters (SQLite embedded; PostgreSQL comes with the scale-out work)."""
