//! Billing over gRPC: the conversions between the core's billing records and the
//! `minoots.timer.v1` messages, both ways. Nothing here decides anything; a status or
//! meter name that does not parse is refused as an invalid field.

use minoots_core::billing::{
    BillingAccount, BillingApplied, BillingChange, BillingEvent, BillingState, GraceSweep,
    MeterUsage, SubscriptionStatus,
};

use super::pb;
use crate::error::{KernelError, KernelResult};

fn status_of(s: Option<String>) -> KernelResult<Option<SubscriptionStatus>> {
    s.map(|s| {
        s.parse()
            .map_err(|m: String| KernelError::invalid("status", m))
    })
    .transpose()
}

pub fn change_pb(c: &BillingChange) -> pb::BillingChange {
    pb::BillingChange {
        tenant_id: c.tenant_id.clone(),
        customer_id: c.customer_id.clone(),
        subscription_id: c.subscription_id.clone(),
        paid_tier: c.paid_tier.clone(),
        status: c.status.map(|s| s.as_str().to_string()),
        current_period_start_us: c.current_period_start_us,
        current_period_end_us: c.current_period_end_us,
        event_created_us: c.event_created_us,
        grace_us: c.grace_us,
    }
}

pub fn change_of(c: pb::BillingChange) -> KernelResult<BillingChange> {
    Ok(BillingChange {
        tenant_id: c.tenant_id,
        customer_id: c.customer_id,
        subscription_id: c.subscription_id,
        paid_tier: c.paid_tier,
        status: status_of(c.status)?,
        current_period_start_us: c.current_period_start_us,
        current_period_end_us: c.current_period_end_us,
        event_created_us: c.event_created_us,
        grace_us: c.grace_us,
    })
}

pub fn event_pb(e: &BillingEvent) -> pb::BillingEvent {
    pb::BillingEvent {
        id: e.id.clone(),
        r#type: e.event_type.clone(),
        change: e.change.as_ref().map(change_pb),
    }
}

pub fn event_of(e: pb::BillingEvent) -> KernelResult<BillingEvent> {
    Ok(BillingEvent {
        id: e.id,
        event_type: e.r#type,
        change: e.change.map(change_of).transpose()?,
    })
}

pub fn applied_pb(a: BillingApplied) -> pb::RecordBillingEventResponse {
    let applied = match a {
        BillingApplied::Duplicate => "duplicate",
        BillingApplied::Applied => "applied",
        BillingApplied::Ignored => "ignored",
    };
    pb::RecordBillingEventResponse {
        applied: applied.into(),
    }
}

pub fn applied_of(r: pb::RecordBillingEventResponse) -> KernelResult<BillingApplied> {
    match r.applied.as_str() {
        "duplicate" => Ok(BillingApplied::Duplicate),
        "applied" => Ok(BillingApplied::Applied),
        "ignored" => Ok(BillingApplied::Ignored),
        other => Err(KernelError::Internal(format!(
            "unknown billing effect {other:?}"
        ))),
    }
}

fn account_pb(a: &BillingAccount) -> pb::BillingAccount {
    pb::BillingAccount {
        tenant_id: a.tenant_id.clone(),
        customer_id: a.customer_id.clone(),
        subscription_id: a.subscription_id.clone(),
        paid_tier: a.paid_tier.clone(),
        status: a.status.map(|s| s.as_str().to_string()),
        current_period_start_us: a.current_period_start_us,
        current_period_end_us: a.current_period_end_us,
        grace_until_us: a.grace_until_us,
        state_at_us: a.state_at_us,
        updated_at_us: a.updated_at_us,
    }
}

fn account_of(a: pb::BillingAccount) -> KernelResult<BillingAccount> {
    Ok(BillingAccount {
        tenant_id: a.tenant_id,
        customer_id: a.customer_id,
        subscription_id: a.subscription_id,
        paid_tier: a.paid_tier,
        status: status_of(a.status)?,
        current_period_start_us: a.current_period_start_us,
        current_period_end_us: a.current_period_end_us,
        grace_until_us: a.grace_until_us,
        state_at_us: a.state_at_us,
        updated_at_us: a.updated_at_us,
    })
}

pub fn state_pb(s: &BillingState) -> pb::BillingState {
    pb::BillingState {
        account: s.account.as_ref().map(account_pb),
        usage: s
            .usage
            .iter()
            .map(|(meter, value)| pb::MeterTotal {
                meter: meter.clone(),
                value: *value,
            })
            .collect(),
        usage_since_us: s.usage_since_us,
    }
}

pub fn state_of(s: pb::BillingState) -> KernelResult<BillingState> {
    Ok(BillingState {
        account: s.account.map(account_of).transpose()?,
        usage: s.usage.into_iter().map(|t| (t.meter, t.value)).collect(),
        usage_since_us: s.usage_since_us,
    })
}

pub fn sweep_pb(s: GraceSweep) -> pb::ExpireBillingGraceResponse {
    pb::ExpireBillingGraceResponse {
        downgraded: s.downgraded,
        next_grace_end_us: s.next_grace_end_us,
    }
}

pub fn sweep_of(s: pb::ExpireBillingGraceResponse) -> GraceSweep {
    GraceSweep {
        downgraded: s.downgraded,
        next_grace_end_us: s.next_grace_end_us,
    }
}

pub fn usage_pb(rows: &[MeterUsage]) -> pb::MeterUsageList {
    pb::MeterUsageList {
        usage: rows
            .iter()
            .map(|u| pb::MeterUsage {
                tenant_id: u.tenant_id.clone(),
                meter: u.meter.clone(),
                bucket_start_us: u.bucket_start_us,
                bucket_end_us: u.bucket_end_us,
                value: u.value,
                customer_id: u.customer_id.clone(),
            })
            .collect(),
    }
}

pub fn usage_of(l: pb::MeterUsageList) -> Vec<MeterUsage> {
    l.usage
        .into_iter()
        .map(|u| MeterUsage {
            tenant_id: u.tenant_id,
            meter: u.meter,
            bucket_start_us: u.bucket_start_us,
            bucket_end_us: u.bucket_end_us,
            value: u.value,
            customer_id: u.customer_id,
        })
        .collect()
}

pub fn keys_pb(rows: &[(String, String, i64)]) -> pb::MarkMeterSentRequest {
    pb::MarkMeterSentRequest {
        rows: rows
            .iter()
            .map(|(t, m, s)| pb::MeterKey {
                tenant_id: t.clone(),
                meter: m.clone(),
                bucket_start_us: *s,
            })
            .collect(),
    }
}

pub fn keys_of(r: pb::MarkMeterSentRequest) -> Vec<(String, String, i64)> {
    r.rows
        .into_iter()
        .map(|k| (k.tenant_id, k.meter, k.bucket_start_us))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_records_cross_the_wire_unchanged() {
        let event = BillingEvent {
            id: "evt_1".into(),
            event_type: "customer.subscription.updated".into(),
            change: Some(BillingChange {
                tenant_id: Some("acme".into()),
                customer_id: Some("cus_1".into()),
                subscription_id: Some("sub_1".into()),
                paid_tier: Some("team".into()),
                status: Some(SubscriptionStatus::PastDue),
                current_period_start_us: Some(1),
                current_period_end_us: Some(2),
                event_created_us: 3,
                grace_us: 4,
            }),
        };
        assert_eq!(event_of(event_pb(&event)).unwrap(), event);
        let state = BillingState {
            account: Some(BillingAccount {
                tenant_id: "acme".into(),
                customer_id: Some("cus_1".into()),
                subscription_id: None,
                paid_tier: Some("pro".into()),
                status: Some(SubscriptionStatus::Active),
                current_period_start_us: None,
                current_period_end_us: Some(9),
                grace_until_us: None,
                state_at_us: Some(3),
                updated_at_us: 5,
            }),
            usage: vec![("minoots_timers_created".into(), 3)],
            usage_since_us: 7,
        };
        assert_eq!(state_of(state_pb(&state)).unwrap(), state);
        for a in [
            BillingApplied::Duplicate,
            BillingApplied::Applied,
            BillingApplied::Ignored,
        ] {
            assert_eq!(applied_of(applied_pb(a)).unwrap(), a);
        }
        let rows = vec![("acme".to_string(), "m".to_string(), 5)];
        assert_eq!(keys_of(keys_pb(&rows)), rows);
        let mut bad = event_pb(&event);
        bad.change.as_mut().unwrap().status = Some("sleeping".into());
        assert!(event_of(bad).is_err());
    }
}
