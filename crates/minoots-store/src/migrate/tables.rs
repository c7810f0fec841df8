//! The map from the SQLite schema to the PostgreSQL one: every table the embedded store
//! holds, every column, and how each value crosses (what SQLite declares, what
//! PostgreSQL declares, and the conversion between them). Both sides are checked against
//! this map before anything is copied, so a migration added to either schema without an
//! entry here stops the copy with the table and column named instead of losing them.
//!
//! Besides these tables, SQLite's `sqlite_sequence` holds the event log's head (the
//! highest `seq` ever handed out, which pruning never lowers); it becomes
//! `event_log_head.last_seq`. PostgreSQL's own bookkeeping (`minoots_schema_version`,
//! `shards`, `kernels`) has no SQLite counterpart and is left as its migrations made it:
//! shards are computed from timer ids, never stored with a timer. SQLite's counts of
//! timers by status ([`SQLITE_ONLY`]) are derived from the timers and not copied.
//!
//! This module only describes and converts; it never opens a connection.

use rusqlite::Row;
use tokio_postgres::types::ToSql;

/// How one column's values cross from SQLite to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A 16-byte BLOB becomes `uuid`.
    Uuid,
    /// TEXT stays `text`, byte for byte (JSON held as text included: PostgreSQL's
    /// schema keeps it as text precisely so that it comes back as stored).
    Text,
    /// INTEGER becomes `bigint`.
    Int8,
    /// INTEGER becomes `integer` (a value beyond 32 bits stops the copy).
    Int4,
    /// A BLOB stays `bytea`.
    Bytea,
    /// TEXT holding a JSON object becomes `jsonb` (timer labels).
    JsonbText,
    /// TEXT holding comma-separated names becomes `text[]` (API key roles); empty names
    /// are dropped, as the SQLite backend drops them when it reads the column.
    CommaList,
}

impl Kind {
    /// The type SQLite's schema declares for such a column.
    pub(crate) fn sqlite_type(self) -> &'static str {
        match self {
            Kind::Uuid | Kind::Bytea => "BLOB",
            Kind::Text | Kind::JsonbText | Kind::CommaList => "TEXT",
            Kind::Int8 | Kind::Int4 => "INTEGER",
        }
    }

    /// The type PostgreSQL's schema declares (`udt_name` in `information_schema`).
    pub(crate) fn postgres_type(self) -> &'static str {
        match self {
            Kind::Uuid => "uuid",
            Kind::Text => "text",
            Kind::Int8 => "int8",
            Kind::Int4 => "int4",
            Kind::Bytea => "bytea",
            Kind::JsonbText => "jsonb",
            Kind::CommaList => "_text",
        }
    }

    /// The array type a batch of this column is sent as.
    fn param_array(self) -> &'static str {
        match self {
            Kind::Uuid => "uuid[]",
            Kind::Text | Kind::JsonbText | Kind::CommaList => "text[]",
            Kind::Int8 => "bigint[]",
            Kind::Int4 => "integer[]",
            Kind::Bytea => "bytea[]",
        }
    }

    /// The expression turning the unnested value `v` into the column's value.
    fn converted(self, v: &str) -> String {
        match self {
            Kind::JsonbText => format!("{v}::jsonb"),
            Kind::CommaList => format!("array_remove(string_to_array({v}, ','), '')"),
            _ => v.to_string(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
}

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    /// The primary key: rows are read (and so inserted) in this order.
    pub(crate) order_by: &'static str,
    pub(crate) columns: &'static [Column],
    /// Whether the table has a `status` column whose counts per value are verified too.
    pub(crate) has_status: bool,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

use Kind::*;

/// Every table of the SQLite schema, in copy order (no foreign keys bind the order; the
/// tenants and keys first, then timers and what hangs off them, the event log last).
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "tenants",
        order_by: "id",
        columns: &[
            col("id", Text),
            col("name", Text),
            col("tier", Text),
            col("created_at", Int8),
            col("updated_at", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "api_keys",
        order_by: "id",
        columns: &[
            col("id", Text),
            col("tenant_id", Text),
            col("name", Text),
            col("key_hash", Bytea),
            col("prefix", Text),
            col("roles", CommaList),
            col("created_at", Int8),
            col("expires_at", Int8),
            col("revoked_at", Int8),
            col("last_used_at", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "signing_secrets",
        order_by: "tenant_id, created_at, secret",
        columns: &[
            col("tenant_id", Text),
            col("secret", Text),
            col("created_at", Int8),
            col("retired_at", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "ui_sessions",
        order_by: "token_hash",
        columns: &[
            col("token_hash", Bytea),
            col("key_id", Text),
            col("tenant_id", Text),
            col("created_at", Int8),
            col("expires_at", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "billing_accounts",
        order_by: "tenant_id",
        columns: &[
            col("tenant_id", Text),
            col("customer_id", Text),
            col("subscription_id", Text),
            col("paid_tier", Text),
            col("subscription_status", Text),
            col("current_period_start", Int8),
            col("current_period_end", Int8),
            col("grace_until", Int8),
            col("state_at", Int8),
            col("updated_at", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "billing_events",
        order_by: "event_id",
        columns: &[
            col("event_id", Text),
            col("type", Text),
            col("effect", Text),
            col("received_at", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "meter_usage",
        order_by: "tenant_id, meter, bucket_start",
        columns: &[
            col("tenant_id", Text),
            col("meter", Text),
            col("bucket_start", Int8),
            col("bucket_end", Int8),
            col("value", Int8),
            col("sent_at", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "tenant_daily",
        order_by: "tenant_id, day",
        columns: &[
            col("tenant_id", Text),
            col("day", Int8),
            col("created", Int8),
        ],
        has_status: false,
    },
    Table {
        name: "tenant_pending",
        order_by: "tenant_id",
        columns: &[col("tenant_id", Text), col("pending", Int8)],
        has_status: false,
    },
    Table {
        name: "timers",
        order_by: "id",
        columns: &[
            col("id", Uuid),
            col("tenant_id", Text),
            col("name", Text),
            col("requested_by", Text),
            col("status", Text),
            col("created_at", Int8),
            col("fire_at", Int8),
            col("duration_ms", Int8),
            col("fired_at", Int8),
            col("settled_at", Int8),
            col("cancelled_at", Int8),
            col("cancel_reason", Text),
            col("metadata", Text),
            col("labels", JsonbText),
            col("action_bundle", Text),
            col("idempotency_key", Text),
            col("idempotency_fingerprint", Bytea),
            col("version", Int8),
            col("schedule_id", Uuid),
            col("scheduled_at", Int8),
            col("traceparent", Text),
        ],
        has_status: true,
    },
    Table {
        name: "deliveries",
        order_by: "id",
        columns: &[
            col("id", Uuid),
            col("timer_id", Uuid),
            col("tenant_id", Text),
            col("occurrence", Int8),
            col("action_index", Int4),
            col("status", Text),
            col("attempt", Int4),
            col("max_attempts", Int4),
            col("next_attempt_at", Int8),
            col("lease_owner", Text),
            col("lease_expires_at", Int8),
            col("created_at", Int8),
            col("updated_at", Int8),
            col("last_error", Text),
        ],
        has_status: true,
    },
    Table {
        name: "attempts",
        order_by: "delivery_id, attempt",
        columns: &[
            col("delivery_id", Uuid),
            col("attempt", Int4),
            col("lease_owner", Text),
            col("started_at", Int8),
            col("duration_us", Int8),
            col("outcome", Text),
            col("http_status", Int4),
            col("exit_code", Int4),
            col("error", Text),
            col("response_excerpt", Text),
        ],
        has_status: false,
    },
    Table {
        name: "schedules",
        order_by: "id",
        columns: &[
            col("id", Uuid),
            col("tenant_id", Text),
            col("request", Text),
            col("status", Text),
            col("created_at", Int8),
            col("updated_at", Int8),
            col("version", Int8),
            col("cursor", Int8),
            col("runs_fired", Int8),
            col("active_timer", Uuid),
            col("buffered", Text),
            col("wake_at", Int8),
        ],
        has_status: true,
    },
    Table {
        name: "schedule_runs",
        order_by: "schedule_id, scheduled_at",
        columns: &[
            col("schedule_id", Uuid),
            col("scheduled_at", Int8),
            col("status", Text),
            col("reason", Text),
            col("timer_id", Uuid),
            col("fire_at", Int8),
            col("recorded_at", Int8),
        ],
        has_status: true,
    },
    Table {
        name: "events",
        order_by: "seq",
        columns: &[
            col("seq", Int8),
            col("type", Text),
            col("tenant_id", Text),
            col("timer_id", Uuid),
            col("delivery_id", Uuid),
            col("occurred_at", Int8),
            col("data", Text),
        ],
        has_status: false,
    },
];

/// PostgreSQL tables with no SQLite counterpart: the migrations' own bookkeeping and the
/// cluster's (`event_log_head` is filled from `sqlite_sequence`).
pub(crate) const POSTGRES_ONLY: &[&str] = &[
    "minoots_schema_version",
    "event_log_head",
    "shards",
    "kernels",
];

/// SQLite tables with no PostgreSQL counterpart, derived from the timers and not copied:
/// `tenant_status_counts` (each tenant's timers by status), which PostgreSQL reads from
/// its `timers_tenant_status` index instead.
pub(crate) const SQLITE_ONLY: &[&str] = &["tenant_status_counts"];

impl Table {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The SQLite query reading every row in key order.
    pub(crate) fn select_sql(&self) -> String {
        format!(
            "SELECT {} FROM \"{}\" ORDER BY {}",
            self.column_list(),
            self.name,
            self.order_by
        )
    }

    /// The PostgreSQL statement inserting one batch: one array parameter per column,
    /// unnested into rows, so one statement serves every batch size.
    pub(crate) fn insert_sql(&self) -> String {
        let arrays = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, c.kind.param_array()))
            .collect::<Vec<_>>()
            .join(", ");
        let values = self
            .columns
            .iter()
            .map(|c| c.kind.converted(&format!("s.\"{}\"", c.name)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO \"{name}\" ({cols}) SELECT {values} FROM unnest({arrays}) AS s({cols})",
            name = self.name,
            cols = self.column_list(),
        )
    }
}

/// One column of a batch, as PostgreSQL receives it. Every column is nullable here; the
/// target's NOT NULL constraints are the same as the source's.
pub(crate) enum Values {
    Uuid(Vec<Option<uuid::Uuid>>),
    Text(Vec<Option<String>>),
    Int8(Vec<Option<i64>>),
    Int4(Vec<Option<i32>>),
    Bytea(Vec<Option<Vec<u8>>>),
}

impl Values {
    fn new(kind: Kind, capacity: usize) -> Self {
        match kind {
            Kind::Uuid => Values::Uuid(Vec::with_capacity(capacity)),
            Kind::Text | Kind::JsonbText | Kind::CommaList => {
                Values::Text(Vec::with_capacity(capacity))
            }
            Kind::Int8 => Values::Int8(Vec::with_capacity(capacity)),
            Kind::Int4 => Values::Int4(Vec::with_capacity(capacity)),
            Kind::Bytea => Values::Bytea(Vec::with_capacity(capacity)),
        }
    }

    pub(crate) fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Values::Uuid(v) => v,
            Values::Text(v) => v,
            Values::Int8(v) => v,
            Values::Int4(v) => v,
            Values::Bytea(v) => v,
        }
    }
}

/// Rows of one table on their way from SQLite to PostgreSQL, column by column.
pub(crate) struct Batch {
    /// Index into [`TABLES`].
    pub(crate) table: usize,
    pub(crate) columns: Vec<Values>,
    pub(crate) rows: usize,
    /// Bytes of text and blobs held, plus 8 per other value: what bounds a batch besides
    /// its rows.
    pub(crate) bytes: usize,
}

impl Batch {
    pub(crate) fn new(table: usize, capacity: usize) -> Self {
        Self {
            table,
            columns: TABLES[table]
                .columns
                .iter()
                .map(|c| Values::new(c.kind, capacity))
                .collect(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Appends one SQLite row (its columns in the table's order). A value SQLite holds
    /// in another type than declared, a UUID that is not 16 bytes, or an integer beyond
    /// its column's range is refused with the column named.
    pub(crate) fn push(&mut self, row: &Row<'_>) -> Result<(), String> {
        let table = &TABLES[self.table];
        for (i, (values, column)) in self.columns.iter_mut().zip(table.columns).enumerate() {
            let bad = |e: &dyn std::fmt::Display| format!("{}.{}: {e}", table.name, column.name);
            match values {
                Values::Uuid(v) => {
                    let blob: Option<Vec<u8>> = row.get(i).map_err(|e| bad(&e))?;
                    let id = blob
                        .map(|b| {
                            uuid::Uuid::from_slice(&b)
                                .map_err(|_| bad(&format!("a UUID of {} bytes", b.len())))
                        })
                        .transpose()?;
                    self.bytes += 16;
                    v.push(id);
                }
                Values::Text(v) => {
                    let text: Option<String> = row.get(i).map_err(|e| bad(&e))?;
                    self.bytes += text.as_ref().map_or(8, String::len);
                    v.push(text);
                }
                Values::Int8(v) => {
                    let n: Option<i64> = row.get(i).map_err(|e| bad(&e))?;
                    self.bytes += 8;
                    v.push(n);
                }
                Values::Int4(v) => {
                    let n: Option<i64> = row.get(i).map_err(|e| bad(&e))?;
                    let n = n
                        .map(|n| i32::try_from(n).map_err(|_| bad(&format!("{n} exceeds 32 bits"))))
                        .transpose()?;
                    self.bytes += 8;
                    v.push(n);
                }
                Values::Bytea(v) => {
                    let blob: Option<Vec<u8>> = row.get(i).map_err(|e| bad(&e))?;
                    self.bytes += blob.as_ref().map_or(8, Vec::len);
                    v.push(blob);
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.columns.iter().map(Values::as_param).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_named_once_and_orders_by_its_own_columns() {
        let mut names: Vec<_> = TABLES.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLES.len());
        for t in TABLES {
            for key in t.order_by.split(',').map(str::trim) {
                assert!(
                    t.columns.iter().any(|c| c.name == key),
                    "{}: orders by {key}, which is not one of its columns",
                    t.name
                );
            }
            assert_eq!(
                t.has_status,
                t.columns.iter().any(|c| c.name == "status"),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn an_insert_unnests_one_typed_array_per_column_and_converts_labels_and_roles() {
        let keys = TABLES.iter().find(|t| t.name == "api_keys").unwrap();
        let sql = keys.insert_sql();
        assert!(
            sql.starts_with("INSERT INTO \"api_keys\" (\"id\", "),
            "{sql}"
        );
        assert!(sql.contains("$4::bytea[]"), "{sql}");
        assert!(
            sql.contains("array_remove(string_to_array(s.\"roles\", ','), '')"),
            "{sql}"
        );
        assert!(sql.contains("$10::bigint[]) AS s(\"id\", "), "{sql}");
        let timers = TABLES.iter().find(|t| t.name == "timers").unwrap();
        assert!(timers.insert_sql().contains("s.\"labels\"::jsonb"));
        assert!(timers.insert_sql().contains("$1::uuid[]"));
    }
}
