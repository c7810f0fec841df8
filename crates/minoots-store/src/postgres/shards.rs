//! Several kernels on one database: timers fall into [`SHARD_COUNT`] shards by their id,
//! and each kernel leases shards, fires the timers of the shards it holds from its own
//! in-memory window, and fences every fire with the shard's epoch.
//!
//! - **Leases in database time.** A kernel's handle runs a round every
//!   [`round_interval`] (at most 1 s): in one transaction it marks itself alive in
//!   `kernels` until now + TTL (the database's `clock_timestamp()`, so kernels on
//!   machines whose clocks disagree still agree on who is alive), renews the shards it
//!   holds, gives back those beyond its fair share (⌈64 / kernels alive⌉) and takes free
//!   or expired ones up to it. A kernel killed or stopped stops renewing; its shards
//!   expire within one TTL and the next round of another kernel takes them: taken over
//!   within one TTL plus one round. Joining kernels get their share as the others give
//!   shards back at their next round.
//! - **Fencing epochs.** Taking a shard raises its epoch. A fire reads the epochs of its
//!   timers' shards `FOR SHARE` before it changes anything, and fires only the timers
//!   of shards whose epoch is still the one this kernel took; the others come back as
//!   [`FireOutcome::Fenced`](crate::FireOutcome::Fenced). The row lock orders each fire
//!   against a takeover: a fire that read the old epoch commits before the takeover's
//!   UPDATE can, and every later fire reads the new epoch. So a kernel that was stopped
//!   past its lease (SIGSTOP, a long pause) and wakes with a stale window fires nothing
//!   its successor owns. (Firing is also a transition from `scheduled` under the
//!   timer's row lock, so no timer fires twice either way; the fence keeps the stale
//!   kernel from firing at all, and counts what it refused.)
//! - **A stopped kernel's locks.** A kernel stopped in the middle of a fire keeps its
//!   transaction open, and with it the share locks on its shards' rows (and the event
//!   log's counter row): a takeover's UPDATE would wait for it as long as it sleeps.
//!   Every connection therefore runs with `idle_in_transaction_session_timeout` at half
//!   the lease (`pool.rs`): the server ends such a session, its locks go, and the
//!   takeover happens within the lease as for a killed kernel (the cluster test of real
//!   processes SIGSTOPs a kernel; without the timeout it stalled about 1 run in 3).
//! - **Local expiry.** A kernel that cannot renew (the database is unreachable) forgets
//!   its shards one TTL after its last successful round began, which is before the
//!   database can give them to another kernel.
//! - **Graceful stop.** Closing the handle gives its shards back and removes the kernel
//!   from `kernels`, so the others take them at their next round.
//!
//! - **One maintainer.** The kernel holding shard [`MAINTENANCE_SHARD`] (within its
//!   local lease) runs the cluster's maintenance: lease rescue and retention. It moves
//!   with the shard, so a maintainer that dies *or stalls* (SIGSTOP, a long pause, a
//!   lost network) loses it within one TTL, like its shards. (A session advisory lock
//!   would follow the connection instead: a stopped process keeps its TCP connection,
//!   so the lock, and maintenance with it, would stay stuck with it for as long as it
//!   sleeps.) A stale maintainer that wakes may run one pass before its next round: the
//!   passes are conditional updates under row locks (`FOR UPDATE SKIP LOCKED` on
//!   expired leases, deletes by age), so two at once do the work once.
//!
//! Only fires are fenced: creates, cancels, claims and reports may run through any
//! kernel (they lock the rows they change).
//!
//! Must never: keep firing a shard after its local lease ended, take more than the fair
//! share, or let a round hold its locks beyond one short transaction.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use minoots_core::TimerId;
use tokio::sync::watch;
use tokio_postgres::Client;

use super::errors::describe;
use super::pool::{Conn, Pool};
use crate::types::{StoreError, StoreResult};

/// How many shards the timers of a database fall into. Fixed: a timer's shard is a
/// function of its id, so changing it would move timers between kernels. 64 spreads
/// the timers evenly over up to 64 kernels and keeps a round's statements small.
pub const SHARD_COUNT: i32 = 64;

/// The shard of a timer: the last byte of its id (random in a UUID v7) modulo
/// [`SHARD_COUNT`]. SQL computes the same as `get_byte(uuid_send(id), 15) % 64`
/// (`timers.rs`; a test checks that the two agree).
pub fn shard_of(id: TimerId) -> i32 {
    i32::from(id.0.as_bytes()[15]) % SHARD_COUNT
}

/// The shard whose holder runs the cluster's maintenance. Shards are taken in ascending
/// order and given back from the highest, so it moves only when its holder goes.
pub const MAINTENANCE_SHARD: i32 = 0;

/// The longest pause between rounds: a shard that expired is taken within this.
const MAX_ROUND_INTERVAL: Duration = Duration::from_secs(1);

/// How often a kernel renews: every quarter of the lease, at most every second.
pub(super) fn round_interval(ttl: Duration) -> Duration {
    (ttl / 4).min(MAX_ROUND_INTERVAL)
}

/// The shards a kernel's handle holds, with the epoch it took each at.
pub(super) struct ShardBook {
    /// The kernel's name as stored in `shards.owner` and `kernels.name`.
    pub(super) name: String,
    held: RwLock<BTreeMap<i32, i64>>,
    /// Bumped when `held` changes or notifications may have been missed.
    changes: watch::Sender<u64>,
    ttl: Duration,
    /// When the last successful round began: the local lease ends one TTL after it.
    valid_from: std::sync::Mutex<Option<Instant>>,
}

impl ShardBook {
    pub(super) fn new(name: String, ttl: Duration) -> Self {
        Self {
            name,
            held: RwLock::new(BTreeMap::new()),
            changes: watch::Sender::new(0),
            ttl,
            valid_from: std::sync::Mutex::new(None),
        }
    }

    pub(super) fn owns(&self, id: TimerId) -> bool {
        self.held
            .read()
            .expect("shard book poisoned")
            .contains_key(&shard_of(id))
    }

    /// Holds [`MAINTENANCE_SHARD`] and the last good round began less than a TTL ago
    /// (checked here, not only by the rounds, so a kernel waking from a pause does not
    /// act on a lease that ended while it slept).
    pub(super) fn maintains(&self, now: Instant) -> bool {
        let fresh = self
            .valid_from
            .lock()
            .expect("shard book poisoned")
            .is_some_and(|f| now.saturating_duration_since(f) < self.ttl);
        fresh
            && self
                .held
                .read()
                .expect("shard book poisoned")
                .contains_key(&MAINTENANCE_SHARD)
    }

    pub(super) fn len(&self) -> usize {
        self.held.read().expect("shard book poisoned").len()
    }

    /// The held shards among `shards`, with their epochs.
    pub(super) fn epochs_of(&self, shards: &HashSet<i32>) -> (Vec<i32>, Vec<i64>) {
        let held = self.held.read().expect("shard book poisoned");
        shards
            .iter()
            .filter_map(|s| held.get(s).map(|e| (*s, *e)))
            .unzip()
    }

    /// Every held shard (for loading the window).
    pub(super) fn held_shards(&self) -> Vec<i32> {
        self.held
            .read()
            .expect("shard book poisoned")
            .keys()
            .copied()
            .collect()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tells the kernel to reload its window (notifications may have been missed).
    pub(super) fn bump(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn replace(&self, new: BTreeMap<i32, i64>) {
        let changed = {
            let mut held = self.held.write().expect("shard book poisoned");
            let changed = *held != new;
            *held = new;
            changed
        };
        if changed {
            self.bump();
        }
    }

    /// Forgets every shard when the last successful round is a TTL old.
    fn expire_locally(&self, now: Instant) {
        let from = *self.valid_from.lock().expect("shard book poisoned");
        if from.is_some_and(|f| now.duration_since(f) >= self.ttl) && self.len() > 0 {
            tracing::warn!(
                kernel = %self.name,
                "store: the shard leases could not be renewed for a whole lease; this kernel fires nothing until it holds shards again"
            );
            self.replace(BTreeMap::new());
        }
    }
}

fn failed(what: &str, e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("{what}: {}", describe(&e)))
}

/// The database's clock in µs.
const DB_NOW_US: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// One round: alive, renew, give back or take, on the rounds' own connection (never one
/// of the pool's: requests holding every pooled connection must not delay a renewal).
/// Returns how many shards are held after it.
pub(super) async fn round(client: &mut Client, book: &ShardBook) -> StoreResult<usize> {
    let started = Instant::now();
    let ttl_us = book.ttl.as_micros() as i64;
    let tx = client
        .transaction()
        .await
        .map_err(|e| failed("cannot begin a shard round", e))?;
    let now: i64 = tx
        .query_one(DB_NOW_US, &[])
        .await
        .map_err(|e| failed("cannot read the database's clock", e))?
        .get(0);
    let until = now + ttl_us;
    tx.execute(
        "INSERT INTO kernels (name, alive_until, started_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET alive_until = EXCLUDED.alive_until",
        &[&book.name, &until, &now],
    )
    .await
    .map_err(|e| failed("cannot mark the kernel alive", e))?;
    tx.execute("DELETE FROM kernels WHERE alive_until < $1", &[&now])
        .await
        .map_err(|e| failed("cannot forget gone kernels", e))?;
    let alive: i64 = tx
        .query_one(
            "SELECT count(*) FROM kernels WHERE alive_until >= $1",
            &[&now],
        )
        .await
        .map_err(|e| failed("cannot count the kernels", e))?
        .get(0);
    let fair = (SHARD_COUNT as usize).div_ceil(alive.max(1) as usize);
    let (shards, epochs): (Vec<i32>, Vec<i64>) = book
        .held
        .read()
        .expect("shard book poisoned")
        .iter()
        .map(|(s, e)| (*s, *e))
        .unzip();
    let renewed = tx
        .query(
            "UPDATE shards AS s SET lease_until = $1
               FROM unnest($2::int[], $3::bigint[]) AS h(shard, epoch)
              WHERE s.shard = h.shard AND s.epoch = h.epoch AND s.owner = $4
              RETURNING s.shard, s.epoch",
            &[&until, &shards, &epochs, &book.name],
        )
        .await
        .map_err(|e| failed("cannot renew the shard leases", e))?;
    let mut held: BTreeMap<i32, i64> = renewed.iter().map(|r| (r.get(0), r.get(1))).collect();
    let lost = shards.len() - held.len();
    if lost > 0 {
        tracing::warn!(kernel = %book.name, lost, "store: shards were taken over by another kernel");
    }
    if held.len() > fair {
        let give: Vec<i32> = held.keys().rev().take(held.len() - fair).copied().collect();
        tx.execute(
            "UPDATE shards SET owner = '', lease_until = 0 WHERE shard = ANY ($1) AND owner = $2",
            &[&give, &book.name],
        )
        .await
        .map_err(|e| failed("cannot give shards back", e))?;
        for s in &give {
            held.remove(s);
        }
    } else if held.len() < fair {
        let want = (fair - held.len()) as i64;
        let taken = tx
            .query(
                "UPDATE shards SET owner = $1, epoch = epoch + 1, lease_until = $2
                  WHERE shard IN (SELECT shard FROM shards WHERE lease_until < $3
                                   ORDER BY shard LIMIT $4 FOR UPDATE SKIP LOCKED)
                  RETURNING shard, epoch",
                &[&book.name, &until, &now, &want],
            )
            .await
            .map_err(|e| failed("cannot take shards", e))?;
        held.extend(
            taken
                .iter()
                .map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1))),
        );
    }
    tx.commit()
        .await
        .map_err(|e| failed("cannot commit a shard round", e))?;
    let n = held.len();
    *book.valid_from.lock().expect("shard book poisoned") = Some(started);
    book.replace(held);
    Ok(n)
}

/// Runs rounds on `conn` (opened again when it breaks) until told to stop, then gives
/// the shards back.
pub(super) async fn run(
    pool: Arc<Pool>,
    book: Arc<ShardBook>,
    conn: Conn,
    mut stop: watch::Receiver<bool>,
) {
    let every = round_interval(book.ttl);
    let mut conn = Some(conn);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(every) => {}
        }
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = pool.connect().await.ok();
        }
        let done = match conn.as_mut() {
            Some(c) => round(&mut c.client, &book).await,
            None => Err(StoreError::Unavailable(
                "cannot connect for a shard round".into(),
            )),
        };
        if let Err(e) = done {
            tracing::warn!(kernel = %book.name, error = %e, "store: a shard round failed");
            // A failed round may have left the connection mid-transaction: start afresh.
            conn = None;
        }
        book.expire_locally(Instant::now());
    }
    book.replace(BTreeMap::new());
    if let Err(e) = leave(&pool, &book.name).await {
        tracing::warn!(kernel = %book.name, error = %e, "store: could not give the shards back at close; they expire with their leases");
    }
}

/// Gives every shard back and leaves `kernels`, so the other kernels take them at once.
async fn leave(pool: &Arc<Pool>, name: &str) -> StoreResult<()> {
    let mut lent = pool.get().await?;
    let client = &mut lent.conn().client;
    client
        .execute(
            "UPDATE shards SET owner = '', lease_until = 0 WHERE owner = $1",
            &[&name],
        )
        .await
        .map_err(|e| failed("cannot give the shards back", e))?;
    client
        .execute("DELETE FROM kernels WHERE name = $1", &[&name])
        .await
        .map_err(|e| failed("cannot leave the kernels", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_run_every_quarter_lease_and_at_least_every_second() {
        assert_eq!(
            round_interval(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            round_interval(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_timer_shard_is_the_last_byte_of_its_id() {
        let mut bytes = [0u8; 16];
        bytes[15] = 200;
        assert_eq!(shard_of(TimerId::from_slice(&bytes).unwrap()), 200 % 64);
        bytes[15] = 63;
        assert_eq!(shard_of(TimerId::from_slice(&bytes).unwrap()), 63);
    }

    #[test]
    fn a_kernel_forgets_its_shards_a_lease_after_its_last_good_round() {
        let book = ShardBook::new("k".into(), Duration::from_secs(10));
        let t0 = Instant::now();
        *book.valid_from.lock().unwrap() = Some(t0);
        book.replace(BTreeMap::from([(1, 5), (2, 7)]));
        let mut changes = book.subscribe();
        changes.mark_unchanged();
        book.expire_locally(t0 + Duration::from_secs(9));
        assert_eq!(book.len(), 2);
        assert!(!changes.has_changed().unwrap());
        book.expire_locally(t0 + Duration::from_secs(10));
        assert_eq!(book.len(), 0);
        assert!(changes.has_changed().unwrap());
    }

    #[test]
    fn the_holder_of_shard_zero_maintains_until_its_local_lease_ends() {
        let book = ShardBook::new("k".into(), Duration::from_secs(10));
        let t0 = Instant::now();
        book.replace(BTreeMap::from([(MAINTENANCE_SHARD, 3), (9, 1)]));
        assert!(!book.maintains(t0), "no good round yet");
        *book.valid_from.lock().unwrap() = Some(t0);
        assert!(book.maintains(t0 + Duration::from_secs(9)));
        // Woken from a pause longer than the lease, before any round ran: not any more.
        assert!(!book.maintains(t0 + Duration::from_secs(10)));
        book.replace(BTreeMap::from([(9, 1)]));
        assert!(!book.maintains(t0), "shard 0 held by another kernel");
    }
}
