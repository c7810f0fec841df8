//! Turning PostgreSQL rows into the store's types. A value that cannot be decoded (an
//! unknown status, JSON that does not parse, a negative attempt count) is
//! [`StoreError::Corrupt`]: stored data the code does not understand, never user input.
//! The column lists live here as macros, so that every statement is a compile-time
//! constant (one prepared statement each, see `pool.rs`).

use minoots_core::{Delivery, DeliveryId, Event, ScheduleId, ScheduleLink, Timer, TimerId};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use super::errors::{TxError, TxResult};
use crate::types::{ApiKey, StoreError, Tenant};

/// The columns [`timer_from_row`] reads, in its order.
macro_rules! timer_cols {
    () => {
        "id, tenant_id, name, requested_by, status, created_at, fire_at, duration_ms, fired_at, \
         settled_at, cancelled_at, cancel_reason, metadata, labels::text, action_bundle, \
         idempotency_key, version, schedule_id, scheduled_at, traceparent"
    };
}
pub(super) use timer_cols;

/// The columns [`delivery_from_row`] reads, in its order.
macro_rules! delivery_cols {
    () => {
        "id, timer_id, tenant_id, occurrence, action_index, status, attempt, max_attempts, \
         next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at, last_error"
    };
}
pub(super) use delivery_cols;

/// The columns [`tenant_from_row`] reads, in its order.
macro_rules! tenant_cols {
    () => {
        "id, name, tier, created_at, updated_at"
    };
}
pub(super) use tenant_cols;

/// The columns [`key_from_row`] reads, in its order.
macro_rules! key_cols {
    () => {
        "id, tenant_id, name, key_hash, prefix, roles, created_at, expires_at, revoked_at, \
         last_used_at"
    };
}
pub(super) use key_cols;

/// How many columns `timer_cols!` names: the index of the first column after them.
pub(super) const TIMER_COLUMNS: usize = 20;

fn corrupt(idx: usize, what: impl std::fmt::Display) -> TxError {
    TxError::Store(StoreError::Corrupt(format!("column {idx}: {what}")))
}

/// Column `idx`, as a `T`; a type or NULL mismatch is corruption.
pub(super) fn col<'r, T: FromSql<'r>>(row: &'r Row, idx: usize) -> TxResult<T> {
    row.try_get(idx).map_err(|e| corrupt(idx, e))
}

fn parsed<T: std::str::FromStr<Err = String>>(row: &Row, idx: usize) -> TxResult<T> {
    col::<&str>(row, idx)?.parse().map_err(|e| corrupt(idx, e))
}

fn json<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> TxResult<T> {
    serde_json::from_str(col::<&str>(row, idx)?).map_err(|e| corrupt(idx, e))
}

fn unsigned(row: &Row, idx: usize) -> TxResult<u32> {
    let v: i32 = col(row, idx)?;
    u32::try_from(v).map_err(|_| corrupt(idx, format!("{v} is negative")))
}

pub(super) fn uuid_of(row: &Row, idx: usize) -> TxResult<Uuid> {
    col(row, idx)
}

pub(super) fn timer_from_row(row: &Row) -> TxResult<Timer> {
    Ok(Timer {
        id: TimerId(uuid_of(row, 0)?),
        tenant_id: col(row, 1)?,
        name: col(row, 2)?,
        requested_by: col(row, 3)?,
        status: parsed(row, 4)?,
        created_at_us: col(row, 5)?,
        fire_at_us: col(row, 6)?,
        duration_ms: col(row, 7)?,
        fired_at_us: col(row, 8)?,
        settled_at_us: col(row, 9)?,
        cancelled_at_us: col(row, 10)?,
        cancel_reason: col(row, 11)?,
        metadata: json(row, 12)?,
        labels: json(row, 13)?,
        action_bundle: json(row, 14)?,
        idempotency_key: col(row, 15)?,
        version: col(row, 16)?,
        schedule: match (col::<Option<Uuid>>(row, 17)?, col::<Option<i64>>(row, 18)?) {
            (Some(id), Some(scheduled_at_us)) => Some(ScheduleLink {
                id: ScheduleId(id),
                scheduled_at_us,
            }),
            _ => None,
        },
        traceparent: col(row, 19)?,
    })
}

pub(super) fn delivery_from_row(row: &Row) -> TxResult<Delivery> {
    Ok(Delivery {
        id: DeliveryId(uuid_of(row, 0)?),
        timer_id: TimerId(uuid_of(row, 1)?),
        tenant_id: col(row, 2)?,
        occurrence: col(row, 3)?,
        action_index: unsigned(row, 4)?,
        status: parsed(row, 5)?,
        attempt: unsigned(row, 6)?,
        max_attempts: unsigned(row, 7)?,
        next_attempt_at_us: col(row, 8)?,
        lease_owner: col(row, 9)?,
        lease_expires_at_us: col(row, 10)?,
        created_at_us: col(row, 11)?,
        updated_at_us: col(row, 12)?,
        last_error: col(row, 13)?,
    })
}

pub(super) fn event_from_row(row: &Row) -> TxResult<Event> {
    Ok(Event {
        seq: col(row, 0)?,
        event_type: parsed(row, 1)?,
        tenant_id: col(row, 2)?,
        timer_id: TimerId(uuid_of(row, 3)?),
        delivery_id: col::<Option<Uuid>>(row, 4)?.map(DeliveryId),
        occurred_at_us: col(row, 5)?,
        data: json(row, 6)?,
    })
}

pub(super) fn tenant_from_row(row: &Row) -> TxResult<Tenant> {
    Ok(Tenant {
        id: col(row, 0)?,
        name: col(row, 1)?,
        tier: col(row, 2)?,
        created_at_us: col(row, 3)?,
        updated_at_us: col(row, 4)?,
    })
}

pub(super) fn key_from_row(row: &Row) -> TxResult<ApiKey> {
    let hash: &[u8] = col(row, 3)?;
    Ok(ApiKey {
        id: col(row, 0)?,
        tenant_id: col(row, 1)?,
        name: col(row, 2)?,
        key_hash: hash
            .try_into()
            .map_err(|_| corrupt(3, "the key hash is not 32 bytes"))?,
        prefix: col(row, 4)?,
        roles: col(row, 5)?,
        created_at_us: col(row, 6)?,
        expires_at_us: col(row, 7)?,
        revoked_at_us: col(row, 8)?,
        last_used_at_us: col(row, 9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_counts_match_the_column_lists() {
        assert_eq!(timer_cols!().split(',').count(), TIMER_COLUMNS);
        assert_eq!(delivery_cols!().split(',').count(), 14);
        assert_eq!(tenant_cols!().split(',').count(), 5);
        assert_eq!(key_cols!().split(',').count(), 10);
    }
}
