//! Creating timers in PostgreSQL: every create of a group commit as one, in a handful of
//! statements whatever their number — lock the tenants, read the idempotency keys and the
//! usage they need, decide each create in memory with the store's plan module
//! (`crate::plan`: the new timer's invariant, key reuse, quotas), then write every admitted
//! timer, its usage and its event with one multi-row statement each. One create's refusal
//! (quota, key mismatch, a broken timer) is decided before anything is written and leaves
//! the others untouched; a call creating many timers is admitted whole or not at all.
//!
//! **Exact across handles.** Quotas and idempotency keys are judged on what the database
//! holds, so two handles creating for one tenant at once must not both judge on the state
//! before either committed. Every create therefore first takes a transaction-level
//! advisory lock per tenant ([`TENANT_LOCK_CLASS`], the tenant's hash), in ascending
//! order of the hashes, all in one statement, and reads only then: a second create of the
//! tenant waits for the first to commit and, its reads starting after the wait, sees the
//! first's timers, keys and counts (READ COMMITTED gives each statement a fresh snapshot).
//! The ascending order means creates never deadlock on these locks; creates run first in
//! their group (`writer.rs`), so they take them before any row lock. Two tenants whose
//! hashes collide merely share a lock. Cancels and fires only lower the pending count,
//! which can only make a refusal stale by the timers they removed, never admit too many.

use std::collections::{BTreeMap, HashMap};

use minoots_core::{NewEvent, Timer, TimerId, TimerStatus};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::errors::{TxError, TxResult, unique_violation};
use super::rows::{TIMER_COLUMNS, col, timer_cols, timer_from_row};
use super::tx::{OpFuture, Reply, WriteOp, WriteTx};
use crate::plan::{KeyReuse, check_new_timer, check_quotas, key_reuse};
use crate::types::*;

/// The first key of the advisory locks taken per tenant by creates: "MNTC" in ASCII.
pub(super) const TENANT_LOCK_CLASS: i32 = 0x4d4e_5443;
/// Tenants hash into this many create locks, so a group of creates takes at most this
/// many advisory locks however many tenants it serves: PostgreSQL's lock table holds
/// `max_locks_per_transaction` × `max_connections` (6,400 by default) for every session
/// at once. Tenants that share a lock only make each other's creates wait, which groups
/// on several handles do anyway for the event log's counter row.
const TENANT_LOCK_SLOTS: u32 = 256;

/// One caller's create (one timer with options, or many timers), queued for the writer.
pub(super) struct CreateJob {
    timers: Vec<Timer>,
    options: CreateOptions,
    reply: Reply<Vec<CreateOutcome>>,
}

impl CreateJob {
    pub(super) fn new(
        timers: Vec<Timer>,
        options: CreateOptions,
    ) -> (
        Box<Self>,
        oneshot::Receiver<StoreResult<Vec<CreateOutcome>>>,
    ) {
        let (reply, rx) = Reply::new();
        let job = Box::new(Self {
            timers,
            options,
            reply,
        });
        (job, rx)
    }
}

impl WriteOp for CreateJob {
    /// Alone: the create as a group of one.
    fn run<'w, 'c>(&'w mut self, w: &'w mut WriteTx<'c>) -> OpFuture<'w, ()> {
        Box::pin(async move {
            let result = match run_creates(w, &mut [&mut *self]).await {
                Ok(()) => self.reply.kept.take().unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "a create ended without a result".into(),
                    ))
                }),
                Err(e) => return self.reply.keep(Err(e)),
            };
            self.reply.keep(result.map_err(TxError::Store))
        })
    }

    fn answer(self: Box<Self>, ended: StoreResult<()>) {
        self.reply.send(ended);
    }
}

/// Runs `jobs` as one create (see the module comment); each keeps its outcome. An error
/// means the transaction cannot go on (the writer then runs each create alone).
pub(super) async fn run_creates(w: &mut WriteTx<'_>, jobs: &mut [&mut CreateJob]) -> TxResult<()> {
    let outcomes = {
        let requests: Vec<(&[Timer], &CreateOptions)> = jobs
            .iter()
            .map(|j| (j.timers.as_slice(), &j.options))
            .collect();
        create_all(w, &requests).await?
    };
    for (job, outcome) in jobs.iter_mut().zip(outcomes) {
        job.reply.kept = Some(outcome);
    }
    Ok(())
}

/// What the batch will write, built create by create.
#[derive(Default)]
struct Admitted<'a> {
    /// New timers with the fingerprint stored with their key.
    new: Vec<(Timer, Option<&'a [u8; 32]>)>,
    /// (tenant, key) of the new timers that hold a key: the index of the holder.
    keys: HashMap<(String, String), usize>,
    /// Stored timers whose expired key moves to a new timer.
    cleared: Vec<TimerId>,
    /// New timers of an earlier create whose key expired and moved on (caller-given
    /// creation times can be old): index, key and fingerprint, to undo a refusal.
    moved: Vec<(usize, String, Option<&'a [u8; 32]>)>,
    /// Timers admitted per (tenant, UTC day), and per tenant.
    per_day: BTreeMap<(String, i64), u64>,
    per_tenant: BTreeMap<String, u64>,
}

/// Stored timers holding idempotency keys, by (tenant, key), with the fingerprint
/// stored with each key.
type KeyHolders = HashMap<(String, String), (Timer, Option<Vec<u8>>)>;

/// What was read before deciding: key holders and usage.
struct Read {
    holders: KeyHolders,
    usage: HashMap<(String, i64), TenantUsage>,
    now_us: i64,
}

/// Who holds an idempotency key.
enum Holder<'r> {
    Stored(&'r Timer, Option<&'r [u8]>),
    /// A timer admitted earlier in this batch, by index.
    New(usize),
}

/// Where the batch stood before a create: what to undo when it is refused.
struct Mark {
    new: usize,
    cleared: usize,
    moved: usize,
}

impl<'a> Admitted<'a> {
    /// Decides one create; on success its timers join the batch, on refusal nothing does.
    fn admit(
        &mut self,
        timers: &'a [Timer],
        options: &'a CreateOptions,
        read: &Read,
    ) -> StoreResult<Vec<CreateOutcome>> {
        timers.iter().try_for_each(check_new_timer)?;
        let mark = Mark {
            new: self.new.len(),
            cleared: self.cleared.len(),
            moved: self.moved.len(),
        };
        let result: StoreResult<Vec<CreateOutcome>> = timers
            .iter()
            .map(|t| self.admit_one(t, options, read))
            .collect();
        if result.is_err() {
            self.undo(mark);
        }
        result
    }

    fn admit_one(
        &mut self,
        t: &'a Timer,
        options: &'a CreateOptions,
        read: &Read,
    ) -> StoreResult<CreateOutcome> {
        let given = options.idempotency_fingerprint.as_ref();
        if let Some(key) = t.idempotency_key.as_deref()
            && let Some(holder) = self.holder(&t.tenant_id, key, read)
        {
            let (existing, stored_fp) = match &holder {
                Holder::Stored(timer, fp) => (*timer, *fp),
                Holder::New(i) => (&self.new[*i].0, self.new[*i].1.map(|f| f.as_slice())),
            };
            let given_fp = given.map(|g| g.as_slice());
            match key_reuse(existing.created_at_us, stored_fp, given_fp, read.now_us) {
                KeyReuse::ReturnExisting => {
                    return Ok(CreateOutcome {
                        timer: existing.clone(),
                        created: false,
                    });
                }
                KeyReuse::Mismatch => {
                    return Err(StoreError::IdempotencyMismatch {
                        timer_id: existing.id,
                    });
                }
                // The key will name the new timer, once every check passed.
                KeyReuse::Expired => match holder {
                    Holder::Stored(timer, _) => self.cleared.push(timer.id),
                    Holder::New(i) => {
                        let (timer, fp) = &mut self.new[i];
                        let key = timer.idempotency_key.take().unwrap_or_default();
                        self.moved.push((i, key, fp.take()));
                    }
                },
            }
        }
        let (tenant, day) = (&t.tenant_id, utc_day(t.created_at_us));
        check_quotas(options, || Ok(self.usage(tenant, day, read)))?;
        if let Some(key) = &t.idempotency_key {
            self.keys
                .insert((tenant.clone(), key.clone()), self.new.len());
        }
        *self.per_day.entry((tenant.clone(), day)).or_default() += 1;
        *self.per_tenant.entry(tenant.clone()).or_default() += 1;
        let fingerprint = given.filter(|_| t.idempotency_key.is_some());
        self.new.push((t.clone(), fingerprint));
        Ok(CreateOutcome {
            timer: t.clone(),
            created: true,
        })
    }

    /// The holder of `key`: a timer of this batch, else a stored one whose key has not
    /// moved on.
    fn holder<'r>(&self, tenant: &str, key: &str, read: &'r Read) -> Option<Holder<'r>> {
        let k = (tenant.to_string(), key.to_string());
        if let Some(&i) = self.keys.get(&k) {
            return Some(Holder::New(i));
        }
        let (timer, fp) = read.holders.get(&k)?;
        (!self.cleared.contains(&timer.id)).then_some(Holder::Stored(timer, fp.as_deref()))
    }

    /// The tenant's usage as it will be with everything admitted so far.
    fn usage(&self, tenant: &str, day: i64, read: &Read) -> TenantUsage {
        let key = (tenant.to_string(), day);
        let stored = read.usage.get(&key).copied().unwrap_or_default();
        TenantUsage {
            created_today: stored.created_today + self.per_day.get(&key).copied().unwrap_or(0),
            pending: stored.pending + self.per_tenant.get(tenant).copied().unwrap_or(0),
        }
    }

    /// Takes back what was admitted since `mark`.
    fn undo(&mut self, mark: Mark) {
        for (t, _) in self.new.drain(mark.new..) {
            if let Some(key) = t.idempotency_key {
                self.keys.remove(&(t.tenant_id.clone(), key));
            }
            let day = utc_day(t.created_at_us);
            if let Some(n) = self.per_day.get_mut(&(t.tenant_id.clone(), day)) {
                *n -= 1;
            }
            if let Some(n) = self.per_tenant.get_mut(&t.tenant_id) {
                *n -= 1;
            }
        }
        for (i, key, fp) in self.moved.drain(mark.moved..).rev() {
            let (timer, stored_fp) = &mut self.new[i];
            self.keys.insert((timer.tenant_id.clone(), key.clone()), i);
            timer.idempotency_key = Some(key);
            *stored_fp = fp;
        }
        self.cleared.truncate(mark.cleared);
    }
}

/// Creates the timers of every request (see the module comment); one result per request.
/// Creates `timers` inside another write (a schedule's dispatch), without quotas.
pub(super) async fn create_in(
    w: &mut WriteTx<'_>,
    timers: &[Timer],
) -> TxResult<Vec<CreateOutcome>> {
    let options = CreateOptions::default();
    let mut out = create_all(w, &[(timers, &options)]).await?;
    let created = out.pop().unwrap_or_else(|| {
        Err(StoreError::Unavailable(
            "a create returned no result".into(),
        ))
    })?;
    Ok(created)
}

async fn create_all<'a>(
    w: &mut WriteTx<'_>,
    requests: &[(&'a [Timer], &'a CreateOptions)],
) -> TxResult<Vec<StoreResult<Vec<CreateOutcome>>>> {
    let all = || requests.iter().flat_map(|(timers, _)| timers.iter());
    lock_tenants(w, all().map(|t| t.tenant_id.as_str())).await?;
    let read = Read {
        holders: key_holders(w, all()).await?,
        usage: usage(w, requests).await?,
        now_us: w.now_us,
    };
    let mut admitted = Admitted::default();
    let results: Vec<_> = requests
        .iter()
        .map(|(timers, options)| admitted.admit(timers, options, &read))
        .collect();
    if !admitted.new.is_empty() {
        write(w, &admitted).await?;
    }
    Ok(results)
}

/// A tenant's create lock: FNV-1a of its id (32 bits) modulo [`TENANT_LOCK_SLOTS`], the
/// same in every process.
fn tenant_lock_key(tenant: &str) -> i32 {
    let hash = tenant.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash % TENANT_LOCK_SLOTS) as i32
}

/// Takes the create lock of each tenant, in ascending order of keys, in one statement.
pub(super) async fn lock_tenants(
    w: &mut WriteTx<'_>,
    tenants: impl Iterator<Item = &str>,
) -> TxResult<()> {
    let mut keys: Vec<i32> = tenants.map(tenant_lock_key).collect();
    keys.sort_unstable();
    keys.dedup();
    w.db()
        .execute(
            "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int4[]) AS k",
            &[&TENANT_LOCK_CLASS, &keys],
        )
        .await?;
    Ok(())
}

/// The stored timers holding the keys of `timers`, with the fingerprints stored with them.
async fn key_holders<'t>(
    w: &mut WriteTx<'_>,
    timers: impl Iterator<Item = &'t Timer>,
) -> TxResult<KeyHolders> {
    let (tenants, keys): (Vec<&str>, Vec<&str>) = timers
        .filter_map(|t| Some((t.tenant_id.as_str(), t.idempotency_key.as_deref()?)))
        .unzip();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = w
        .db()
        .query(
            concat!(
                "SELECT ",
                timer_cols!(),
                ", idempotency_fingerprint FROM timers
                  WHERE idempotency_key IS NOT NULL
                    AND (tenant_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
            ),
            &[&tenants, &keys],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let t = timer_from_row(r)?;
            let key = t.idempotency_key.clone().unwrap_or_default();
            Ok(((t.tenant_id.clone(), key), (t, col(r, TIMER_COLUMNS)?)))
        })
        .collect()
}

/// The usage of every (tenant, day) a request with quotas creates in.
async fn usage(
    w: &mut WriteTx<'_>,
    requests: &[(&[Timer], &CreateOptions)],
) -> TxResult<HashMap<(String, i64), TenantUsage>> {
    let mut wanted: Vec<(&str, i64)> = requests
        .iter()
        .filter(|(_, o)| o.max_per_day.is_some() || o.max_pending.is_some())
        .flat_map(|(timers, _)| timers.iter())
        .map(|t| (t.tenant_id.as_str(), utc_day(t.created_at_us)))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let (tenants, days): (Vec<&str>, Vec<i64>) = wanted.into_iter().unzip();
    let rows = w
        .db()
        .query(
            // One primary-key lookup per row, whatever the planner thinks of the tables'
            // sizes (a join may scan a whole table that grew since it was last analyzed).
            "SELECT u.tenant, u.day,
                    (SELECT created FROM tenant_daily WHERE tenant_id = u.tenant AND day = u.day),
                    (SELECT pending FROM tenant_pending WHERE tenant_id = u.tenant)
               FROM unnest($1::text[], $2::bigint[]) AS u(tenant, day)",
            &[&tenants, &days],
        )
        .await?;
    let count = |r, i| col::<Option<i64>>(r, i).map(|n| n.unwrap_or(0).max(0) as u64);
    rows.iter()
        .map(|r| {
            let usage = TenantUsage {
                created_today: count(r, 2)?,
                pending: count(r, 3)?,
            };
            Ok(((col(r, 0)?, col(r, 1)?), usage))
        })
        .collect()
}

/// Writes what was admitted: moved keys, timers, usage and events.
async fn write(w: &mut WriteTx<'_>, a: &Admitted<'_>) -> TxResult<()> {
    if !a.cleared.is_empty() {
        let ids: Vec<Uuid> = a.cleared.iter().map(|id| id.0).collect();
        w.db()
            .execute(
                "UPDATE timers SET idempotency_key = NULL, idempotency_fingerprint = NULL
                  WHERE id = ANY ($1)",
                &[&ids],
            )
            .await?;
    }
    insert_timers(w, &a.new).await?;
    // Counts taken back by a refusal are 0: nothing to write for them.
    let day_rows: Vec<(&str, i64, i64)> = a
        .per_day
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|((t, d), n)| (t.as_str(), *d, *n as i64))
        .collect();
    let tenants: Vec<&str> = day_rows.iter().map(|r| r.0).collect();
    let days: Vec<i64> = day_rows.iter().map(|r| r.1).collect();
    let counts: Vec<i64> = day_rows.iter().map(|r| r.2).collect();
    w.db()
        .execute(
            "INSERT INTO tenant_daily AS d (tenant_id, day, created)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
             ON CONFLICT (tenant_id, day) DO UPDATE SET created = d.created + EXCLUDED.created",
            &[&tenants, &days, &counts],
        )
        .await?;
    let (tenants, counts): (Vec<&str>, Vec<i64>) = a
        .per_tenant
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (t.as_str(), *n as i64))
        .unzip();
    w.db()
        .execute(
            "INSERT INTO tenant_pending AS p (tenant_id, pending)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (tenant_id) DO UPDATE SET pending = p.pending + EXCLUDED.pending",
            &[&tenants, &counts],
        )
        .await?;
    let created: Vec<(&str, i64)> = a
        .per_tenant
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (t.as_str(), *n as i64))
        .collect();
    super::billing::add_metered(w, minoots_core::billing::METER_TIMERS_CREATED, &created).await?;
    for (t, _) in &a.new {
        w.append_event(NewEvent::timer_scheduled(t));
    }
    Ok(())
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> TxResult<String> {
    serde_json::to_string(v).map_err(|e| TxError::Store(StoreError::Corrupt(e.to_string())))
}

/// Inserts timers in one statement.
async fn insert_timers(w: &mut WriteTx<'_>, new: &[(Timer, Option<&[u8; 32]>)]) -> TxResult<()> {
    let ids: Vec<Uuid> = new.iter().map(|(t, _)| t.id.0).collect();
    let tenants: Vec<&str> = new.iter().map(|(t, _)| t.tenant_id.as_str()).collect();
    let names: Vec<&str> = new.iter().map(|(t, _)| t.name.as_str()).collect();
    let requested_by: Vec<Option<&str>> =
        new.iter().map(|(t, _)| t.requested_by.as_deref()).collect();
    let statuses: Vec<&str> = new.iter().map(|(t, _)| t.status.as_str()).collect();
    let created_at: Vec<i64> = new.iter().map(|(t, _)| t.created_at_us).collect();
    let fire_at: Vec<i64> = new.iter().map(|(t, _)| t.fire_at_us).collect();
    let duration_ms: Vec<Option<i64>> = new.iter().map(|(t, _)| t.duration_ms).collect();
    let fired_at: Vec<Option<i64>> = new.iter().map(|(t, _)| t.fired_at_us).collect();
    let settled_at: Vec<Option<i64>> = new.iter().map(|(t, _)| t.settled_at_us).collect();
    let cancelled_at: Vec<Option<i64>> = new.iter().map(|(t, _)| t.cancelled_at_us).collect();
    let reasons: Vec<Option<&str>> = new
        .iter()
        .map(|(t, _)| t.cancel_reason.as_deref())
        .collect();
    let metadata = new
        .iter()
        .map(|(t, _)| to_json(&t.metadata))
        .collect::<TxResult<Vec<_>>>()?;
    let labels = new
        .iter()
        .map(|(t, _)| to_json(&t.labels))
        .collect::<TxResult<Vec<_>>>()?;
    let bundles = new
        .iter()
        .map(|(t, _)| to_json(&t.action_bundle))
        .collect::<TxResult<Vec<_>>>()?;
    let keys: Vec<Option<&str>> = new
        .iter()
        .map(|(t, _)| t.idempotency_key.as_deref())
        .collect();
    let fingerprints: Vec<Option<&[u8]>> =
        new.iter().map(|(_, f)| f.map(|f| f.as_slice())).collect();
    let versions: Vec<i64> = new.iter().map(|(t, _)| t.version).collect();
    let schedules: Vec<Option<Uuid>> = new
        .iter()
        .map(|(t, _)| t.schedule.map(|l| l.id.0))
        .collect();
    let slots: Vec<Option<i64>> = new
        .iter()
        .map(|(t, _)| t.schedule.map(|l| l.scheduled_at_us))
        .collect();
    let traceparents: Vec<Option<&str>> =
        new.iter().map(|(t, _)| t.traceparent.as_deref()).collect();
    let inserted = w
        .db()
        .execute(
            "INSERT INTO timers (id, tenant_id, name, requested_by, status, created_at, fire_at,
                    duration_ms, fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels,
                    action_bundle, idempotency_key, idempotency_fingerprint, version, schedule_id,
                    scheduled_at, traceparent)
             SELECT id, tenant_id, name, requested_by, status, created_at, fire_at, duration_ms,
                    fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels::jsonb,
                    action_bundle, idempotency_key, idempotency_fingerprint, version, schedule_id,
                    scheduled_at, traceparent
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                           $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
                           $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                           $17::bytea[], $18::bigint[], $19::uuid[], $20::bigint[], $21::text[])
                 AS t(id, tenant_id, name, requested_by, status, created_at, fire_at, duration_ms,
                      fired_at, settled_at, cancelled_at, cancel_reason, metadata, labels,
                      action_bundle, idempotency_key, idempotency_fingerprint, version,
                      schedule_id, scheduled_at, traceparent)",
            &[
                &ids,
                &tenants,
                &names,
                &requested_by,
                &statuses,
                &created_at,
                &fire_at,
                &duration_ms,
                &fired_at,
                &settled_at,
                &cancelled_at,
                &reasons,
                &metadata,
                &labels,
                &bundles,
                &keys,
                &fingerprints,
                &versions,
                &schedules,
                &slots,
                &traceparents,
            ],
        )
        .await;
    match inserted {
        Ok(_) => {
            for (t, _) in new {
                if t.status == TimerStatus::Scheduled {
                    w.announce_due(t.fire_at_us, t.id.0);
                }
            }
            Ok(())
        }
        Err(e) => match unique_violation(&e) {
            // The tenant locks make this impossible for creates of this backend; another
            // writer of the same database could still race.
            Some("timers_idempotency") => Err(TxError::Retry(
                "a concurrent create took the same idempotency key",
            )),
            Some("timers_pkey") => Err(StoreError::AlreadyExists(format!(
                "a timer with the id {}",
                if new.len() == 1 {
                    new[0].0.id.to_string()
                } else {
                    "of one of these timers".to_string()
                }
            ))
            .into()),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{TENANT_LOCK_SLOTS, tenant_lock_key};

    #[test]
    fn a_tenant_has_one_lock_key_everywhere_and_the_keys_are_bounded() {
        // FNV-1a of the empty string and of "a": fixed values, so every process agrees.
        assert_eq!(
            tenant_lock_key(""),
            (0x811c_9dc5_u32 % TENANT_LOCK_SLOTS) as i32
        );
        assert_eq!(
            tenant_lock_key("a"),
            (0xe40c_292c_u32 % TENANT_LOCK_SLOTS) as i32
        );
        let keys: std::collections::BTreeSet<i32> = (0..10_000)
            .map(|i| tenant_lock_key(&format!("t{i}")))
            .collect();
        assert_eq!(
            keys.len(),
            TENANT_LOCK_SLOTS as usize,
            "every slot used, no more"
        );
        assert!(
            keys.iter()
                .all(|k| (0..TENANT_LOCK_SLOTS as i32).contains(k))
        );
    }
}
