"""The versioned schema of the state database and its upgrades.

``PRAGMA user_version`` holds the schema version. Opening an older store applies
the missing migrations in one transaction; opening a store written by a newer
Railguard is refused rather than guessed at. Append migrations, never edit one that
has shipped. Called by :class:`railguard.state.store.Store`.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE environments (
        name TEXT PRIMARY KEY,
        serial INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE spec_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        env TEXT NOT NULL,
        digest TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE inventory (
        env TEXT NOT NULL,
        address TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (env, address)
    );
    CREATE TABLE plans (
        id TEXT PRIMARY KEY,
        env TEXT NOT NULL,
        created_at TEXT NOT NULL,
        hash TEXT NOT NULL,
        base_serial INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'saved',
        body TEXT NOT NULL
    );
    CREATE TABLE releases (
        env TEXT NOT NULL,
        number INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        plan_id TEXT,
        operation_id TEXT,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (env, number)
    );
    CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        env TEXT NOT NULL,
        kind TEXT NOT NULL,
        plan_id TEXT,
        status TEXT NOT NULL,
        principal TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        error TEXT
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        operation_id TEXT NOT NULL REFERENCES operations(id),
        step TEXT NOT NULL,
        phase TEXT NOT NULL CHECK (phase IN ('begin', 'end', 'fail')),
        detail TEXT NOT NULL DEFAULT '{}',
        at TEXT NOT NULL
    );
    CREATE INDEX journal_by_operation ON journal (operation_id, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        env TEXT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        address TEXT,
        message TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_by_env ON events (env, id);
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        pid_started REAL NOT NULL,
        host TEXT NOT NULL,
        operation TEXT NOT NULL,
        acquired_at TEXT NOT NULL
    );
    """,
    # 2: guardrails: principals, approvals, secrets, the audit chain; release lifetimes for promotion
    """
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        envs TEXT,
        secret_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT,
        last_used_at TEXT
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        plan_id TEXT NOT NULL,
        plan_hash TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
        principal TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        confirmed TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX approvals_by_plan ON approvals (plan_id);
    CREATE TABLE secrets (
        env TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        fingerprint TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        PRIMARY KEY (env, name, version)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        principal TEXT NOT NULL,
        action TEXT NOT NULL,
        env TEXT,
        plan_id TEXT,
        plan_hash TEXT,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    ALTER TABLE releases ADD COLUMN live_at TEXT;
    ALTER TABLE releases ADD COLUMN ended_at TEXT;
    ALTER TABLE plans ADD COLUMN requested_by TEXT NOT NULL DEFAULT ''
    """,
    # build output streams into the operation's journal as 'output' entries, one per line
    """
    CREATE TABLE journal_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        operation_id TEXT NOT NULL REFERENCES operations(id),
        step TEXT NOT NULL,
        phase TEXT NOT NULL CHECK (phase IN ('begin', 'end', 'fail', 'output')),
        detail TEXT NOT NULL DEFAULT '{}',
        at TEXT NOT NULL
    );
    INSERT INTO journal_v2 (id, operation_id, step, phase, detail, at)
        SELECT id, operation_id, step, phase, detail, at FROM journal;
    DROP TABLE journal;
    ALTER TABLE journal_v2 RENAME TO journal;
    CREATE INDEX journal_by_operation ON journal (operation_id, id)
    """,
    # 4: decisions signed with a key kept outside the state folder (secrets/signing.py)
    """
    ALTER TABLE plans ADD COLUMN signature TEXT;
    ALTER TABLE approvals ADD COLUMN signature TEXT;
    ALTER TABLE audit ADD COLUMN mac TEXT
    """,
    # 5: observation: incidents (timeline, evidence, deliveries in the body) and sources rolled back for one
    """
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        env TEXT NOT NULL,
        kind TEXT NOT NULL,
        dedup TEXT NOT NULL,
        state TEXT NOT NULL,
        service TEXT,
        release INTEGER,
        summary TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        resolved_at TEXT,
        operation TEXT,
        body TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX incidents_by_env ON incidents (env, opened_at);
    CREATE INDEX incidents_by_dedup ON incidents (dedup, state);
    CREATE TABLE known_bad (
        env TEXT NOT NULL,
        service TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        release INTEGER NOT NULL,
        incident TEXT NOT NULL,
        marked_at TEXT NOT NULL,
        acknowledged_by TEXT,
        PRIMARY KEY (env, service, fingerprint)
    )
    """,
    # 6: observation that survives a daemon restart: request metrics per release (per-second buckets of the
    # last minutes, one cumulative row per release) and the step each canary is at
    """
    CREATE TABLE request_series (
        env TEXT NOT NULL,
        service TEXT NOT NULL,
        release INTEGER NOT NULL,
        first_at REAL,
        last_at REAL,
        since TEXT NOT NULL,
        PRIMARY KEY (env, service, release)
    );
    CREATE TABLE request_buckets (
        env TEXT NOT NULL,
        service TEXT NOT NULL,
        release INTEGER NOT NULL,
        second INTEGER NOT NULL,
        counts TEXT NOT NULL,
        PRIMARY KEY (env, service, release, second)
    );
    CREATE TABLE canary_runs (
        env TEXT NOT NULL,
        service TEXT NOT NULL,
        release INTEGER NOT NULL,
        stable INTEGER,
        weight INTEGER NOT NULL,
        step_started REAL NOT NULL,
        operation TEXT,
        analysis TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (env, service)
    )
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
APPLICATION_ID = 0x52474431  # "RGD1": marks the file as a Railguard store
