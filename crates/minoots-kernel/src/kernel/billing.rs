//! Billing, for [`Kernel`]'s [`KernelApi`](minoots_kernel_api::KernelApi) methods: Stripe
//! events the control plane verified are recorded through the store (id and effect in one
//! transaction), grace periods are ended and usage handed out at the kernel's now, and the
//! key cache is emptied whenever a tier may have changed, so the new limits apply to the
//! next request. The kernel never talks to Stripe: the control plane does.

use minoots_core::billing::{
    self, BillingApplied, BillingEvent, BillingState, GraceSweep, MeterUsage,
};
use minoots_kernel_api::{KernelError, KernelResult};
use minoots_store::billing::{MAX_GRACE_EXPIRIES_PER_SWEEP, MAX_METER_ROWS_PER_READ, check_event};

use super::Kernel;
use crate::admin;
use crate::error::from_store;

pub(super) async fn record_billing_event(
    kernel: &Kernel,
    event: BillingEvent,
) -> KernelResult<BillingApplied> {
    check_event(&event).map_err(|m| KernelError::invalid("id", m))?;
    if let Some(t) = event.change.as_ref().and_then(|c| c.tenant_id.as_deref()) {
        admin::check_tenant_id(t)?;
    }
    let applied = kernel
        .store
        .record_billing_event(event)
        .await
        .map_err(from_store)?;
    if applied == BillingApplied::Applied {
        kernel.keys.invalidate();
    }
    Ok(applied)
}

pub(super) async fn billing_state(kernel: &Kernel, tenant_id: &str) -> KernelResult<BillingState> {
    admin::check_tenant_id(tenant_id)?;
    let since = billing::month_start_us(kernel.clock.now_us());
    kernel
        .store
        .billing_state(tenant_id, since)
        .await
        .map_err(from_store)
}

pub(super) async fn expire_billing_grace(kernel: &Kernel) -> KernelResult<GraceSweep> {
    let sweep = kernel
        .store
        .expire_billing_grace(MAX_GRACE_EXPIRIES_PER_SWEEP)
        .await
        .map_err(from_store)?;
    if sweep.downgraded > 0 {
        kernel.keys.invalidate();
    }
    Ok(sweep)
}

pub(super) async fn meter_usage_ready(
    kernel: &Kernel,
    limit: u32,
) -> KernelResult<Vec<MeterUsage>> {
    let limit = (limit as usize).clamp(1, MAX_METER_ROWS_PER_READ);
    let before = billing::ready_before(kernel.clock.now_us());
    kernel
        .store
        .meter_usage_ready(before, limit)
        .await
        .map_err(from_store)
}

pub(super) async fn mark_meter_sent(
    kernel: &Kernel,
    rows: Vec<(String, String, i64)>,
) -> KernelResult<u64> {
    if rows.len() > MAX_METER_ROWS_PER_READ {
        return Err(KernelError::invalid(
            "rows",
            format!("at most {MAX_METER_ROWS_PER_READ} rows per call"),
        ));
    }
    let n = kernel
        .store
        .mark_meter_sent(rows)
        .await
        .map_err(from_store)?;
    Ok(n as u64)
}
