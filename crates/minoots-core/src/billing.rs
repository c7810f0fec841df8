//! Billing policy: what a tenant's tier is given the state of its Stripe subscription and
//! the time, whether a subscription change is newer than the one already applied, how
//! usage is cut into metering buckets and which buckets are ready to be sent. Pure
//! functions of their arguments, `now` always passed in (so the grace period and the
//! "bucket closed" rule are tested with a manual clock); the store applies what these
//! decide in the same transaction that records the Stripe event.
//!
//! What these functions must never do: read a clock, reach Stripe, or let a subscription
//! state older than the one applied win (Stripe retries for days and does not keep order).

use serde::{Deserialize, Serialize};

/// The tier of a tenant without a paid subscription (canceled, unpaid, grace ended).
pub const FREE_TIER: &str = "free";
/// The tiers that can be bought; each has its own Stripe price.
pub const PAID_TIERS: [&str; 3] = ["pro", "team", "enterprise"];
/// The meter of timers created (one per acknowledged create; an idempotent replay counts
/// nothing). Also the Stripe meter's `event_name`.
pub const METER_TIMERS_CREATED: &str = "minoots_timers_created";
/// The meter of deliveries that succeeded (one per delivery, never per attempt: retries
/// are MINOOTS's cost). Also the Stripe meter's `event_name`.
pub const METER_DELIVERIES_SUCCEEDED: &str = "minoots_deliveries_succeeded";
/// Every meter, in the order they are shown.
pub const METERS: [&str; 2] = [METER_TIMERS_CREATED, METER_DELIVERIES_SUCCEEDED];
/// The default metering bucket: usage is summed per tenant, meter and UTC hour.
pub const DEFAULT_METER_BUCKET_US: i64 = 3_600 * 1_000_000;
/// How long after its end a bucket is sent: a write batch takes its time once, before
/// its commit, so a count may land in a bucket a little after the bucket's end by the
/// clock; and kernels of one database may disagree on the time by that much.
pub const METER_SETTLE_US: i64 = 1_000_000;

/// A Stripe subscription's `status`, as Stripe names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Trialing,
    PastDue,
    Unpaid,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Paused,
}

impl SubscriptionStatus {
    /// Whether a subscription in this status still pays for (or may still pay for) its
    /// tier: active, trialing, or past due within its grace period.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Trialing => "trialing",
            Self::PastDue => "past_due",
            Self::Unpaid => "unpaid",
            Self::Canceled => "canceled",
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Paused => "paused",
        }
    }
}

impl std::str::FromStr for SubscriptionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "active" => Self::Active,
            "trialing" => Self::Trialing,
            "past_due" => Self::PastDue,
            "unpaid" => Self::Unpaid,
            "canceled" => Self::Canceled,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "paused" => Self::Paused,
            other => return Err(format!("unknown subscription status {other:?}")),
        })
    }
}

/// How long usage rows are kept after their bucket ended: longer than a yearly billing
/// period (`GET /billing` sums the current period) and far beyond the 35 days for which
/// Stripe accepts a meter event, so a row this old is useless whether it was sent or not.
pub const METER_USAGE_RETENTION_US: i64 = 400 * 86_400 * 1_000_000;

/// A tenant's link to Stripe and the subscription state last applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingAccount {
    pub tenant_id: String,
    /// Stripe's `cus_…`, reused by every later checkout and by the portal.
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    /// The tier the subscription's price buys (`None` before a subscription is known).
    pub paid_tier: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub current_period_start_us: Option<i64>,
    pub current_period_end_us: Option<i64>,
    /// While `past_due`: when the paid tier ends unless the payment succeeds.
    pub grace_until_us: Option<i64>,
    /// The Stripe `created` time (µs) of the event whose subscription state is applied:
    /// an event older than this changes nothing.
    pub state_at_us: Option<i64>,
    pub updated_at_us: i64,
}

/// What a verified Stripe event says about a tenant's billing. `None` fields say
/// nothing (the stored value stays).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillingChange {
    /// The tenant, when the event names it (`client_reference_id`, subscription metadata).
    pub tenant_id: Option<String>,
    /// The customer, which finds the tenant when the event does not name it.
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub paid_tier: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub current_period_start_us: Option<i64>,
    pub current_period_end_us: Option<i64>,
    /// The event's `created` time in µs: orders subscription states.
    pub event_created_us: i64,
    /// The grace period a failed payment opens, in µs (the operator's setting).
    pub grace_us: i64,
}

/// A verified Stripe event to record, with its effect if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingEvent {
    /// Stripe's `evt_…`: an id already recorded is not applied again.
    pub id: String,
    pub event_type: String,
    pub change: Option<BillingChange>,
}

/// What recording a Stripe event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingApplied {
    /// The event id was recorded before: nothing changed.
    Duplicate,
    /// Recorded; the account (and the tenant's tier) changed.
    Applied,
    /// Recorded; no effect (no change in it, an unknown tenant or customer, or a state
    /// older than the one applied).
    Ignored,
}

/// One tenant's usage in one bucket of one meter, as counted by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterUsage {
    pub tenant_id: String,
    pub meter: String,
    pub bucket_start_us: i64,
    pub bucket_end_us: i64,
    pub value: i64,
    /// The tenant's Stripe customer when the usage was read (`None`: nothing to send to).
    pub customer_id: Option<String>,
}

/// A tenant's account and its usage since the start of its current period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillingState {
    pub account: Option<BillingAccount>,
    /// (meter, total) for every meter in [`METERS`], 0 when nothing was counted.
    pub usage: Vec<(String, i64)>,
    /// Where `usage` starts counting.
    pub usage_since_us: i64,
}

/// What a grace sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraceSweep {
    /// Tenants moved to the free tier because their grace period ended.
    pub downgraded: u64,
    /// The next end of a grace period still running, when there is one.
    pub next_grace_end_us: Option<i64>,
}

/// The tier a tenant has now: the paid tier while the subscription is active or
/// trialing, and while it is past due until its grace period ends; the free tier
/// otherwise (unpaid, canceled, incomplete, paused, grace over).
pub fn effective_tier(
    status: Option<SubscriptionStatus>,
    paid_tier: Option<&str>,
    grace_until_us: Option<i64>,
    now_us: i64,
) -> &str {
    use SubscriptionStatus::*;
    let Some(paid) = paid_tier else {
        return FREE_TIER;
    };
    match status {
        Some(Active | Trialing) => paid,
        Some(PastDue) if grace_until_us.is_some_and(|g| now_us < g) => paid,
        _ => FREE_TIER,
    }
}

/// When the grace period of a subscription in `status` ends: opened at `now_us` when it
/// becomes past due, kept while it stays past due (a second failed payment does not
/// extend it), and gone once it is anything else.
pub fn grace_until(
    status: Option<SubscriptionStatus>,
    previous: Option<i64>,
    now_us: i64,
    grace_us: i64,
) -> Option<i64> {
    match status {
        Some(SubscriptionStatus::PastDue) => {
            Some(previous.unwrap_or_else(|| now_us.saturating_add(grace_us.max(0))))
        }
        _ => None,
    }
}

/// The account after `change`, or `None` when the change is older than the state applied
/// (then nothing is written but the event id). A change that only links a customer
/// (no status) is applied whatever its age, since links never go stale. A change that
/// ends a subscription other than the account's live one (an old subscription cancelled
/// after the tenant bought a new one) changes nothing either: the newer event must not
/// take the tenant off the subscription it pays for.
pub fn plan_account(
    current: Option<&BillingAccount>,
    tenant_id: &str,
    change: &BillingChange,
    now_us: i64,
) -> Option<BillingAccount> {
    let mut next = current.cloned().unwrap_or(BillingAccount {
        tenant_id: tenant_id.to_string(),
        customer_id: None,
        subscription_id: None,
        paid_tier: None,
        status: None,
        current_period_start_us: None,
        current_period_end_us: None,
        grace_until_us: None,
        state_at_us: None,
        updated_at_us: now_us,
    });
    let carries_state = change.status.is_some() || change.paid_tier.is_some();
    let older = next
        .state_at_us
        .is_some_and(|applied| change.event_created_us < applied);
    let ends_another = match (&next.subscription_id, &change.subscription_id) {
        (Some(followed), Some(named)) => {
            followed != named
                && next.status.is_some_and(SubscriptionStatus::is_live)
                && change.status.is_some_and(|s| !s.is_live())
        }
        _ => false,
    };
    // A link alone is applied whatever its age; with a state, only when the state is.
    if change.customer_id.is_some()
        && (!carries_state || next.customer_id.is_none() || !(older || ends_another))
    {
        next.customer_id = change.customer_id.clone();
    }
    if carries_state {
        if older || ends_another {
            // Not the state to apply: only a link the account lacks is kept.
            return (current.is_none_or(|c| c.customer_id != next.customer_id)).then(|| {
                next.updated_at_us = now_us;
                next
            });
        }
        if change.subscription_id.is_some() {
            next.subscription_id = change.subscription_id.clone();
        }
        if change.paid_tier.is_some() {
            next.paid_tier = change.paid_tier.clone();
        }
        if change.status.is_some() {
            next.status = change.status;
        }
        if change.current_period_start_us.is_some() {
            next.current_period_start_us = change.current_period_start_us;
        }
        if change.current_period_end_us.is_some() {
            next.current_period_end_us = change.current_period_end_us;
        }
        next.grace_until_us =
            grace_until(next.status, next.grace_until_us, now_us, change.grace_us);
        next.state_at_us = Some(change.event_created_us);
    } else if change.subscription_id.is_some() && next.subscription_id.is_none() {
        next.subscription_id = change.subscription_id.clone();
    }
    if current == Some(&next) {
        return None;
    }
    next.updated_at_us = now_us;
    Some(next)
}

/// The tier `account` gives its tenant at `now_us`.
pub fn account_tier(account: &BillingAccount, now_us: i64) -> &str {
    effective_tier(
        account.status,
        account.paid_tier.as_deref(),
        account.grace_until_us,
        now_us,
    )
}

/// The bucket holding `now_us`: `[start, end)` in µs, buckets of `bucket_us` aligned on
/// the Unix epoch (so hours are UTC hours).
pub fn meter_bucket(now_us: i64, bucket_us: i64) -> (i64, i64) {
    let len = bucket_us.max(1);
    let start = now_us.div_euclid(len) * len;
    (start, start + len)
}

/// Whether a bucket ending at `bucket_end_us` is closed for good at `now_us` and may be
/// sent: no write can add to it any more.
pub fn bucket_ready(bucket_end_us: i64, now_us: i64) -> bool {
    bucket_end_us.saturating_add(METER_SETTLE_US) <= now_us
}

/// The latest bucket end that is ready at `now_us` (see [`bucket_ready`]).
pub fn ready_before(now_us: i64) -> i64 {
    now_us.saturating_sub(METER_SETTLE_US)
}

/// The Stripe meter event `identifier` of one tenant's usage of one meter in one bucket:
/// the same for every send of it, so Stripe counts it once however often it is sent.
/// Stripe allows 100 characters; tenant ids are at most 64.
pub fn meter_identifier(tenant_id: &str, meter: &str, bucket_start_us: i64) -> String {
    let short = match meter {
        METER_TIMERS_CREATED => "tc",
        METER_DELIVERIES_SUCCEEDED => "ds",
        other => other,
    };
    format!("{tenant_id}:{short}:{}", bucket_start_us / 1_000_000)
}

/// The start of the UTC month holding `now_us`, in µs: where usage is counted from for
/// a tenant whose billing period is not known.
pub fn month_start_us(now_us: i64) -> i64 {
    const DAY_US: i64 = 86_400 * 1_000_000;
    let days = now_us.div_euclid(DAY_US);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), then back to the
    // first of that month.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5; // 0-based
    (days - day_of_month) * DAY_US
}

#[cfg(test)]
mod tests {
    use super::SubscriptionStatus::*;
    use super::*;

    const H: i64 = 3_600 * 1_000_000;

    /// Status, paid tier, grace end, now, and the tier expected.
    type Case = (
        Option<SubscriptionStatus>,
        Option<&'static str>,
        Option<i64>,
        i64,
        &'static str,
    );

    #[test]
    fn the_effective_tier_follows_status_grace_and_now() {
        let cases: &[Case] = &[
            (Some(Active), Some("pro"), None, 0, "pro"),
            (Some(Trialing), Some("team"), None, 0, "team"),
            (Some(PastDue), Some("pro"), Some(10), 9, "pro"),
            (Some(PastDue), Some("pro"), Some(10), 10, "free"),
            (Some(PastDue), Some("pro"), None, 0, "free"),
            (Some(Unpaid), Some("pro"), Some(10), 0, "free"),
            (Some(Canceled), Some("pro"), None, 0, "free"),
            (Some(Incomplete), Some("pro"), None, 0, "free"),
            (Some(Paused), Some("pro"), None, 0, "free"),
            (None, Some("pro"), None, 0, "free"),
            (Some(Active), None, None, 0, "free"),
        ];
        for (status, paid, grace, now, want) in cases {
            assert_eq!(
                effective_tier(*status, *paid, *grace, *now),
                *want,
                "{status:?} {paid:?} grace {grace:?} at {now}"
            );
        }
    }

    #[test]
    fn grace_opens_once_and_closes_when_paid() {
        assert_eq!(grace_until(Some(PastDue), None, 100, 50), Some(150));
        assert_eq!(grace_until(Some(PastDue), Some(150), 140, 50), Some(150));
        assert_eq!(grace_until(Some(Active), Some(150), 140, 50), None);
        assert_eq!(grace_until(Some(Canceled), None, 140, 50), None);
    }

    fn change(status: SubscriptionStatus, tier: &str, at: i64) -> BillingChange {
        BillingChange {
            tenant_id: Some("acme".into()),
            customer_id: Some("cus_1".into()),
            subscription_id: Some("sub_1".into()),
            paid_tier: Some(tier.into()),
            status: Some(status),
            current_period_start_us: None,
            current_period_end_us: Some(at + 30 * 24 * H),
            event_created_us: at,
            grace_us: 3 * 24 * H,
        }
    }

    #[test]
    fn an_older_state_changes_nothing_and_a_newer_one_wins() {
        let team = plan_account(None, "acme", &change(Active, "team", 20), 100).unwrap();
        assert_eq!(account_tier(&team, 100), "team");
        // An older `updated(pro)` arrives after: ignored.
        assert_eq!(
            plan_account(Some(&team), "acme", &change(Active, "pro", 10), 101),
            None
        );
        // The same time is applied (Stripe's `created` has whole seconds).
        let again = plan_account(Some(&team), "acme", &change(Active, "pro", 20), 102).unwrap();
        assert_eq!(account_tier(&again, 102), "pro");
        // Nothing new: no write.
        assert_eq!(
            plan_account(Some(&again), "acme", &change(Active, "pro", 20), 103),
            None
        );
    }

    #[test]
    fn an_old_subscription_ending_does_not_end_the_one_paid_for() {
        // sub_1 went unpaid; the tenant bought sub_2 (team).
        let unpaid = plan_account(None, "acme", &change(Unpaid, "pro", 10), 100).unwrap();
        let second = BillingChange {
            subscription_id: Some("sub_2".into()),
            ..change(Active, "team", 20)
        };
        let team = plan_account(Some(&unpaid), "acme", &second, 101).unwrap();
        assert_eq!(team.subscription_id.as_deref(), Some("sub_2"));
        // Later, sub_1 is cancelled: a newer event, about a subscription no longer followed.
        assert_eq!(
            plan_account(Some(&team), "acme", &change(Canceled, "pro", 30), 102),
            None
        );
        // sub_2's own cancellation still ends it.
        let ended = BillingChange {
            subscription_id: Some("sub_2".into()),
            ..change(Canceled, "team", 40)
        };
        let free = plan_account(Some(&team), "acme", &ended, 103).unwrap();
        assert_eq!(account_tier(&free, 103), "free");
        // A new live subscription takes over from a live one (the newer purchase wins).
        let third = BillingChange {
            subscription_id: Some("sub_3".into()),
            ..change(Active, "pro", 50)
        };
        let pro = plan_account(Some(&team), "acme", &third, 104).unwrap();
        assert_eq!(
            (pro.subscription_id.as_deref(), account_tier(&pro, 104)),
            (Some("sub_3"), "pro")
        );
    }

    #[test]
    fn an_older_event_does_not_replace_the_customer() {
        let pro = plan_account(None, "acme", &change(Active, "pro", 20), 100).unwrap();
        let older = BillingChange {
            customer_id: Some("cus_old".into()),
            ..change(Active, "pro", 10)
        };
        assert_eq!(plan_account(Some(&pro), "acme", &older, 101), None);
    }

    #[test]
    fn a_failed_payment_keeps_the_tier_until_grace_ends_then_payment_restores_it() {
        let pro = plan_account(None, "acme", &change(Active, "pro", 1), 10).unwrap();
        let failed = plan_account(Some(&pro), "acme", &change(PastDue, "pro", 2), 20).unwrap();
        let grace_end = 20 + 3 * 24 * H;
        assert_eq!(failed.grace_until_us, Some(grace_end));
        assert_eq!(account_tier(&failed, grace_end - 1), "pro");
        assert_eq!(account_tier(&failed, grace_end), "free");
        // A second failure does not extend the grace period.
        let twice = plan_account(Some(&failed), "acme", &change(PastDue, "pro", 3), 30).unwrap();
        assert_eq!(twice.grace_until_us, Some(grace_end));
        let paid = plan_account(
            Some(&twice),
            "acme",
            &change(Active, "pro", 4),
            grace_end + 5,
        )
        .unwrap();
        assert_eq!(paid.grace_until_us, None);
        assert_eq!(account_tier(&paid, grace_end + 5), "pro");
        let deleted = plan_account(Some(&paid), "acme", &change(Canceled, "pro", 5), 0).unwrap();
        assert_eq!(account_tier(&deleted, 0), "free");
    }

    #[test]
    fn a_link_without_state_keeps_the_state() {
        let pro = plan_account(None, "acme", &change(Active, "pro", 5), 10).unwrap();
        let link = BillingChange {
            customer_id: Some("cus_2".into()),
            event_created_us: 1,
            ..Default::default()
        };
        let linked = plan_account(Some(&pro), "acme", &link, 11).unwrap();
        assert_eq!(linked.customer_id.as_deref(), Some("cus_2"));
        assert_eq!(linked.state_at_us, Some(5));
        assert_eq!(account_tier(&linked, 11), "pro");
    }

    #[test]
    fn buckets_are_aligned_and_ready_once_closed_and_settled() {
        assert_eq!(meter_bucket(H + 5, H), (H, 2 * H));
        assert_eq!(meter_bucket(H, H), (H, 2 * H));
        assert_eq!(meter_bucket(-1, H), (-H, 0));
        assert!(!bucket_ready(2 * H, 2 * H));
        assert!(!bucket_ready(2 * H, 2 * H + METER_SETTLE_US - 1));
        assert!(bucket_ready(2 * H, 2 * H + METER_SETTLE_US));
        assert_eq!(ready_before(2 * H + METER_SETTLE_US), 2 * H);
    }

    #[test]
    fn a_month_starts_on_its_first_day_at_midnight_utc() {
        let at = |s: &str| jiff::Timestamp::from_str(s).unwrap().as_microsecond();
        use std::str::FromStr;
        for (now, want) in [
            ("2026-12-07T05:20:00Z", "2026-12-01T00:00:00Z"),
            ("2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"),
            ("2024-02-29T23:59:59Z", "2024-02-01T00:00:00Z"),
            ("2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"),
            ("1969-12-31T12:00:00Z", "1969-12-01T00:00:00Z"),
        ] {
            assert_eq!(month_start_us(at(now)), at(want), "{now}");
        }
    }

    #[test]
    fn identifiers_name_tenant_meter_and_bucket() {
        assert_eq!(
            meter_identifier("acme", METER_TIMERS_CREATED, 1_700_000_000_000_000),
            "acme:tc:1700000000"
        );
        assert_eq!(
            meter_identifier("acme", METER_DELIVERIES_SUCCEEDED, 3_600_000_000),
            "acme:ds:3600"
        );
        let longest = meter_identifier(&"t".repeat(64), METER_TIMERS_CREATED, i64::MAX);
        assert!(longest.len() <= 100, "{}", longest.len());
    }
}
