//! Lease sessions: hand due deliveries to an executor as they become due.
//!
//! One session per connected executor. It claims deliveries in the store (each claim is a
//! lease with an expiry, fenced by owner and attempt number) only when its outgoing buffer
//! has room, so leases are not taken faster than the executor reads them. It sleeps until
//! the earliest pending delivery is due, or until woken because firing, a retry report or
//! the rescuer made deliveries due. A session whose executor disconnected stops, and hands
//! back at once what it had leased but not yet passed on (a claim committing while the
//! executor left, and the deliveries still in the session's buffer). Deliveries already
//! passed on are the executor's: it renews their leases while it works on them, so those
//! lost in transit come back through the rescuer within one lease TTL.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use minoots_core::Clock;
use minoots_kernel_api::{BoxStream, KernelResult, LeaseRequest};
use minoots_store::{ClaimRequest, LeasedDelivery, Store};
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;

use crate::metrics::KernelMetrics;

/// The longest a session sleeps without asking the store again (covers clock jumps and
/// deliveries made due by another kernel sharing the store).
const MAX_IDLE_POLL: Duration = Duration::from_millis(1_000);

/// Most deliveries claimed for a session in the transaction that fires.
const MAX_CLAIMED_AT_FIRE: usize = 1_024;

type SessionTx = mpsc::Sender<KernelResult<LeasedDelivery>>;

/// The open lease sessions, so that firing can claim for one with room in its buffer in
/// the fire's own transaction ([`Store::fire_and_claim`]): while executors keep up, a
/// delivery then costs one writer transaction and one commit fewer, and reaches its
/// executor without waiting for the session to wake and claim.
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<Vec<OpenSession>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Round robin over sessions with room.
    turn: std::sync::atomic::AtomicUsize,
}

/// One open session: whom it leases to, for how long, and its buffer.
struct OpenSession {
    id: u64,
    owner: String,
    ttl_us: i64,
    tx: SessionTx,
}

/// A claim for one session, sized by the room its buffer had when it was made (nothing
/// is reserved: [`ClaimAtFire::hand_over`] hands back what no longer fits).
pub(crate) struct ClaimAtFire {
    pub(crate) claim: ClaimRequest,
    tx: SessionTx,
    started: std::time::SystemTime,
}

impl Sessions {
    fn join(&self, owner: &str, ttl_us: i64, tx: SessionTx) -> u64 {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut open = self.open.lock().expect("sessions poisoned");
        open.retain(|s| !s.tx.is_closed());
        open.push(OpenSession {
            id,
            owner: owner.to_string(),
            ttl_us,
            tx,
        });
        id
    }

    fn leave(&self, id: u64) {
        self.open
            .lock()
            .expect("sessions poisoned")
            .retain(|s| s.id != id);
    }

    /// A claim for a session with free room in its buffer, for up to `want` deliveries;
    /// `None` when no session has room (each is busy claiming for itself, or absent).
    pub(crate) fn claim_for(&self, want: usize) -> Option<ClaimAtFire> {
        let open = self.open.lock().expect("sessions poisoned");
        let n = open.len();
        if n == 0 || want == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (0..n)
            .map(|i| &open[(start + i) % n])
            .find(|s| !s.tx.is_closed() && s.tx.capacity() > 0)
            .map(|s| ClaimAtFire {
                claim: ClaimRequest {
                    lease_owner: s.owner.clone(),
                    lease_ttl_us: s.ttl_us,
                    limit: s.tx.capacity().min(want).min(MAX_CLAIMED_AT_FIRE),
                },
                tx: s.tx.clone(),
                started: std::time::SystemTime::now(),
            })
    }
}

impl ClaimAtFire {
    /// Hands what the fire claimed to the session. The session's buffer had room when
    /// the claim was made; whatever no longer fits (the session filled it meanwhile), or
    /// reaches a session that closed, is handed back at once, as a session does with a
    /// claim it cannot pass on.
    pub(crate) async fn hand_over(
        self,
        store: &dyn Store,
        notify: &Notify,
        metrics: &KernelMetrics,
        claimed: Vec<LeasedDelivery>,
    ) {
        if claimed.is_empty() {
            return;
        }
        KernelMetrics::inc(&metrics.deliveries_leased, claimed.len() as u64);
        KernelMetrics::inc(&metrics.deliveries_claimed_at_fire, claimed.len() as u64);
        crate::spans::leased(&claimed, &self.claim.lease_owner, self.started);
        let mut unsent = Vec::new();
        for d in claimed {
            match self.tx.try_send(Ok(d)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(Ok(d)))
                | Err(mpsc::error::TrySendError::Closed(Ok(d))) => unsent.push(d),
                Err(_) => {}
            }
        }
        if !unsent.is_empty() {
            hand_back(store, notify, &self.claim.lease_owner, unsent).await;
        }
    }
}

pub(crate) fn start_session(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    notify: Arc<Notify>,
    metrics: Arc<KernelMetrics>,
    sessions: Arc<Sessions>,
    request: LeaseRequest,
) -> BoxStream<LeasedDelivery> {
    let (tx, rx) = mpsc::channel::<KernelResult<LeasedDelivery>>(request.max_in_flight as usize);
    let joined = sessions.join(
        &request.lease_owner,
        i64::from(request.lease_ttl_ms) * 1_000,
        tx.clone(),
    );
    let session_end = SessionStream {
        rx,
        store: store.clone(),
        notify: notify.clone(),
        lease_owner: request.lease_owner.clone(),
        _open: metrics.lease_session(),
    };
    tokio::spawn(async move {
        // Leaves the open sessions when this task ends, however it ends.
        struct Leave(Arc<Sessions>, u64);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.leave(self.1);
            }
        }
        let _leave = Leave(sessions, joined);
        let ttl_us = i64::from(request.lease_ttl_ms) * 1_000;
        let batch = (request.max_in_flight as usize / 2).max(1);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            // Wait for room in the buffer before leasing anything.
            // Claim in batches of half the buffer: wait until that much room is free, so a
            // busy executor gets one claim transaction per batch, not one per delivery.
            let permits = match tx.reserve_many(batch).await {
                Ok(p) => p,
                Err(_) => return,
            };
            let claim_started = std::time::SystemTime::now();
            match store
                .claim_deliveries(&request.lease_owner, ttl_us, batch)
                .await
            {
                Ok(claimed) if !claimed.is_empty() => {
                    KernelMetrics::inc(&metrics.deliveries_leased, claimed.len() as u64);
                    crate::spans::leased(&claimed, &request.lease_owner, claim_started);
                    if tx.is_closed() {
                        // The executor went away while this claim committed: hand the
                        // deliveries back now rather than when their leases expire.
                        hand_back(store.as_ref(), &notify, &request.lease_owner, claimed).await;
                        return;
                    }
                    for (permit, d) in permits.zip(claimed) {
                        permit.send(Ok(d));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    crate::metrics::note_store_error(&e);
                    tracing::warn!(error = %e, owner = %request.lease_owner, "claiming deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = tx.closed() => return,
                    }
                    continue;
                }
            }
            let wait = match store.next_delivery_due_us().await {
                Ok(Some(due)) => {
                    let delta = (due - clock.now_us()).max(0) as u64;
                    Duration::from_micros(delta).min(MAX_IDLE_POLL)
                }
                _ => MAX_IDLE_POLL,
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Box::pin(session_end)
}

/// Releases deliveries leased to `owner` that it never received.
async fn hand_back(
    store: &dyn Store,
    notify: &Notify,
    owner: &str,
    deliveries: Vec<LeasedDelivery>,
) {
    for d in deliveries {
        if let Err(e) = store
            .release_delivery(d.delivery.id, owner, d.delivery.attempt)
            .await
        {
            tracing::warn!(delivery = %d.delivery.id, error = %e, "could not hand back a delivery of a closed lease session");
        }
    }
    notify.notify_waiters();
}

/// The executor's end of a lease session. Dropping it (the executor disconnected or
/// stopped) hands back the deliveries still in the buffer: they were leased to the
/// executor but never reached it.
struct SessionStream {
    rx: mpsc::Receiver<KernelResult<LeasedDelivery>>,
    store: Arc<dyn Store>,
    notify: Arc<Notify>,
    lease_owner: String,
    /// Counts the session in `minoots_lease_sessions` while the executor holds it.
    _open: crate::metrics::LeaseSessionGuard,
}

impl Stream for SessionStream {
    type Item = KernelResult<LeasedDelivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        self.rx.close();
        let mut unsent = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            if let Ok(d) = item {
                unsent.push(d);
            }
        }
        if unsent.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left (the process is ending): the leases expire and are rescued.
            return;
        };
        let (store, notify, owner) = (
            self.store.clone(),
            self.notify.clone(),
            std::mem::take(&mut self.lease_owner),
        );
        runtime.spawn(async move { hand_back(store.as_ref(), &notify, &owner, unsent).await });
    }
}
