//! The settings of the PostgreSQL backend ([`PostgresConfig`]): where the database is,
//! the pool, timeouts, group-commit bounds, the schema and a kernel's shard lease, each with
//! its default and its bound, and the one check of them all. It must never show the URL
//! (which may hold a password) or open a connection.

use super::errors;
use crate::types::*;

/// Most connections one handle may have open, whatever its settings: PostgreSQL's own
/// `max_connections` (100 by default) is shared by every process of a cluster.
pub const MAX_POOL_CONNECTIONS: usize = 256;
/// Longest accepted timeout of any kind: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Shortest shard lease: rounds must fit several times in one.
const MIN_SHARD_LEASE_TTL_MS: u64 = 1_000;
/// Longest schema name and application name PostgreSQL keeps (NAMEDATALEN − 1).
const MAX_NAME_BYTES: usize = 63;
/// Most writes queued for, or committed together by, the writer of one handle.
const MAX_WRITER_QUEUE: usize = 1 << 20;

/// Settings of the PostgreSQL backend.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host[:port]/database[?options]`. Never logged: it may
    /// hold a password.
    pub url: String,
    /// The schema holding MINOOTS' tables (created at open when missing); `None` uses the
    /// server's search path (`public` by default). Lets several stores share one
    /// database, as the tests do. Lowercase letters, digits and `_`.
    pub schema: Option<String>,
    /// Connections this handle may open (default 10), besides one that listens for the
    /// other handles' announcements (`listen.rs`) and, for a kernel, one for its shard
    /// rounds (`shards.rs`). Operations beyond it wait for a free
    /// one. Ten per process leaves room for nine processes (kernels, tools) within
    /// PostgreSQL's default `max_connections` of 100.
    pub max_connections: usize,
    /// How long an operation waits for a free connection before `Unavailable` (default
    /// 10 s).
    pub acquire_timeout_ms: u64,
    /// How long opening one connection may take (default 5 s).
    pub connect_timeout_ms: u64,
    /// The server cancels any statement running longer (default 30 s): a stuck query
    /// cannot hold a connection (and its locks) for ever. Migrations are exempt.
    pub statement_timeout_ms: u64,
    /// Live events buffered per subscriber before it is told it lagged (default 16,384,
    /// as for SQLite).
    pub event_broadcast_capacity: usize,
    /// Shown in `pg_stat_activity` (default `minoots`), so operators can tell MINOOTS'
    /// sessions apart.
    pub application_name: String,
    /// Writes waiting for the writer task; callers wait (backpressure) when it is full
    /// (default 65,536, as for SQLite).
    pub writer_queue_capacity: usize,
    /// Most writes committed in one transaction (default 4,096, as for SQLite). Bounds
    /// the time one group holds its locks and the memory of one group.
    pub max_batch_ops: usize,
    /// Set by a kernel, to a name no other kernel of the database goes by (default
    /// `None`): the handle then leases shards of timers and fires only theirs, fenced by
    /// their epochs (`shards.rs`), and one kernel of the database runs maintenance.
    /// Tools and tests that share a database with kernels leave it unset.
    pub kernel: Option<String>,
    /// How long a kernel's shard leases last without renewal (default 10 s): a killed
    /// kernel's timers fire again, on another kernel, within this plus one second.
    /// Rounds renew every quarter of it (at most every second).
    pub shard_lease_ttl_ms: u64,
    /// The length of a metering bucket, in µs: creates and successful deliveries are
    /// counted per tenant and bucket (`billing.rs`). An hour by default.
    pub meter_bucket_us: i64,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 10,
            acquire_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            event_broadcast_capacity: 16_384,
            application_name: "minoots".into(),
            writer_queue_capacity: 65_536,
            max_batch_ops: 4_096,
            kernel: None,
            shard_lease_ttl_ms: 10_000,
            meter_bucket_us: minoots_core::billing::DEFAULT_METER_BUCKET_US,
        }
    }

    /// Refuses settings outside their bounds, naming the setting.
    pub fn check(&self) -> StoreResult<()> {
        let bad = |what: String| {
            Err(StoreError::Unavailable(format!(
                "invalid PostgreSQL settings: {what}"
            )))
        };
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return bad("the database URL must start with postgres:// or postgresql://".into());
        }
        if let Err(e) = self.url.parse::<tokio_postgres::Config>() {
            return bad(format!("the database URL does not parse ({e})"));
        }
        if let Some(schema) = &self.schema {
            let plain = schema.len() <= MAX_NAME_BYTES
                && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return bad(format!(
                    "schema \"{schema}\" must be 1 to {MAX_NAME_BYTES} lowercase letters, digits or _, not starting with a digit"
                ));
            }
        }
        if !(1..=MAX_POOL_CONNECTIONS).contains(&self.max_connections) {
            return bad(format!(
                "max_connections is {}; it must be 1 to {MAX_POOL_CONNECTIONS}",
                self.max_connections
            ));
        }
        for (name, ms) in [
            ("acquire_timeout_ms", self.acquire_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("statement_timeout_ms", self.statement_timeout_ms),
        ] {
            if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
                return bad(format!("{name} is {ms}; it must be 1 to {MAX_TIMEOUT_MS}"));
            }
        }
        if !(MIN_SHARD_LEASE_TTL_MS..=MAX_TIMEOUT_MS).contains(&self.shard_lease_ttl_ms) {
            return bad(format!(
                "shard_lease_ttl_ms is {}; it must be {MIN_SHARD_LEASE_TTL_MS} to {MAX_TIMEOUT_MS}",
                self.shard_lease_ttl_ms
            ));
        }
        if self.event_broadcast_capacity == 0 {
            return bad("event_broadcast_capacity must be at least 1".into());
        }
        for (name, n) in [
            ("writer_queue_capacity", self.writer_queue_capacity),
            ("max_batch_ops", self.max_batch_ops),
        ] {
            if !(1..=MAX_WRITER_QUEUE).contains(&n) {
                return bad(format!("{name} is {n}; it must be 1 to {MAX_WRITER_QUEUE}"));
            }
        }
        if let Some(kernel) = &self.kernel
            && (kernel.is_empty()
                || kernel.len() > MAX_NAME_BYTES
                || kernel.chars().any(char::is_control))
        {
            return bad(format!(
                "kernel must be 1 to {MAX_NAME_BYTES} bytes without control characters"
            ));
        }
        let name = &self.application_name;
        if name.len() > MAX_NAME_BYTES || !name.chars().all(|c| c.is_ascii_graphic()) {
            return bad(format!(
                "application_name must be at most {MAX_NAME_BYTES} printable ASCII characters without spaces"
            ));
        }
        Ok(())
    }
}

impl PostgresConfig {
    /// Where this store is, for logs: `postgres://user@host:port/database` and the
    /// schema, never the password.
    pub fn target(&self) -> String {
        let Ok(c) = self.url.parse::<tokio_postgres::Config>() else {
            return "postgres://(a URL that does not parse)".into();
        };
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let mut shown = format!(
            "postgres://{}@{host}:{port}/{}",
            c.get_user().unwrap_or(""),
            c.get_dbname().unwrap_or("")
        );
        if let Some(schema) = &self.schema {
            shown.push_str(&format!(" (schema {schema})"));
        }
        shown
    }
}

impl PostgresConfig {
    /// Drops the configured schema and everything in it (scratch schemas of benchmarks
    /// and tests). Refuses when no schema is configured: it never drops `public`.
    pub async fn drop_schema(&self) -> StoreResult<()> {
        self.check()?;
        let Some(schema) = &self.schema else {
            return Err(StoreError::Unavailable(
                "no schema is configured, so there is none to drop".into(),
            ));
        };
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot connect: {}", errors::describe(&e)))
            })?;
        let task = tokio::spawn(connection);
        let dropped = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot drop schema {schema}: {}",
                    errors::describe(&e)
                ))
            });
        drop(client);
        let _ = task.await;
        dropped
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &"(hidden: it may hold a password)")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("event_broadcast_capacity", &self.event_broadcast_capacity)
            .field("application_name", &self.application_name)
            .field("writer_queue_capacity", &self.writer_queue_capacity)
            .field("max_batch_ops", &self.max_batch_ops)
            .field("kernel", &self.kernel)
            .field("shard_lease_ttl_ms", &self.shard_lease_ttl_ms)
            .field("meter_bucket_us", &self.meter_bucket_us)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_url_is_never_shown() {
        let ok = PostgresConfig::new("postgres://minoots:secret@db.internal:5432/minoots");
        ok.check().unwrap();
        assert!(!format!("{ok:?}").contains("secret"));
        assert_eq!(ok.target(), "postgres://minoots@db.internal:5432/minoots");
        let with = |f: fn(&mut PostgresConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.check().unwrap_err().to_string()
        };
        assert!(with(|c| c.url = "mysql://x".into()).contains("postgres://"));
        assert!(with(|c| c.url = "postgres://h:notaport/db".into()).contains("parse"));
        assert!(with(|c| c.schema = Some("Bad-Name".into())).contains("schema"));
        assert!(with(|c| c.schema = Some("9lives".into())).contains("schema"));
        assert!(with(|c| c.max_connections = 0).contains("max_connections"));
        assert!(with(|c| c.kernel = Some(String::new())).contains("kernel"));
        assert!(with(|c| c.kernel = Some("a\nb".into())).contains("kernel"));
        assert!(with(|c| c.max_connections = MAX_POOL_CONNECTIONS + 1).contains("max_connections"));
        assert!(with(|c| c.statement_timeout_ms = 0).contains("statement_timeout_ms"));
        assert!(with(|c| c.event_broadcast_capacity = 0).contains("event_broadcast_capacity"));
        assert!(with(|c| c.application_name = "has space".into()).contains("application_name"));
        assert!(with(|c| c.max_batch_ops = 0).contains("max_batch_ops"));
        assert!(with(|c| c.writer_queue_capacity = usize::MAX).contains("writer_queue_capacity"));
        let mut schema = ok.clone();
        schema.schema = Some("minoots_test_0a1b".into());
        schema.check().unwrap();
    }
}
