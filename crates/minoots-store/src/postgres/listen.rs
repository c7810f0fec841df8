//! What the handles of one database tell each other, through PostgreSQL's
//! LISTEN/NOTIFY: a handle's writes announce, in the same transaction (so the
//! announcement is delivered at COMMIT, and never for a write rolled back),
//!
//! - the timers they created that fall due within [`ANNOUNCE_DUE_WITHIN_US`], so the
//!   kernel holding each timer's shard puts it in its window at once (precision does not
//!   wait for the next refill);
//! - that events were appended, so every handle's live feed reads and publishes them
//!   (`log.rs`: live streams see the events of every kernel);
//! - that a tenant or key changed, so every kernel empties its key cache (a revoked key
//!   stops working everywhere as soon as the notification arrives);
//! - that deliveries became due now (fired, rescued, handed back, redriven, a retry
//!   scheduled), so the lease sessions of every *other* kernel claim them at once: an
//!   executor attached to any kernel gets the deliveries of timers fired by any kernel
//!   without waiting for its session's idle poll. The payload names the handle that
//!   wrote, so a kernel skips its own (it woke its sessions already).
//!
//! Each handle keeps one connection that LISTENs. When it drops, notifications may have
//! been missed: once it is back, the handle tells the kernel to reload its window, to
//! empty its key cache, and nudges the live feed, so nothing missed stays missed.
//!
//! Channels are named per schema (a hash of its name), so stores in different schemas
//! of one database do not hear each other.

use std::sync::Arc;
use std::time::Duration;

use minoots_core::TimerId;
use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use super::errors::{TxResult, describe};
use super::pool::Pool;
use super::shards::ShardBook;
use super::tx::Db;
use crate::types::DueTimer;

/// Timers due further out are not announced: they reach a window through its refills
/// (a kernel's window is at most an hour, see the kernel's settings).
pub const ANNOUNCE_DUE_WITHIN_US: i64 = 3_600_000_000;
/// The longest payload of one notification; PostgreSQL refuses 8,000 bytes and more.
const MAX_PAYLOAD_BYTES: usize = 7_000;
/// Due timers buffered for a kernel that reads them late; beyond it, it reloads.
const DUE_BUFFER: usize = 65_536;
/// Notifications received but not yet handled; beyond it the connection is dropped and
/// opened again (which reloads everything, as after any reconnect).
const MAX_UNHANDLED: usize = 65_536;
/// Pause before opening a dropped listening connection again, and between checks that
/// the open one is still alive.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The channels of one schema.
pub(super) struct Channels {
    pub(super) timers: String,
    pub(super) events: String,
    pub(super) keys: String,
    pub(super) ready: String,
    /// This handle's name in the `ready` payload, so it skips its own announcements.
    pub(super) me: String,
}

impl Channels {
    pub(super) fn new(schema: Option<&str>) -> Self {
        // FNV-1a: stable across builds and processes (unlike std's hasher).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in schema.unwrap_or("public").bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            timers: format!("minoots_timers_{h:016x}"),
            events: format!("minoots_events_{h:016x}"),
            keys: format!("minoots_keys_{h:016x}"),
            ready: format!("minoots_ready_{h:016x}"),
            me: format!("{:016x}", fastrand::u64(..)),
        }
    }
}

/// What the listening connection hands on.
pub(super) struct Signals {
    pub(super) due: broadcast::Sender<DueTimer>,
    pub(super) keys: broadcast::Sender<()>,
    /// Wakes the live feed (`log.rs`).
    pub(super) events: Arc<Notify>,
    /// Bumped when another handle made deliveries due.
    pub(super) ready: watch::Sender<u64>,
}

impl Signals {
    pub(super) fn new(events: Arc<Notify>) -> Self {
        Self {
            due: broadcast::Sender::new(DUE_BUFFER),
            keys: broadcast::Sender::new(16),
            events,
            ready: watch::Sender::new(0),
        }
    }
}

/// Payloads announcing `timers` ((fire time, id) pairs), each under the size limit.
pub(super) fn due_payloads(timers: &[(i64, Uuid)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for (at, id) in timers {
        let item = format!("{at}:{}", id.simple());
        if !current.is_empty() && current.len() + 1 + item.len() > MAX_PAYLOAD_BYTES {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The timers a payload announces; items that do not parse are skipped (a payload comes
/// from MINOOTS' own statements, so that would be a bug, logged).
pub(super) fn parse_due(payload: &str) -> Vec<DueTimer> {
    payload
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|item| {
            let parsed = item.split_once(':').and_then(|(at, id)| {
                Some(DueTimer {
                    fire_at_us: at.parse().ok()?,
                    id: TimerId(Uuid::parse_str(id).ok()?),
                })
            });
            if parsed.is_none() {
                tracing::error!(item, "store: a timer announcement does not parse");
            }
            parsed
        })
        .collect()
}

/// Sends each (channel, payload) within the transaction of `db`, in one statement.
pub(super) async fn notify(db: &mut Db<'_>, sent: Vec<(&str, String)>) -> TxResult<()> {
    if sent.is_empty() {
        return Ok(());
    }
    let (channels, payloads): (Vec<&str>, Vec<String>) = sent.into_iter().unzip();
    db.query(
        "SELECT pg_notify(n.channel, n.payload)
           FROM unnest($1::text[], $2::text[]) AS n(channel, payload)",
        &[&channels, &payloads],
    )
    .await?;
    Ok(())
}

fn bump(counter: &watch::Sender<u64>) {
    counter.send_modify(|n| *n = n.wrapping_add(1));
}

/// Keeps a listening connection open until told to stop.
pub(super) async fn run(
    pool: Arc<Pool>,
    channels: Arc<Channels>,
    signals: Arc<Signals>,
    book: Option<Arc<ShardBook>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        match listen(
            &pool,
            &channels,
            &signals,
            book.as_deref(),
            first,
            &mut stop,
        )
        .await
        {
            Ok(()) => return,
            Err(why) => {
                tracing::warn!(%why, "store: the listening connection ended; opening it again");
            }
        }
        first = false;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// One listening connection's life: `Ok` when told to stop, `Err` when it ended.
async fn listen(
    pool: &Pool,
    channels: &Channels,
    signals: &Signals,
    book: Option<&ShardBook>,
    first: bool,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let (client, mut received) = pool
        .connect_listening(MAX_UNHANDLED)
        .await
        .map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!(
            "LISTEN \"{}\"; LISTEN \"{}\"; LISTEN \"{}\"; LISTEN \"{}\";",
            channels.timers, channels.events, channels.keys, channels.ready
        ))
        .await
        .map_err(|e| describe(&e))?;
    if !first {
        // Whatever was announced while no connection listened is not lost: the window is
        // reloaded, the key cache emptied, the live feed reads what it has not published.
        if let Some(book) = book {
            book.bump();
        }
        let _ = signals.keys.send(());
    }
    signals.events.notify_one();
    bump(&signals.ready);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(RETRY_EVERY) => {
                if client.is_closed() {
                    return Err("the connection closed".into());
                }
            }
            n = received.recv() => {
                let Some(n) = n else {
                    return Err("the connection closed".into());
                };
                if n.channel() == channels.timers {
                    for due in parse_due(n.payload()) {
                        // No receiver (no kernel on this handle) is not an error.
                        let _ = signals.due.send(due);
                    }
                } else if n.channel() == channels.events {
                    signals.events.notify_one();
                } else if n.channel() == channels.keys {
                    let _ = signals.keys.send(());
                } else if n.channel() == channels.ready && n.payload() != channels.me {
                    bump(&signals.ready);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_stay_under_the_payload_limit() {
        let timers: Vec<(i64, Uuid)> = (0..1_000)
            .map(|i| (1_700_000_000_000_000 + i, Uuid::now_v7()))
            .collect();
        let payloads = due_payloads(&timers);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES));
        let back: Vec<(i64, Uuid)> = payloads
            .iter()
            .flat_map(|p| parse_due(p))
            .map(|d| (d.fire_at_us, d.id.0))
            .collect();
        assert_eq!(back, timers);
        assert!(parse_due("12:not-a-uuid,x").is_empty());
    }

    #[test]
    fn channels_differ_per_schema_and_fit_an_identifier() {
        let a = Channels::new(Some("a"));
        let b = Channels::new(Some("b"));
        assert_ne!(a.timers, b.timers);
        assert_eq!(Channels::new(None).keys, Channels::new(Some("public")).keys);
        assert!(a.events.len() <= 63);
    }
}
