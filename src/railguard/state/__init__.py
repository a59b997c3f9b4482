"""The state store: SQLite on disk, schema upgrades, the lock, the journal."""
