//! The context of one write of the SQLite backend: the writer's open transaction, the
//! batch's time and the events the write appends.

use minoots_core::{DeliveryId, Event, EventType, TimerId};
use rusqlite::{Connection, params};

use crate::types::StoreResult;

/// The open transaction of one write, the batch's time, and the events it appends.
pub struct WriteCtx<'a> {
    pub conn: &'a Connection,
    /// The time of this batch, read once from the store's clock.
    pub now_us: i64,
    events: &'a mut Vec<Event>,
}

impl<'a> WriteCtx<'a> {
    pub fn new(conn: &'a Connection, now_us: i64, events: &'a mut Vec<Event>) -> Self {
        Self {
            conn,
            now_us,
            events,
        }
    }

    /// Appends an event to the log in this transaction.
    pub(super) fn append_event(
        &mut self,
        event_type: EventType,
        tenant_id: &str,
        timer_id: TimerId,
        delivery_id: Option<DeliveryId>,
        data: serde_json::Value,
    ) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO events (type, tenant_id, timer_id, delivery_id, occurred_at, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        stmt.execute(params![
            event_type.as_str(),
            tenant_id,
            timer_id.as_bytes(),
            delivery_id.as_ref().map(|d| d.as_bytes().to_vec()),
            self.now_us,
            data.to_string(),
        ])?;
        self.events.push(Event {
            seq: self.conn.last_insert_rowid(),
            event_type,
            tenant_id: tenant_id.to_string(),
            timer_id,
            delivery_id,
            occurred_at_us: self.now_us,
            data,
        });
        Ok(())
    }
}
