//! The leases this executor holds, kept alive by a heartbeat.
//!
//! Every delivery leased from the kernel is entered here when it arrives and leaves when
//! its attempt is reported or it is handed back. A heartbeat renews every entry each third
//! of the lease TTL ([`MAX_RENEW_LEASES`] per call). A lease the kernel names as lost, or
//! one not renewed before its deadline (the kernel unreachable), is *gone*: the attempt
//! running under it is stopped [`LEASE_MARGIN`] before the kernel could hand the delivery
//! to another executor. So leases can be short (6 s by default) — a killed executor's
//! deliveries run again within seconds — and a long webhook still never runs beside a
//! second copy of itself unless a process crashed.
//!
//! Deadlines live on this process's monotonic clock. A renewal sent at local instant `t`
//! makes the kernel extend the lease to its own now (which is not before `t`) plus the
//! TTL, so `t + ttl` never ends after the kernel's expiry, whatever the offset between the
//! two clocks. Only a lease received from the stream carries an absolute kernel time; it
//! is converted with the offset measured by the last heartbeat, less that measurement's
//! uncertainty (half its round trip). Skew the executor can observe is thus tolerated
//! exactly; what it cannot observe is a difference in clock *rates*, which over one lease
//! TTL is far below the margin.
//!
//! Must never: hold the book's lock across an await; renew a lease it has not received.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minoots_core::records::LeasedDelivery;
use minoots_core::{Clock, DeliveryId};
use minoots_kernel_api::{KernelApi, MAX_RENEW_LEASES, RenewLeasesRequest};
use tokio::sync::watch;
use tokio::time::Instant;

/// An attempt is stopped this long before its lease would end, and is not started with
/// less than this (plus one heartbeat interval) left.
pub const LEASE_MARGIN: Duration = Duration::from_millis(500);

/// Without a measurement, the kernel's clock is assumed to be ours, give or take this
/// (in microseconds): the lease of a delivery received before the first heartbeat answered
/// counts as this much shorter.
const UNMEASURED_SKEW_US: i64 = 250_000;

/// The kernel's clock seen from here: kernel time ≈ local time + `offset_us`, to within
/// `uncertainty_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skew {
    pub offset_us: i64,
    pub uncertainty_us: i64,
}

impl Skew {
    /// The estimate from one exchange: a request sent at local `sent_us`, answered at
    /// local `received_us`, stamped by the kernel with `kernel_us` somewhere in between.
    pub fn measure(sent_us: i64, received_us: i64, kernel_us: i64) -> Self {
        let half_rtt = (received_us - sent_us).max(0) / 2;
        Self {
            offset_us: kernel_us - (sent_us + half_rtt),
            uncertainty_us: half_rtt,
        }
    }

    /// How much of a lease ending at kernel time `expires_at_us` is surely left at local
    /// time `local_now_us`.
    pub fn lease_left(&self, expires_at_us: i64, local_now_us: i64) -> Duration {
        let left = expires_at_us - (local_now_us + self.offset_us) - self.uncertainty_us;
        Duration::from_micros(left.max(0) as u64)
    }
}

struct Entry {
    attempt: u32,
    /// When the lease surely ends, on the local clock; `None` once it is lost.
    deadline: watch::Sender<Option<Instant>>,
}

/// The leases held by one executor.
pub struct LeaseBook {
    owner: String,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<DeliveryId, Entry>>,
    skew: Mutex<Option<Skew>>,
}

/// One held lease, as seen by the task working on its delivery.
pub struct Held {
    deadline: watch::Receiver<Option<Instant>>,
}

impl Held {
    /// How much of the lease is surely left now.
    pub fn left(&self) -> Duration {
        match *self.deadline.borrow() {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Whether the lease is lost or within [`LEASE_MARGIN`] of its end.
    pub fn is_gone(&self) -> bool {
        self.left() <= LEASE_MARGIN
    }

    /// Resolves when the lease is gone: the kernel named it lost, or it comes within
    /// [`LEASE_MARGIN`] of its end without having been renewed.
    pub async fn gone(&mut self) {
        loop {
            let deadline = *self.deadline.borrow_and_update();
            let Some(at) = deadline else { return };
            tokio::select! {
                _ = tokio::time::sleep_until(at.checked_sub(LEASE_MARGIN).unwrap_or(at)) => return,
                changed = self.deadline.changed() => {
                    if changed.is_err() {
                        // Left the book (reported or handed back): nothing renews it now.
                        let rest = self.left().saturating_sub(LEASE_MARGIN);
                        tokio::time::sleep(rest).await;
                        return;
                    }
                }
            }
        }
    }
}

impl LeaseBook {
    pub fn new(owner: impl Into<String>, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            owner: owner.into(),
            ttl,
            clock,
            entries: Mutex::new(HashMap::new()),
            skew: Mutex::new(None),
        }
    }

    /// How often the heartbeat renews: a third of the TTL, so one lost heartbeat costs
    /// nothing and a second still leaves a third of the lease.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// The last measured skew, if any.
    pub fn skew(&self) -> Option<Skew> {
        *self.skew.lock().expect("lease book poisoned")
    }

    /// Enters a delivery just received from the lease stream.
    pub fn enter(&self, d: &LeasedDelivery) -> Held {
        let skew = self.skew().unwrap_or(Skew {
            offset_us: 0,
            uncertainty_us: UNMEASURED_SKEW_US,
        });
        let left = match d.delivery.lease_expires_at_us {
            Some(at) => skew.lease_left(at, self.clock.now_us()),
            None => Duration::ZERO,
        };
        let (tx, rx) = watch::channel(Some(Instant::now() + left));
        self.entries.lock().expect("lease book poisoned").insert(
            d.delivery.id,
            Entry {
                attempt: d.delivery.attempt,
                deadline: tx,
            },
        );
        Held { deadline: rx }
    }

    /// Removes a delivery whose attempt was reported or that was handed back.
    pub fn leave(&self, id: DeliveryId) {
        self.entries
            .lock()
            .expect("lease book poisoned")
            .remove(&id);
    }

    /// How many leases are held.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("lease book poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn held(&self) -> Vec<(DeliveryId, u32)> {
        self.entries
            .lock()
            .expect("lease book poisoned")
            .iter()
            .map(|(id, e)| (*id, e.attempt))
            .collect()
    }

    /// Renews every held lease once (and measures the skew, even when nothing is held
    /// but no measurement was made yet). A failed call changes nothing: the leases keep
    /// their deadlines and are gone when those pass.
    pub async fn renew(&self, kernel: &dyn KernelApi) {
        let held = self.held();
        if held.is_empty() && self.skew().is_some() {
            return;
        }
        let batches: Vec<&[(DeliveryId, u32)]> = if held.is_empty() {
            vec![&[]]
        } else {
            held.chunks(MAX_RENEW_LEASES).collect()
        };
        for batch in batches {
            let sent = Instant::now();
            let sent_us = self.clock.now_us();
            let request = RenewLeasesRequest {
                lease_owner: self.owner.clone(),
                lease_ttl_ms: self.ttl.as_millis() as u32,
                leases: batch.to_vec(),
            };
            match kernel.renew_leases(request).await {
                Ok(renewal) => {
                    let skew = Skew::measure(sent_us, self.clock.now_us(), renewal.now_us);
                    *self.skew.lock().expect("lease book poisoned") = Some(skew);
                    let entries = self.entries.lock().expect("lease book poisoned");
                    for (id, attempt) in batch {
                        let Some(e) = entries.get(id).filter(|e| e.attempt == *attempt) else {
                            continue;
                        };
                        if renewal.lost.contains(id) {
                            e.deadline.send_replace(None);
                        } else {
                            e.deadline.send_replace(Some(sent + self.ttl));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, leases = batch.len(), "renewing leases failed; attempts stop if their leases run out");
                }
            }
        }
    }

    /// Renews every [`LeaseBook::renew_every`] until `stop` turns true.
    pub async fn heartbeat(&self, kernel: Arc<dyn KernelApi>, mut stop: watch::Receiver<bool>) {
        loop {
            self.renew(kernel.as_ref()).await;
            tokio::select! {
                _ = tokio::time::sleep(self.renew_every()) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skew_estimate_never_overstates_what_is_left_of_a_lease() {
        // The kernel's clock runs 3 s ahead; the exchange took 40 ms.
        let skew = Skew::measure(1_000_000, 1_040_000, 4_030_000);
        assert_eq!(skew.offset_us, 3_010_000);
        assert_eq!(skew.uncertainty_us, 20_000);
        // A lease ending at kernel time 10 s, seen at local time 2 s (kernel 5 s, give or
        // take 20 ms): at most 5 s are left, and the estimate says 4.97 s.
        let left = skew.lease_left(10_000_000, 2_000_000);
        assert_eq!(left, Duration::from_micros(4_970_000));
        // Whichever instant of the exchange the kernel stamped, the true remainder is at
        // least the estimate.
        for stamp_local in [1_000_000, 1_020_000, 1_040_000] {
            let kernel_now_at_local_2s = 2_000_000 + (4_030_000 - stamp_local);
            assert!(Duration::from_micros((10_000_000 - kernel_now_at_local_2s) as u64) >= left);
        }
        // A lease already over is zero, never negative.
        assert_eq!(skew.lease_left(4_000_000, 2_000_000), Duration::ZERO);
    }
}
