//! The PostgreSQL schema and its migrations, applied at open, recorded one row per
//! migration in `minoots_schema_version`. A migration is appended, never edited: a
//! database created by an older MINOOTS upgrades by running the ones it has not seen, all
//! in one transaction.
//!
//! Several processes may open one database at once (kernels of a cluster starting
//! together, two tests). The migrations therefore run under a transaction-level advisory
//! lock: the first to take it applies them, the others wait, then find them applied.
//! An open that finds every migration applied takes no lock at all. A database written by
//! a newer MINOOTS is refused, never downgraded.
//!
//! Types, and why they differ from SQLite's:
//! - ids are `uuid` (16 bytes, compared bytewise, which is the order of
//!   [`minoots_core::TimerId`], so keyset paging by `(fire_at, id)` agrees with Rust);
//! - times are `bigint` microseconds since the Unix epoch, as everywhere in MINOOTS (no
//!   time zone conversion, no loss, the same arithmetic as the other backend);
//! - `labels` are `jsonb`: they are filtered on in SQL (`labels ->> key`), and validation
//!   keeps them to plain strings without control characters, which jsonb stores exactly;
//! - `metadata`, `action_bundle` and event `data` are `text` holding JSON: SQL never
//!   looks inside them, and jsonb would not give back what was stored (it reorders keys,
//!   rewrites numbers such as `1e2`, and refuses the `\u0000` escape that JSON allows in a
//!   client's metadata);
//! - API key roles are `text[]`, hashes and fingerprints `bytea`;
//! - statuses are `text` with a CHECK listing the values the code knows;
//! - `event_log_head` holds the last event number in one row (see `log.rs` for why not a
//!   SEQUENCE);
//! - `shards` holds one row per shard of timers, with the kernel leasing it, its fencing
//!   epoch and the lease's end in database time; `kernels` the kernels alive (see
//!   `shards.rs`). A timer's shard is computed from its id, never stored.

use super::errors::describe;
use crate::types::{StoreError, StoreResult};

/// The advisory lock key (database-wide, like every advisory lock) held while migrating:
/// "MINOOTS" in ASCII followed by 1.
pub(super) const MIGRATION_LOCK_KEY: i64 = 0x4d49_4e4f_4f54_5301;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: timers, deliveries, attempts, the event log, signing secrets, tenants, API keys
    // and usage counters: what the SQLite schema holds after its third migration.
    r#"
    CREATE TABLE timers (
        id                      uuid    NOT NULL PRIMARY KEY,
        tenant_id               text    NOT NULL,
        name                    text    NOT NULL,
        requested_by            text,
        status                  text    NOT NULL
            CHECK (status IN ('scheduled', 'fired', 'settled', 'failed', 'cancelled')),
        created_at              bigint  NOT NULL,
        fire_at                 bigint  NOT NULL,
        duration_ms             bigint,
        fired_at                bigint,
        settled_at              bigint,
        cancelled_at            bigint,
        cancel_reason           text,
        metadata                text    NOT NULL,
        labels                  jsonb   NOT NULL,
        action_bundle           text    NOT NULL,
        idempotency_key         text,
        -- SHA-256 of the request that first used the key, so a reuse with a different
        -- body is told apart from a retry.
        idempotency_fingerprint bytea,
        version                 bigint  NOT NULL
    );
    -- The scheduler's window query: only scheduled timers, in due order.
    CREATE INDEX timers_due ON timers (fire_at, id) WHERE status = 'scheduled';
    -- Listing a tenant's timers in fire-time order with keyset paging.
    CREATE INDEX timers_tenant ON timers (tenant_id, fire_at, id);
    -- Also what makes two creates racing for one key end with one timer.
    CREATE UNIQUE INDEX timers_idempotency ON timers (tenant_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

    CREATE TABLE deliveries (
        id               uuid    NOT NULL PRIMARY KEY,
        timer_id         uuid    NOT NULL,
        tenant_id        text    NOT NULL,
        occurrence       bigint  NOT NULL,
        action_index     integer NOT NULL,
        status           text    NOT NULL
            CHECK (status IN ('pending', 'in_flight', 'succeeded', 'dead')),
        attempt          integer NOT NULL,
        max_attempts     integer NOT NULL,
        next_attempt_at  bigint  NOT NULL,
        lease_owner      text,
        lease_expires_at bigint,
        created_at       bigint  NOT NULL,
        updated_at       bigint  NOT NULL,
        last_error       text,
        UNIQUE (timer_id, occurrence, action_index)
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_lease ON deliveries (lease_expires_at) WHERE status = 'in_flight';

    CREATE TABLE attempts (
        delivery_id      uuid    NOT NULL,
        attempt          integer NOT NULL,
        lease_owner      text    NOT NULL,
        started_at       bigint  NOT NULL,
        duration_us      bigint  NOT NULL,
        outcome          text    NOT NULL
            CHECK (outcome IN ('succeeded', 'retryable', 'permanent')),
        http_status      integer,
        exit_code        integer,
        error            text,
        response_excerpt text,
        PRIMARY KEY (delivery_id, attempt)
    );

    CREATE TABLE events (
        seq         bigint  NOT NULL PRIMARY KEY,
        type        text    NOT NULL,
        tenant_id   text    NOT NULL,
        timer_id    uuid    NOT NULL,
        delivery_id uuid,
        occurred_at bigint  NOT NULL,
        data        text    NOT NULL
    );
    -- The last event number handed out and committed: one row, locked by every write
    -- that appends events, from numbering to commit.
    CREATE TABLE event_log_head (
        single   boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (single),
        last_seq bigint  NOT NULL
    );
    INSERT INTO event_log_head (single, last_seq) VALUES (true, 0);

    -- Per-tenant webhook signing secrets; retired ones keep signing for a grace period.
    CREATE TABLE signing_secrets (
        tenant_id  text   NOT NULL,
        secret     text   NOT NULL,
        created_at bigint NOT NULL,
        retired_at bigint,
        PRIMARY KEY (tenant_id, created_at, secret)
    );
    -- At most one current secret per tenant, even when two first webhooks race.
    CREATE UNIQUE INDEX signing_secrets_current ON signing_secrets (tenant_id)
        WHERE retired_at IS NULL;

    CREATE TABLE tenants (
        id         text   NOT NULL PRIMARY KEY,
        name       text   NOT NULL,
        tier       text   NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
    );

    -- Keys are stored as the SHA-256 of the plaintext; the plaintext is never stored.
    CREATE TABLE api_keys (
        id           text   NOT NULL PRIMARY KEY,
        tenant_id    text   NOT NULL,
        name         text   NOT NULL,
        key_hash     bytea  NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
        prefix       text   NOT NULL,
        roles        text[] NOT NULL,
        created_at   bigint NOT NULL,
        expires_at   bigint,
        revoked_at   bigint,
        last_used_at bigint
    );
    CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

    -- Timers created per tenant and UTC day (the daily quota and /usage). A create
    -- updates its row, so creates of one tenant queue on it: that is what keeps the
    -- quota exact when several kernels create at once.
    CREATE TABLE tenant_daily (
        tenant_id text   NOT NULL,
        day       bigint NOT NULL,
        created   bigint NOT NULL,
        PRIMARY KEY (tenant_id, day)
    );

    -- Scheduled timers per tenant, kept in step by create, cancel and fire (the pending
    -- quota), so checking it costs one row whatever the tenant's size.
    CREATE TABLE tenant_pending (
        tenant_id text   NOT NULL PRIMARY KEY,
        pending   bigint NOT NULL
    );
    "#,
    // 2: the kernel that owns this database (schema), with its fencing epoch (`owner.rs`).
    r#"
    CREATE TABLE kernel_owner (
        single boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (single),
        -- Raised by one each time a kernel takes the database.
        epoch  bigint  NOT NULL,
        -- The name the kernel gave, and when (µs) it took over.
        owner  text    NOT NULL,
        since  bigint  NOT NULL
    );
    INSERT INTO kernel_owner (single, epoch, owner, since) VALUES (true, 0, '', 0);
    "#,
    // 3: several kernels on one database: shards leased with fencing epochs instead of
    // one owner (`shards.rs`).
    r#"
    DROP TABLE kernel_owner;
    CREATE TABLE shards (
        shard       integer NOT NULL PRIMARY KEY,
        -- The kernel leasing it ('' when free).
        owner       text    NOT NULL DEFAULT '',
        -- Raised by one each time a kernel takes the shard; fires check it.
        epoch       bigint  NOT NULL DEFAULT 0,
        -- When the lease ends, µs of the database's clock (0: free now).
        lease_until bigint  NOT NULL DEFAULT 0
    );
    INSERT INTO shards (shard) SELECT generate_series(0, 63);
    CREATE TABLE kernels (
        name        text   NOT NULL PRIMARY KEY,
        -- µs of the database's clock; a kernel not seen since is gone.
        alive_until bigint NOT NULL,
        started_at  bigint NOT NULL
    );
    "#,
    // 4: a timer a schedule created names the schedule and the slot it runs.
    r#"
    ALTER TABLE timers ADD COLUMN schedule_id uuid, ADD COLUMN scheduled_at bigint;
    "#,
    // 5: schedules, their progress and wake time, and one record per slot.
    r#"
    CREATE TABLE schedules (
        id           uuid    NOT NULL PRIMARY KEY,
        tenant_id    text    NOT NULL,
        request      text    NOT NULL,
        status       text    NOT NULL,
        created_at   bigint  NOT NULL,
        updated_at   bigint  NOT NULL,
        version      bigint  NOT NULL,
        cursor       bigint  NOT NULL,
        runs_fired   bigint  NOT NULL,
        active_timer uuid,
        buffered     text    NOT NULL,
        wake_at      bigint
    );
    CREATE INDEX schedules_wake ON schedules (wake_at, id) WHERE wake_at IS NOT NULL;
    CREATE INDEX schedules_tenant ON schedules (tenant_id, id);
    CREATE TABLE schedule_runs (
        schedule_id  uuid    NOT NULL,
        scheduled_at bigint  NOT NULL,
        status       text    NOT NULL,
        reason       text,
        timer_id     uuid,
        fire_at      bigint,
        recorded_at  bigint  NOT NULL,
        PRIMARY KEY (schedule_id, scheduled_at)
    );
    "#,
    // 6: dashboard sign-in sessions, by the SHA-256 of their token (never the token).
    r#"
    CREATE TABLE ui_sessions (
        token_hash bytea  NOT NULL PRIMARY KEY,
        key_id     text   NOT NULL,
        tenant_id  text   NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL
    );
    CREATE INDEX ui_sessions_key ON ui_sessions (key_id, created_at);
    CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
    "#,
    // 7: a tenant's timers by status, counted from the index alone (the overview).
    r#"
    CREATE INDEX timers_tenant_status ON timers (tenant_id, status);
    "#,
    // 8: the W3C `traceparent` of the create, in its canonical 55-character form
    // (`minoots_core::traceparent`), so the fire and the attempts join the caller's trace
    // after any restart or takeover. NULL when the create had none.
    r#"
    ALTER TABLE timers ADD COLUMN traceparent text
        CHECK (traceparent IS NULL OR length(traceparent) = 55);
    "#,
    // 9: billing. A tenant's Stripe customer and the subscription state last applied;
    // the ids of the Stripe events recorded (each applied once, in the transaction of its
    // effect); and each tenant's metered usage per bucket, with when it reached Stripe.
    r#"
    CREATE TABLE billing_accounts (
        tenant_id              text   NOT NULL PRIMARY KEY,
        customer_id            text,
        subscription_id        text,
        paid_tier              text,
        subscription_status    text,
        current_period_start   bigint,
        current_period_end     bigint,
        grace_until            bigint,
        state_at               bigint,
        updated_at             bigint NOT NULL
    );
    CREATE UNIQUE INDEX billing_accounts_customer ON billing_accounts (customer_id)
        WHERE customer_id IS NOT NULL;
    CREATE INDEX billing_accounts_grace ON billing_accounts (grace_until)
        WHERE grace_until IS NOT NULL;
    CREATE TABLE billing_events (
        event_id    text   NOT NULL PRIMARY KEY,
        type        text   NOT NULL,
        effect      text   NOT NULL,
        received_at bigint NOT NULL
    );
    CREATE TABLE meter_usage (
        tenant_id    text   NOT NULL,
        meter        text   NOT NULL,
        bucket_start bigint NOT NULL,
        bucket_end   bigint NOT NULL,
        value        bigint NOT NULL,
        sent_at      bigint,
        PRIMARY KEY (tenant_id, meter, bucket_start)
    );
    CREATE INDEX meter_usage_unsent ON meter_usage (bucket_end) WHERE sent_at IS NULL;
    -- Every row by the end of its bucket (retention).
    CREATE INDEX meter_usage_end ON meter_usage (bucket_end);
    "#,
];

/// Applies the migrations this database has not seen, on `client` (whose search path is
/// already set). Creates the configured schema when it does not exist.
pub(super) async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: Option<&str>,
) -> StoreResult<()> {
    let failed = |what: &str, e: tokio_postgres::Error| {
        StoreError::Unavailable(format!("{what}: {}", describe(&e)))
    };
    let target = MIGRATIONS.len() as i32;
    // Without a lock first: an open that finds everything applied writes nothing (it
    // works on a read-only server too).
    match applied(client)
        .await
        .map_err(|e| failed("cannot read the schema version", e))?
    {
        Some(current) if current == target => return Ok(()),
        Some(current) => check_not_newer(current, target)?,
        None => {}
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| failed("cannot migrate", e))?;
    tx.batch_execute("SET LOCAL statement_timeout = 0")
        .await
        .map_err(|e| failed("cannot migrate", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| failed("cannot take the migration lock", e))?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await
            .map_err(|e| failed("cannot create the schema", e))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS minoots_schema_version (
             version    integer     NOT NULL PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| failed("cannot create minoots_schema_version", e))?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM minoots_schema_version",
            &[],
        )
        .await
        .map_err(|e| failed("cannot read the schema version", e))?
        .get(0);
    check_not_newer(current, target)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| failed(&format!("migration {version} failed"), e))?;
        tx.execute(
            "INSERT INTO minoots_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(|e| failed("cannot record the schema version", e))?;
    }
    tx.commit().await.map_err(|e| failed("cannot migrate", e))
}

/// The last migration applied, or `None` when the version table does not exist yet.
async fn applied(client: &tokio_postgres::Client) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('minoots_schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM minoots_schema_version",
            &[],
        )
        .await?;
    Ok(Some(row.get(0)))
}

fn check_not_newer(current: i32, target: i32) -> StoreResult<()> {
    if current > target {
        return Err(StoreError::Unavailable(format!(
            "the database was written by a newer MINOOTS (schema {current}, this build knows {target}); upgrade MINOOTS"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_newer_schema_is_refused_and_an_older_one_accepted() {
        assert!(
            super::check_not_newer(2, 1)
                .unwrap_err()
                .to_string()
                .contains("newer")
        );
        assert!(super::check_not_newer(0, 1).is_ok());
        assert!(super::check_not_newer(1, 1).is_ok());
    }
}
