//! How a PostgreSQL error becomes a [`StoreError`]: by its SQLSTATE code, never by the
//! text of its message. A write runs as attempts (see `tx.rs`); this module says which
//! failures end the write with an answer, which run it again (a conflict with a
//! concurrent transaction, a connection lost before COMMIT was sent), and what the caller
//! is told. It never decides anything about the operation itself: a unique violation that
//! an operation expects (two creates racing for one idempotency key) is recognised at
//! that operation by its constraint name, with [`unique_violation`].

use tokio_postgres::error::SqlState;

use crate::types::{StoreError, WriteTrouble};

/// How one attempt of an operation ended, when it did not succeed.
#[derive(Debug)]
pub(super) enum TxError {
    /// A refusal or a fault the caller is told as it is (not found, conflict, quota, …).
    Store(StoreError),
    /// A conflict with a concurrent transaction that the operation detected itself (say,
    /// a unique violation on an idempotency key): the whole operation runs again.
    Retry(&'static str),
    /// An error of the database or the connection, judged by [`classify`].
    Pg(tokio_postgres::Error),
}

pub(super) type TxResult<T> = Result<T, TxError>;

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxError::Store(e) => e.fmt(f),
            TxError::Retry(why) => f.write_str(why),
            TxError::Pg(e) => f.write_str(&describe(e)),
        }
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

/// What to do about a failed attempt.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Run the operation again in a new transaction: serialization failure, deadlock, or
    /// a conflict the operation detected.
    Retry(String),
    /// The connection cannot be used any more: it is gone, or its prepared statements
    /// went stale under a schema change. Nothing was committed if COMMIT had not been
    /// sent (the server rolls back a transaction whose connection dies, and a failed
    /// statement aborts its transaction), so the operation may run again on another
    /// connection.
    Reconnect(String),
    /// The answer for the caller.
    Answer(StoreError),
}

impl TxError {
    pub(super) fn verdict(self) -> Verdict {
        match self {
            TxError::Store(e) => Verdict::Answer(e),
            TxError::Retry(why) => Verdict::Retry(why.to_string()),
            TxError::Pg(e) => classify(&e),
        }
    }
}

/// Judges a database or connection error by its SQLSTATE code.
pub(super) fn classify(e: &tokio_postgres::Error) -> Verdict {
    if is_connection_lost(e) {
        return Verdict::Reconnect(describe(e));
    }
    let Some(code) = e.code() else {
        return Verdict::Answer(StoreError::Unavailable(describe(e)));
    };
    let trouble = |t| Verdict::Answer(StoreError::CannotWrite(t));
    match code {
        c if *c == SqlState::DISK_FULL => trouble(WriteTrouble::DiskFull),
        // A hot standby, or `default_transaction_read_only` on the server.
        c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => trouble(WriteTrouble::ReadOnly),
        c if *c == SqlState::IO_ERROR => trouble(WriteTrouble::Io(describe(e))),
        c if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
            Verdict::Retry(describe(e))
        }
        // "cached plan must not change result type": another process migrated the schema
        // under this connection's prepared statements. A fresh connection prepares anew.
        c if *c == SqlState::FEATURE_NOT_SUPPORTED => Verdict::Reconnect(describe(e)),
        // Everything else (too many connections, statement timeout, out of memory, an
        // unexpected constraint violation) is "try later", with the server's words.
        _ => Verdict::Answer(StoreError::Unavailable(describe(e))),
    }
}

/// The connection is unusable: closed, broken mid-message, or the server ended the
/// session (shutdown, crash recovery, `pg_terminate_backend`).
pub(super) fn is_connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            // Class 08: connection exception.
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        // No database error: an I/O error of the socket is one; a conversion error is not.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// When `e` is a unique violation, the name of the violated constraint or index.
pub(super) fn unique_violation(e: &TxError) -> Option<&str> {
    match e {
        TxError::Pg(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            e.as_db_error().and_then(|d| d.constraint())
        }
        _ => None,
    }
}

/// The server's message and code, or the client's own description.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ),
        None => format!("PostgreSQL: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_answers_pass_through_and_detected_conflicts_retry() {
        use crate::types::Missing;
        assert!(matches!(
            TxError::Store(StoreError::NotFound(Missing::Tenant("t".into()))).verdict(),
            Verdict::Answer(StoreError::NotFound(Missing::Tenant(ref t))) if t == "t"
        ));
        assert!(matches!(
            TxError::Retry("key taken").verdict(),
            Verdict::Retry(why) if why == "key taken"
        ));
        assert_eq!(
            unique_violation(&TxError::Store(StoreError::NotFound(Missing::Tenant(
                "t".into()
            )))),
            None
        );
    }
}
