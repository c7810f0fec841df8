//! The event log in PostgreSQL: numbering events in commit order, reading them from any
//! sequence number, pruning the oldest, and the live feed of the events every handle of
//! the database commits.
//!
//! **The live feed is read from the log.** A tailer task per handle reads the events
//! after the last one it published and sends them to subscribers, in `seq` order, when
//! this handle committed events, when another handle announced some (`listen.rs`), and at
//! least every second. So a stream on one kernel sees the events of timers created
//! through another, gap-free, and a handle's own events take the same road. While nobody
//! subscribes it reads only the log's head, and it checks for subscribers *after* that
//! read: a subscriber that came before the check gets everything after the last event
//! published; one that came after it replays the log itself from a point after that head
//! (`minoots-kernel`'s event streams subscribe first, then replay), so no event falls
//! between the two.
//!
//! **Why `seq` must follow commit order.** A reader (an SSE or gRPC stream, another
//! kernel) remembers the last `seq` it saw and asks for what comes after. If a
//! transaction could take seq 10, another take 11 and commit first, a reader would see
//! 11, resume after 11, and never see 10 once it commits. So numbering and committing
//! happen under one lock: a write takes the row lock on `event_log_head` (by updating it)
//! as its very last statement before COMMIT, takes its numbers from it, inserts its
//! events and commits; the lock is released only after the commit is visible, so the
//! next write's numbers are higher *and* it commits later. A reader therefore never
//! misses a smaller `seq` committed after a larger one, across connections and
//! processes.
//!
//! **Why a counter row and not a SEQUENCE.** `nextval` is not transactional: a write that
//! takes numbers and then rolls back leaves a gap, and the sequence's `last_value` shows
//! numbers of transactions not yet committed. The counter row is rolled back with its
//! transaction, so the log stays gap-free (1, 2, 3, … as on SQLite, and as
//! ARCHITECTURE.md promises across kernels), and `last_seq` is exactly the highest
//! number committed, which pruning never lowers. The row lock does what an advisory
//! lock would (it is held to the end of the transaction) with nothing else to keep in
//! step.
//!
//! **Why last.** A write holds the lock from numbering to the end of its COMMIT (one WAL
//! flush), so writes that append events commit one after the other. Taking it after
//! every other change keeps that window to two statements and the flush, and means a
//! write holding it never waits for another lock, so it cannot deadlock with the row
//! locks of other writes. Within one handle, writes also take their turn on an async
//! mutex before the row lock, so that the live feed is published in `seq` order.
//!
//! The price: appends are serialised per database, at one WAL flush each. Measured on a
//! 2-core VM (release build, 10 connections, 2,000 concurrent creates of distinct
//! tenants, one transaction per create): 516 creates/s with this lock, 2,422/s with a
//! bare SEQUENCE and no order (where PostgreSQL flushes many commits at once). Group
//! commit (`writer.rs`) pays it once per group instead of once per write: 22,000–31,000
//! creates/s from 128 callers (docs/benchmarks.md, "PostgreSQL creates").

use std::sync::Arc;
use std::time::Duration;

use minoots_core::{Event, NewEvent, TimerId};
use tokio::sync::{Mutex, MutexGuard, Notify, broadcast, watch};
use uuid::Uuid;

use super::errors::TxResult;
use super::rows::event_from_row;
use super::tx::{Db, Shared};
use crate::types::{EventQuery, MAX_EVENTS_PER_READ};

/// The live feed reads the log at least this often, even when no notification came (one
/// cheap read of the log's head while nobody listens).
const TAIL_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// Numbers and stores the events of this handle's writes, and publishes the events of
/// every handle of the database as they are committed.
pub(super) struct EventLog {
    /// Held from numbering to COMMIT by this handle's writes, so that they take the
    /// log's row lock one at a time.
    turn: Mutex<()>,
    live: broadcast::Sender<crate::LiveEvent>,
    /// Wakes the tailer: this handle committed events, or another handle announced some.
    pub(super) nudge: Arc<Notify>,
}

/// A write's turn to number and commit its events.
pub(super) struct Turn<'a> {
    _held: MutexGuard<'a, ()>,
    nudge: &'a Notify,
}

impl Turn<'_> {
    /// The events are committed: the tailer reads and publishes them.
    pub(super) fn committed(self) {
        self.nudge.notify_one();
    }
}

impl EventLog {
    /// `capacity`: live events buffered per subscriber before it is told it lagged.
    pub(super) fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(1));
        Self {
            turn: Mutex::new(()),
            live,
            nudge: Arc::new(Notify::new()),
        }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<crate::LiveEvent> {
        self.live.subscribe()
    }

    pub(super) async fn turn(&self) -> Turn<'_> {
        Turn {
            _held: self.turn.lock().await,
            nudge: &self.nudge,
        }
    }

    /// Numbers `events` (taking the log's lock until the transaction ends) and inserts
    /// them. Must be the write's last statements before COMMIT.
    pub(super) async fn append(
        &self,
        db: &mut Db<'_>,
        events: Vec<NewEvent>,
        now_us: i64,
    ) -> TxResult<()> {
        let n = events.len() as i64;
        let last: i64 = db
            .query_one(
                "UPDATE event_log_head SET last_seq = last_seq + $1 RETURNING last_seq",
                &[&n],
            )
            .await?
            .get(0);
        let first = last - n + 1;
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let tenants: Vec<&str> = events.iter().map(|e| e.tenant_id.as_str()).collect();
        let timers: Vec<Uuid> = events.iter().map(|e| e.timer_id.0).collect();
        let deliveries: Vec<Option<Uuid>> =
            events.iter().map(|e| e.delivery_id.map(|d| d.0)).collect();
        let data: Vec<String> = events.iter().map(|e| e.data.to_string()).collect();
        db.execute(
            "INSERT INTO events (seq, type, tenant_id, timer_id, delivery_id, occurred_at, data)
             SELECT $1 + e.n - 1, e.type, e.tenant_id, e.timer_id, e.delivery_id, $2, e.data
               FROM unnest($3::text[], $4::text[], $5::uuid[], $6::uuid[], $7::text[])
                    WITH ORDINALITY AS e(type, tenant_id, timer_id, delivery_id, data, n)",
            &[
                &first,
                &now_us,
                &types,
                &tenants,
                &timers,
                &deliveries,
                &data,
            ],
        )
        .await?;
        Ok(())
    }
}

/// The log's head when the handle opens, before anyone can subscribe: the live feed
/// starts after it. (Read later, by the tailer's first round, it could come after a
/// subscriber's replay and after a commit, and that commit's events would reach neither.)
pub(super) async fn head_at_open(shared: &Shared) -> crate::StoreResult<i64> {
    shared
        .read(false, |db| {
            Box::pin(async move { latest_event_seq(db).await })
        })
        .await
}

/// Publishes the log's events after `published` to the handle's subscribers until told
/// to stop.
pub(super) async fn run_tailer(
    shared: Arc<Shared>,
    mut published: i64,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let head = shared
            .read(false, |db| {
                Box::pin(async move { latest_event_seq(db).await })
            })
            .await;
        match head {
            Ok(head) if shared.log.live.receiver_count() == 0 => published = head,
            Ok(_) => {
                if let Err(e) = publish_after(&shared, &mut published).await {
                    tracing::warn!(error = %e, "store: the live event feed cannot read the log; retrying");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "store: the live event feed cannot read the log; retrying");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = shared.log.nudge.notified() => {}
            _ = tokio::time::sleep(TAIL_AT_LEAST_EVERY) => {}
        }
    }
}

/// Reads and publishes every event after `*published`, advancing it.
async fn publish_after(shared: &Shared, published: &mut i64) -> crate::StoreResult<()> {
    loop {
        let query = EventQuery {
            after_seq: *published,
            limit: MAX_EVENTS_PER_READ,
            ..EventQuery::default()
        };
        let events = shared
            .read(false, |db| {
                let query = query.clone();
                Box::pin(async move { read_events(db, &query).await })
            })
            .await?;
        let full = events.len() >= MAX_EVENTS_PER_READ;
        for e in events {
            *published = e.seq;
            // No subscriber left is not an error.
            let _ = shared.log.live.send(Arc::new(e));
        }
        if !full {
            return Ok(());
        }
    }
}

/// Events after `q.after_seq` that match every filter, in `seq` order, at most
/// `q.limit` (lowered to [`MAX_EVENTS_PER_READ`]). Fewer than the limit means the end of
/// the committed log was reached.
pub(super) async fn read_events(db: &mut Db<'_>, q: &EventQuery) -> TxResult<Vec<Event>> {
    let limit = q.limit.clamp(1, MAX_EVENTS_PER_READ) as i64;
    let types: Vec<&str> = q.types.iter().map(|t| t.as_str()).collect();
    let timer: Option<Uuid> = q.timer_id.map(|t: TimerId| t.0);
    let rows = db
        .query(
            "SELECT seq, type, tenant_id, timer_id, delivery_id, occurred_at, data FROM events
              WHERE seq > $1
                AND ($2::text IS NULL OR tenant_id = $2)
                AND ($3::uuid IS NULL OR timer_id = $3)
                AND (cardinality($4::text[]) = 0 OR type = ANY ($4))
              ORDER BY seq LIMIT $5",
            &[&q.after_seq, &q.tenant_id, &timer, &types, &limit],
        )
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// The highest sequence number committed so far (0 for an empty log); pruning never
/// lowers it.
pub(super) async fn latest_event_seq(db: &mut Db<'_>) -> TxResult<i64> {
    Ok(db
        .query_one("SELECT last_seq FROM event_log_head", &[])
        .await?
        .get(0))
}

/// Deletes up to `limit` of the oldest events that occurred before `before_us`. Only the
/// head of the log is examined: events are appended in time order, so the oldest are
/// first and the statement touches at most `limit` rows.
pub(super) async fn prune_events(db: &mut Db<'_>, before_us: i64, limit: usize) -> TxResult<usize> {
    let limit = limit as i64;
    let n = db
        .execute(
            "DELETE FROM events WHERE seq IN (
                SELECT seq FROM (SELECT seq, occurred_at FROM events ORDER BY seq LIMIT $2) AS head
                 WHERE occurred_at < $1)",
            &[&before_us, &limit],
        )
        .await?;
    Ok(n as usize)
}
