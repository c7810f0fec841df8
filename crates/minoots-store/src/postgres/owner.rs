//! One kernel per database (or per schema). A kernel's handle (`PostgresConfig::kernel`)
//! owns its database alone, in two layers:
//!
//! - **A session lock.** At open the handle takes a session-level advisory lock, keyed by
//!   the schema, on a connection of its own that it keeps for its life. PostgreSQL ends
//!   the lock with the session (the process exits or is killed, its connection drops),
//!   so a kernel started after a crash takes over at once, while a second kernel started
//!   beside a live one is refused, naming the owner. (The lock proves that the previous
//!   kernel is gone, as the data directory's lock does for SQLite: `serve` relies on it
//!   to hand back its previous process's leases at start.)
//! - **A fencing epoch.** Having the lock, the handle raises `kernel_owner.epoch` and
//!   remembers the value. Every write transaction of the handle reads the epoch `FOR
//!   SHARE` just before its COMMIT and is refused with `Superseded` if it changed. The
//!   lock alone would not do: when its connection drops while the process lives on (a
//!   network cut, a server restart), another kernel may take the database, and the old
//!   one's writes must then be refused rather than interleaved. The row lock orders each
//!   commit against a takeover: a write that read the old epoch commits before the
//!   takeover's UPDATE can, and every later write reads the new epoch.
//!
//! While the kernel lives, a watcher re-takes a lock whose connection dropped, so that a
//! kernel started later is refused again; if another kernel took the database meanwhile,
//! the epoch check has already fenced this one.
//!
//! Several kernels sharing one database (shards, each with its own epoch) will replace
//! the single owner; until then one database serves one kernel, and several databases
//! (or schemas) serve several.

use std::sync::Arc;
use std::time::Duration;

use minoots_core::timefmt::format_us;
use tokio::sync::watch;

use super::errors::{TxResult, describe};
use super::pool::{Conn, Pool};
use super::rows::col;
use super::tx::Db;
use crate::types::{StoreError, StoreResult};

/// The first key of the kernel's advisory lock: "MNTK" in ASCII. The second is the hash
/// of the schema's name, so kernels of different schemas of one database do not meet.
const KERNEL_LOCK_CLASS: i32 = 0x4d4e_544b;

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))";

/// How often the watcher looks at the lock's connection.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The ownership of a kernel's handle: its epoch, and the lock kept by a watcher task
/// until [`KernelLock::release`].
pub(super) struct KernelLock {
    pub(super) epoch: i64,
    stop: watch::Sender<bool>,
    watcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn failed(what: &str, e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("{what}: {}", describe(&e)))
}

/// Takes the database for the kernel named `owner`, or refuses naming who holds it.
pub(super) async fn take(pool: Arc<Pool>, owner: &str, now_us: i64) -> StoreResult<KernelLock> {
    let conn = pool.connect().await?;
    let got: bool = conn
        .client
        .query_one(TRY_LOCK, &[&KERNEL_LOCK_CLASS])
        .await
        .map_err(|e| failed("cannot take the kernel lock", e))?
        .get(0);
    if !got {
        let row = conn
            .client
            .query_one("SELECT owner, since, epoch FROM kernel_owner", &[])
            .await
            .map_err(|e| failed("cannot read the kernel owner", e))?;
        let (holder, since, epoch): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        return Err(StoreError::Locked(format!(
            "another MINOOTS kernel ({holder:?}, since {}, epoch {epoch}) owns this database; \
             one kernel serves one database (or schema): stop that kernel, or give this one \
             another database or schema",
            format_us(since)
        )));
    }
    let epoch: i64 = conn
        .client
        .query_one(
            "UPDATE kernel_owner SET epoch = epoch + 1, owner = $1, since = $2 RETURNING epoch",
            &[&owner, &now_us],
        )
        .await
        .map_err(|e| failed("cannot record the kernel owner", e))?
        .get(0);
    let (stop, stopped) = watch::channel(false);
    let watcher = tokio::spawn(watch_lock(pool, conn, epoch, stopped));
    Ok(KernelLock {
        epoch,
        stop,
        watcher: std::sync::Mutex::new(Some(watcher)),
    })
}

impl KernelLock {
    /// Ends the session lock (at close): a kernel started next takes over at once.
    pub(super) async fn release(&self) {
        let _ = self.stop.send(true);
        let watcher = self.watcher.lock().expect("kernel lock poisoned").take();
        if let Some(w) = watcher {
            let _ = w.await;
        }
    }
}

/// Keeps the lock held: when its connection dropped, takes it again on a new one, as
/// long as no other kernel raised the epoch meanwhile. Ends (dropping the connection,
/// which ends the lock) when told to stop.
async fn watch_lock(pool: Arc<Pool>, conn: Conn, epoch: i64, mut stop: watch::Receiver<bool>) {
    let mut conn = Some(conn);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        if conn.as_ref().is_some_and(|c| !c.client.is_closed()) {
            continue;
        }
        if conn.take().is_some() {
            tracing::warn!(
                "store: the connection holding the kernel lock dropped; taking the lock again"
            );
        }
        match retake(&pool, epoch).await {
            Ok(Some(c)) => {
                tracing::info!("store: the kernel lock is held again");
                conn = Some(c);
            }
            Ok(None) => {}
            Err(StoreError::Superseded(_)) => break,
            Err(e) => tracing::debug!(error = %e, "store: cannot take the kernel lock again yet"),
        }
    }
    if let Some(c) = conn {
        let _ = c
            .client
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext(current_schema()))",
                &[&KERNEL_LOCK_CLASS],
            )
            .await;
    }
}

/// The lock on a new connection, if it is free and the epoch is still `epoch`;
/// `Superseded` if another kernel raised the epoch.
async fn retake(pool: &Pool, epoch: i64) -> StoreResult<Option<Conn>> {
    let conn = pool.connect().await?;
    let got: bool = conn
        .client
        .query_one(TRY_LOCK, &[&KERNEL_LOCK_CLASS])
        .await
        .map_err(|e| failed("cannot take the kernel lock", e))?
        .get(0);
    if !got {
        return Ok(None);
    }
    let current: i64 = conn
        .client
        .query_one("SELECT epoch FROM kernel_owner", &[])
        .await
        .map_err(|e| failed("cannot read the kernel owner", e))?
        .get(0);
    if current != epoch {
        // Another kernel owned the database meanwhile: this one is fenced for good, and
        // must not hold the lock against a successor (dropping the connection ends it).
        tracing::error!(
            epoch,
            current,
            "store: another kernel took this database over; this kernel's writes are refused"
        );
        return Err(StoreError::Superseded(format!("epoch {current}")));
    }
    Ok(Some(conn))
}

/// Refuses the write transaction of `db` unless the database's epoch is still `epoch`;
/// holds the epoch's row in share mode until the transaction ends.
pub(super) async fn check_epoch(db: &mut Db<'_>, epoch: i64) -> TxResult<()> {
    let row = db
        .query_one("SELECT epoch, owner FROM kernel_owner FOR SHARE", &[])
        .await?;
    let current: i64 = col(&row, 0)?;
    if current != epoch {
        let holder: String = col(&row, 1)?;
        return Err(StoreError::Superseded(format!(
            "kernel {holder:?} took it over (epoch {current}; this kernel had {epoch})"
        ))
        .into());
    }
    Ok(())
}
