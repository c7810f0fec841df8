//! The context of one write of the SQLite backend: the writer's open transaction, the
//! batch's time and the events the write appends. Events are appended only as the
//! [`NewEvent`]s of `minoots_core::event`, so their payloads are written in one place.

use minoots_core::{Event, NewEvent};
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

    /// Appends an event to the log in this transaction, at the batch's time.
    pub fn append_event(&mut self, event: NewEvent) -> StoreResult<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO events (type, tenant_id, timer_id, delivery_id, occurred_at, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        stmt.execute(params![
            event.event_type.as_str(),
            event.tenant_id,
            event.timer_id.as_bytes(),
            event.delivery_id.as_ref().map(|d| d.as_bytes().to_vec()),
            self.now_us,
            event.data.to_string(),
        ])?;
        self.events
            .push(event.into_event(self.conn.last_insert_rowid(), self.now_us));
        Ok(())
    }
}
