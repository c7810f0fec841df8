//! The target of a migration: a PostgreSQL database (or schema) already migrated to
//! MINOOTS' schema, written in one transaction on a connection of the migration's own.
//!
//! The transaction first locks every table it fills in EXCLUSIVE mode (reads go on,
//! writes of any other session wait; `lock_timeout` turns a wait behind a busy
//! session into a clear error), then checks, under that lock, that no kernel is alive on
//! the database, that its columns are those of the map, and that it holds no data. Only
//! then does it insert the batches as they arrive, set the event log's head, count
//! every table again and compare with the source, and commit. Any failure before the
//! commit rolls everything back: the target is left as empty as it was found. It never
//! writes outside that one transaction (the schema's migrations are the store's own,
//! applied before it), and never takes a shard or registers as a kernel.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{Client, GenericClient, NoTls};

use super::MigrateError;
use super::source::SourceCounts;
use super::tables::{Batch, POSTGRES_ONLY, TABLES};
use crate::postgres::PostgresConfig;

/// How long the migration waits for a table lock held by another session before it
/// gives up (something is using the target).
const LOCK_TIMEOUT_MS: u64 = 10_000;

/// The database's clock in µs, as the shard leases measure it.
const DB_NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// The server's message and SQLSTATE, or the client's own description (as the store
/// words them).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ),
        None => format!("PostgreSQL: {e}"),
    }
}

/// A connection to the target, set up as the store's own are (search path, statement
/// timeout, durable commits).
pub(crate) struct Target {
    client: Client,
    /// Where the target is, for messages (never the password).
    pub(crate) description: String,
}

impl Target {
    pub(crate) async fn connect(config: &PostgresConfig) -> Result<Self, MigrateError> {
        let description = config.target();
        let failed = |what: &str, e: tokio_postgres::Error| MigrateError::Target {
            target: description.clone(),
            detail: format!("{what}: {}", describe(&e)),
        };
        let mut pg: tokio_postgres::Config =
            config.url.parse().map_err(|e| MigrateError::Target {
                target: description.clone(),
                detail: format!("invalid database URL: {e}"),
            })?;
        pg.application_name(&config.application_name)
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms));
        let (client, connection) = pg
            .connect(NoTls)
            .await
            .map_err(|e| failed("cannot connect", e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "migrate: the target connection ended");
            }
        });
        let mut setup = format!(
            "SET statement_timeout = {}; SET synchronous_commit = on;",
            config.statement_timeout_ms
        );
        if let Some(schema) = &config.schema {
            setup.push_str(&format!(" SET search_path TO \"{schema}\";"));
        }
        client
            .batch_execute(&setup)
            .await
            .map_err(|e| failed("cannot set up the connection", e))?;
        Ok(Self {
            client,
            description,
        })
    }

    /// Refuses a target that holds MINOOTS data, before its schema is migrated (a
    /// target of an older schema that holds data is refused as it is, not upgraded).
    pub(crate) async fn refuse_if_not_empty(&self) -> Result<(), MigrateError> {
        refuse_data(&self.client, &self.description).await
    }

    /// Copies the batches arriving on `batches` in one transaction, checks them against
    /// the source's counts, and commits. Returns the rows inserted per table.
    pub(crate) async fn copy(
        &mut self,
        source: &SourceCounts,
        mut batches: mpsc::Receiver<Result<Batch, MigrateError>>,
    ) -> Result<Vec<u64>, MigrateError> {
        let description = self.description.clone();
        let failed = |what: &'static str| {
            let target = description.clone();
            move |e: tokio_postgres::Error| MigrateError::Target {
                target: target.clone(),
                detail: format!("{what}: {}", describe(&e)),
            }
        };
        let tx = self
            .client
            .transaction()
            .await
            .map_err(failed("cannot begin"))?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
            .await
            .map_err(failed("cannot set the lock timeout"))?;
        let locked = TABLES
            .iter()
            .map(|t| format!("\"{}\"", t.name))
            .chain(["event_log_head".to_string(), "kernels".to_string()])
            .collect::<Vec<_>>()
            .join(", ");
        tx.batch_execute(&format!("LOCK TABLE {locked} IN EXCLUSIVE MODE"))
            .await
            .map_err(failed(
                "cannot lock the tables (is a MINOOTS process using the target?)",
            ))?;
        let alive = tx
            .query_opt(
                &format!("SELECT name FROM kernels WHERE alive_until > {DB_NOW_US} LIMIT 1"),
                &[],
            )
            .await
            .map_err(failed("cannot read the kernels"))?;
        if let Some(row) = alive {
            return Err(MigrateError::TargetInUse {
                target: description.clone(),
                kernel: row.get(0),
            });
        }
        check_columns(&tx).await?;
        refuse_data(&tx, &description).await?;

        let mut statements = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            statements.push(
                tx.prepare(&table.insert_sql())
                    .await
                    .map_err(failed("cannot prepare an insert"))?,
            );
        }
        let mut inserted = vec![0u64; TABLES.len()];
        while let Some(batch) = batches.recv().await {
            let batch = batch?;
            let n = tx
                .execute(&statements[batch.table], &batch.params())
                .await
                .map_err(|e| MigrateError::Target {
                    target: description.clone(),
                    detail: format!(
                        "cannot insert into {}: {}",
                        TABLES[batch.table].name,
                        describe(&e)
                    ),
                })?;
            if n != batch.rows as u64 {
                return Err(MigrateError::Verification(format!(
                    "{} rows of {} were sent, {n} inserted",
                    batch.rows, TABLES[batch.table].name
                )));
            }
            inserted[batch.table] += n;
        }
        tx.execute(
            "UPDATE event_log_head SET last_seq = $1",
            &[&source.event_head],
        )
        .await
        .map_err(failed("cannot set the event log's head"))?;
        verify(&tx, source, &inserted).await?;
        tx.commit().await.map_err(failed("cannot commit"))?;
        Ok(inserted)
    }
}

/// The first MINOOTS table of the target that holds rows, or an event head above 0.
/// Tables not created yet count as empty.
async fn refuse_data(db: &impl GenericClient, description: &str) -> Result<(), MigrateError> {
    let failed = |e: tokio_postgres::Error| MigrateError::Target {
        target: description.to_string(),
        detail: format!("cannot check that the target is empty: {}", describe(&e)),
    };
    let refused = |what: String| MigrateError::TargetNotEmpty {
        target: description.to_string(),
        what,
    };
    for table in TABLES.iter().map(|t| t.name).chain(["event_log_head"]) {
        let exists: bool = db
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
            .await
            .map_err(failed)?
            .get(0);
        if !exists {
            continue;
        }
        if table == "event_log_head" {
            let head: Option<i64> = db
                .query_one("SELECT max(last_seq) FROM event_log_head", &[])
                .await
                .map_err(failed)?
                .get(0);
            if let Some(head) = head.filter(|h| *h != 0) {
                return Err(refused(format!("its event log is at seq {head}")));
            }
            continue;
        }
        let any: bool = db
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM \"{table}\")"), &[])
            .await
            .map_err(failed)?
            .get(0);
        if any {
            return Err(refused(format!("table {table} has rows")));
        }
    }
    Ok(())
}

/// The target's columns of every mapped table, by name and type, in the schema the
/// connection's search path resolves to.
async fn check_columns(db: &impl GenericClient) -> Result<(), MigrateError> {
    let mismatch = |detail: String| MigrateError::SchemaMismatch {
        side: "PostgreSQL",
        detail,
    };
    for table in TABLES {
        let rows = db
            .query(
                "SELECT column_name::text, udt_name::text FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = $1::text",
                &[&table.name],
            )
            .await
            .map_err(|e| mismatch(format!("cannot read the columns of {}: {e}", table.name)))?;
        let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (name, udt) in &columns {
            match table.columns.iter().find(|c| c.name == name) {
                None => {
                    return Err(mismatch(format!(
                        "column {}.{name} has no SQLite counterpart in the migration's map",
                        table.name
                    )));
                }
                Some(c) if udt != c.kind.postgres_type() => {
                    return Err(mismatch(format!(
                        "column {}.{name} is {udt}, the map expects {}",
                        table.name,
                        c.kind.postgres_type()
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(c) = table
            .columns
            .iter()
            .find(|c| !columns.iter().any(|(name, _)| name == c.name))
        {
            return Err(mismatch(format!(
                "column {}.{} is missing",
                table.name, c.name
            )));
        }
    }
    Ok(())
}

/// Inside the copy's transaction: every table holds as many rows as the source's (and
/// as were inserted), the same counts per status, and the event log's head and highest
/// seq are the source's.
async fn verify(
    db: &impl GenericClient,
    source: &SourceCounts,
    inserted: &[u64],
) -> Result<(), MigrateError> {
    let failed = |e: tokio_postgres::Error| {
        MigrateError::Verification(format!("cannot count: {}", describe(&e)))
    };
    for (i, table) in TABLES.iter().enumerate() {
        let n: i64 = db
            .query_one(&format!("SELECT count(*) FROM \"{}\"", table.name), &[])
            .await
            .map_err(failed)?
            .get(0);
        if n as u64 != source.rows[i] || inserted[i] != source.rows[i] {
            return Err(MigrateError::Verification(format!(
                "{}: {} rows in the source, {} inserted, {n} in the target",
                table.name, source.rows[i], inserted[i]
            )));
        }
        if table.has_status {
            let rows = db
                .query(
                    &format!(
                        "SELECT status, count(*) FROM \"{}\" GROUP BY status ORDER BY status COLLATE \"C\"",
                        table.name
                    ),
                    &[],
                )
                .await
                .map_err(failed)?;
            let by_status: Vec<(String, u64)> = rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect();
            if by_status != source.by_status[i] {
                return Err(MigrateError::Verification(format!(
                    "{} per status: {:?} in the source, {by_status:?} in the target",
                    table.name, source.by_status[i]
                )));
            }
        }
    }
    let row = db
        .query_one(
            "SELECT (SELECT last_seq FROM event_log_head), (SELECT COALESCE(max(seq), 0) FROM events)",
            &[],
        )
        .await
        .map_err(failed)?;
    let (head, max_seq): (i64, i64) = (row.get(0), row.get(1));
    if head != source.event_head || max_seq > head {
        return Err(MigrateError::Verification(format!(
            "the event log's head is {head} (highest seq {max_seq}), the source's {}",
            source.event_head
        )));
    }
    Ok(())
}

/// The tables of the target's schema that neither the map nor PostgreSQL's own
/// bookkeeping names (a migration added one the copy would leave empty). For tests.
#[doc(hidden)]
pub async fn unmapped_tables(db: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT table_name::text FROM information_schema.tables
              WHERE table_schema = current_schema() ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|t| !TABLES.iter().any(|m| m.name == t) && !POSTGRES_ONLY.contains(&t.as_str()))
        .collect())
}
