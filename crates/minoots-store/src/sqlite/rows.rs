//! How the SQLite backend's rows become domain values: the column lists of timers and
//! deliveries, the decoders of their rows, and the mapping of SQLite's errors to
//! [`StoreError`]. A row that cannot be decoded is corrupt data, never a panic.

use minoots_core::{Delivery, DeliveryId, Event, ScheduleId, ScheduleLink, Timer, TimerId};
use rusqlite::Row;
use rusqlite::types::Type;

use crate::types::*;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
            // The disk refusing a write: callers get a clear reason and retry later.
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
                StoreError::CannotWrite(WriteTrouble::DiskFull)
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ReadOnly => {
                StoreError::CannotWrite(WriteTrouble::ReadOnly)
            }
            rusqlite::Error::SqliteFailure(f, ref m) if f.code == ErrorCode::SystemIoFailure => {
                StoreError::CannotWrite(WriteTrouble::Io(
                    m.clone()
                        .unwrap_or_else(|| format!("extended code {}", f.extended_code)),
                ))
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

pub(super) const TIMER_COLS: &str = "id, tenant_id, name, requested_by, status, created_at, fire_at, duration_ms, \
    fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels, action_bundle, idempotency_key, version, \
    schedule_id, scheduled_at, traceparent";
/// How many columns `TIMER_COLS` names: the index of the first column after them.
pub(super) const TIMER_COLUMNS: usize = 20;

pub(super) const DELIVERY_COLS: &str = "id, timer_id, tenant_id, occurrence, action_index, status, attempt, max_attempts, \
    next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at, last_error";
/// How many columns `DELIVERY_COLS` names: the index of the first column after them.
pub(super) const DELIVERY_COLUMNS: usize = 14;

pub(super) fn corrupt<E: std::error::Error + Send + Sync + 'static>(
    idx: usize,
    e: E,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

fn parse_col<T: std::str::FromStr<Err = String>>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    s.parse::<T>()
        .map_err(|e| corrupt(idx, std::io::Error::other(e)))
}

fn json_col<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    serde_json::from_str(&s).map_err(|e| corrupt(idx, e))
}

pub(super) fn id_col<T>(
    row: &Row<'_>,
    idx: usize,
    make: fn(&[u8]) -> Option<T>,
) -> rusqlite::Result<T> {
    let b: Vec<u8> = row.get(idx)?;
    make(&b).ok_or_else(|| corrupt(idx, std::io::Error::other("bad id length")))
}

pub(super) fn timer_from_row(row: &Row<'_>) -> rusqlite::Result<Timer> {
    Ok(Timer {
        id: id_col(row, 0, TimerId::from_slice)?,
        tenant_id: row.get(1)?,
        name: row.get(2)?,
        requested_by: row.get(3)?,
        status: parse_col(row, 4)?,
        created_at_us: row.get(5)?,
        fire_at_us: row.get(6)?,
        duration_ms: row.get(7)?,
        fired_at_us: row.get(8)?,
        settled_at_us: row.get(9)?,
        cancelled_at_us: row.get(10)?,
        cancel_reason: row.get(11)?,
        metadata: json_col(row, 12)?,
        labels: json_col(row, 13)?,
        action_bundle: json_col(row, 14)?,
        idempotency_key: row.get(15)?,
        version: row.get(16)?,
        schedule: match (
            row.get::<_, Option<Vec<u8>>>(17)?,
            row.get::<_, Option<i64>>(18)?,
        ) {
            (Some(id), Some(scheduled_at_us)) => Some(ScheduleLink {
                id: ScheduleId::from_slice(&id)
                    .ok_or_else(|| corrupt(17, std::io::Error::other("bad id length")))?,
                scheduled_at_us,
            }),
            _ => None,
        },
        traceparent: row.get(19)?,
    })
}

pub(super) fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: id_col(row, 0, DeliveryId::from_slice)?,
        timer_id: id_col(row, 1, TimerId::from_slice)?,
        tenant_id: row.get(2)?,
        occurrence: row.get(3)?,
        action_index: row.get(4)?,
        status: parse_col(row, 5)?,
        attempt: row.get(6)?,
        max_attempts: row.get(7)?,
        next_attempt_at_us: row.get(8)?,
        lease_owner: row.get(9)?,
        lease_expires_at_us: row.get(10)?,
        created_at_us: row.get(11)?,
        updated_at_us: row.get(12)?,
        last_error: row.get(13)?,
    })
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let delivery: Option<Vec<u8>> = row.get(4)?;
    Ok(Event {
        seq: row.get(0)?,
        event_type: parse_col(row, 1)?,
        tenant_id: row.get(2)?,
        timer_id: id_col(row, 3, TimerId::from_slice)?,
        delivery_id: delivery.and_then(|b| DeliveryId::from_slice(&b)),
        occurred_at_us: row.get(5)?,
        data: json_col(row, 6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_column_count_matches_the_column_list() {
        assert_eq!(DELIVERY_COLS.split(',').count(), DELIVERY_COLUMNS);
    }
}
