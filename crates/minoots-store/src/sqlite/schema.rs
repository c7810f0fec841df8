//! The SQLite schema and its migrations, applied in order and recorded in `user_version`.
//!
//! A migration is appended, never edited: a store created by an older MINOOTS upgrades by
//! running the ones it has not seen, in one transaction.

pub const MIGRATIONS: &[&str] = &[
    // 1: timers, deliveries, attempts, events.
    r#"
    CREATE TABLE timers (
        id              BLOB    NOT NULL PRIMARY KEY,
        tenant_id       TEXT    NOT NULL,
        name            TEXT    NOT NULL,
        requested_by    TEXT,
        status          TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        fire_at         INTEGER NOT NULL,
        duration_ms     INTEGER,
        fired_at        INTEGER,
        settled_at      INTEGER,
        cancelled_at    INTEGER,
        cancel_reason   TEXT,
        metadata        TEXT    NOT NULL,
        labels          TEXT    NOT NULL,
        action_bundle   TEXT    NOT NULL,
        idempotency_key TEXT,
        version         INTEGER NOT NULL
    );
    -- The scheduler's window query: only scheduled timers, in due order.
    CREATE INDEX timers_due ON timers (fire_at, id) WHERE status = 'scheduled';
    -- Listing a tenant's timers in fire-time order with keyset paging.
    CREATE INDEX timers_tenant ON timers (tenant_id, fire_at, id);
    CREATE UNIQUE INDEX timers_idempotency ON timers (tenant_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

    CREATE TABLE deliveries (
        id               BLOB    NOT NULL PRIMARY KEY,
        timer_id         BLOB    NOT NULL,
        tenant_id        TEXT    NOT NULL,
        occurrence       INTEGER NOT NULL,
        action_index     INTEGER NOT NULL,
        status           TEXT    NOT NULL,
        attempt          INTEGER NOT NULL,
        max_attempts     INTEGER NOT NULL,
        next_attempt_at  INTEGER NOT NULL,
        lease_owner      TEXT,
        lease_expires_at INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        last_error       TEXT,
        UNIQUE (timer_id, occurrence, action_index)
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_lease ON deliveries (lease_expires_at) WHERE status = 'in_flight';

    CREATE TABLE attempts (
        delivery_id      BLOB    NOT NULL,
        attempt          INTEGER NOT NULL,
        lease_owner      TEXT    NOT NULL,
        started_at       INTEGER NOT NULL,
        duration_us      INTEGER NOT NULL,
        outcome          TEXT    NOT NULL,
        http_status      INTEGER,
        exit_code        INTEGER,
        error            TEXT,
        response_excerpt TEXT,
        PRIMARY KEY (delivery_id, attempt)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        type        TEXT    NOT NULL,
        tenant_id   TEXT    NOT NULL,
        timer_id    BLOB    NOT NULL,
        delivery_id BLOB,
        occurred_at INTEGER NOT NULL,
        data        TEXT    NOT NULL
    );
    "#,
    // 2: per-tenant webhook signing secrets; retired ones keep signing for a grace period.
    r#"
    CREATE TABLE signing_secrets (
        tenant_id  TEXT    NOT NULL,
        secret     TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER,
        PRIMARY KEY (tenant_id, created_at, secret)
    ) WITHOUT ROWID;
    "#,
    // 3: tenants, API keys, usage counters and idempotency fingerprints.
    r#"
    CREATE TABLE tenants (
        id         TEXT    NOT NULL PRIMARY KEY,
        name       TEXT    NOT NULL,
        tier       TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Keys are stored as the SHA-256 of the plaintext; the plaintext is never stored.
    CREATE TABLE api_keys (
        id           TEXT    NOT NULL PRIMARY KEY,
        tenant_id    TEXT    NOT NULL,
        name         TEXT    NOT NULL,
        key_hash     BLOB    NOT NULL UNIQUE,
        prefix       TEXT    NOT NULL,
        roles        TEXT    NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER
    );
    CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

    -- Timers created per tenant and UTC day (the daily quota and /usage).
    CREATE TABLE tenant_daily (
        tenant_id TEXT    NOT NULL,
        day       INTEGER NOT NULL,
        created   INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, day)
    ) WITHOUT ROWID;

    -- Scheduled timers per tenant, kept in step by create, cancel and fire (the pending
    -- quota), so checking it costs one row read whatever the tenant's size.
    CREATE TABLE tenant_pending (
        tenant_id TEXT    NOT NULL PRIMARY KEY,
        pending   INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO tenant_pending (tenant_id, pending)
        SELECT tenant_id, COUNT(*) FROM timers WHERE status = 'scheduled' GROUP BY tenant_id;

    -- SHA-256 of the request that first used the timer's idempotency key, so a reuse
    -- with a different body is told apart from a retry.
    ALTER TABLE timers ADD COLUMN idempotency_fingerprint BLOB;
    "#,
    // 4: a timer a schedule created names the schedule and the slot it runs.
    r#"
    ALTER TABLE timers ADD COLUMN schedule_id BLOB;
    ALTER TABLE timers ADD COLUMN scheduled_at INTEGER;
    "#,
    // 5: schedules, their progress and wake time, and one record per slot.
    r#"
    CREATE TABLE schedules (
        id           BLOB    NOT NULL PRIMARY KEY,
        tenant_id    TEXT    NOT NULL,
        request      TEXT    NOT NULL,
        status       TEXT    NOT NULL,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL,
        version      INTEGER NOT NULL,
        cursor       INTEGER NOT NULL,
        runs_fired   INTEGER NOT NULL,
        active_timer BLOB,
        buffered     TEXT    NOT NULL,
        wake_at      INTEGER
    );
    -- The dispatcher's queue: schedules with something to do, in wake order.
    CREATE INDEX schedules_wake ON schedules (wake_at, id) WHERE wake_at IS NOT NULL;
    CREATE INDEX schedules_tenant ON schedules (tenant_id, id);
    -- The key is the slot: a slot can never get a second record.
    CREATE TABLE schedule_runs (
        schedule_id  BLOB    NOT NULL,
        scheduled_at INTEGER NOT NULL,
        status       TEXT    NOT NULL,
        reason       TEXT,
        timer_id     BLOB,
        fire_at      INTEGER,
        recorded_at  INTEGER NOT NULL,
        PRIMARY KEY (schedule_id, scheduled_at)
    ) WITHOUT ROWID;
    "#,
    // 6: dashboard sign-in sessions, by the SHA-256 of their token (never the token).
    r#"
    CREATE TABLE ui_sessions (
        token_hash BLOB    NOT NULL PRIMARY KEY,
        key_id     TEXT    NOT NULL,
        tenant_id  TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- A key's sessions, oldest first (the per-key bound; revocation ends them all).
    CREATE INDEX ui_sessions_key ON ui_sessions (key_id, created_at);
    -- Expired sessions, for pruning and the count of live ones (the global bound).
    CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
    "#,
    // 7: a tenant's timers by status, counted from the index alone (the overview).
    r#"
    CREATE INDEX timers_tenant_status ON timers (tenant_id, status);
    "#,
    // 8: the same counts kept by the writes, once per tenant and group commit
    // (`status_counts.rs`), instead of migration 7's index, which every create and status
    // change paid for (10.6 % of a store cycle, docs/benchmarks.md). Scheduled timers are
    // `tenant_pending`'s count.
    r#"
    CREATE TABLE tenant_status_counts (
        tenant_id TEXT    NOT NULL PRIMARY KEY,
        fired     INTEGER NOT NULL,
        settled   INTEGER NOT NULL,
        failed    INTEGER NOT NULL,
        cancelled INTEGER NOT NULL
    );
    INSERT INTO tenant_status_counts (tenant_id, fired, settled, failed, cancelled)
        SELECT tenant_id, SUM(status = 'fired'), SUM(status = 'settled'),
               SUM(status = 'failed'), SUM(status = 'cancelled')
          FROM timers GROUP BY tenant_id;
    DROP INDEX timers_tenant_status;
    "#,
    // 9: the W3C `traceparent` of the create, in its canonical 55-character form
    // (`minoots_core::traceparent`), so the fire and the attempts join the caller's trace
    // after any restart. NULL when the create had none.
    r#"
    ALTER TABLE timers ADD COLUMN traceparent TEXT
        CHECK (traceparent IS NULL OR length(traceparent) = 55);
    "#,
    // 10: billing. A tenant's Stripe customer and the subscription state last applied;
    // the ids of the Stripe events recorded (each applied once, in the transaction of its
    // effect); and each tenant's metered usage per bucket, with when it reached Stripe.
    r#"
    CREATE TABLE billing_accounts (
        tenant_id              TEXT    NOT NULL PRIMARY KEY,
        customer_id            TEXT,
        subscription_id        TEXT,
        paid_tier              TEXT,
        subscription_status    TEXT,
        current_period_start   INTEGER,
        current_period_end     INTEGER,
        grace_until            INTEGER,
        state_at               INTEGER,
        updated_at             INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX billing_accounts_customer ON billing_accounts (customer_id)
        WHERE customer_id IS NOT NULL;
    -- Past-due accounts, by the end of their grace period (the grace sweep).
    CREATE INDEX billing_accounts_grace ON billing_accounts (grace_until)
        WHERE grace_until IS NOT NULL;
    CREATE TABLE billing_events (
        event_id    TEXT    NOT NULL PRIMARY KEY,
        type        TEXT    NOT NULL,
        effect      TEXT    NOT NULL,
        received_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE meter_usage (
        tenant_id    TEXT    NOT NULL,
        meter        TEXT    NOT NULL,
        bucket_start INTEGER NOT NULL,
        bucket_end   INTEGER NOT NULL,
        value        INTEGER NOT NULL,
        sent_at      INTEGER,
        PRIMARY KEY (tenant_id, meter, bucket_start)
    ) WITHOUT ROWID;
    -- What is left to send, oldest bucket first.
    CREATE INDEX meter_usage_unsent ON meter_usage (bucket_end) WHERE sent_at IS NULL;
    -- Every row by the end of its bucket (retention).
    CREATE INDEX meter_usage_end ON meter_usage (bucket_end);
    "#,
];
