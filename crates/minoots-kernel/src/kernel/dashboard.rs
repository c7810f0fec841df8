//! The dashboard's overview, for [`Kernel`]'s [`KernelApi`](minoots_kernel_api::KernelApi)
//! methods: a tenant's timers by status and its delivery outcomes per minute. The kernel
//! checks the request and decides the window from its own clock (whole UTC minutes, the
//! current one last); the store reads within the bounds of [`minoots_store::dashboard`].

use minoots_core::records::{
    DeliveryActivity, MAX_ACTIVITY_EVENTS_SCANNED, MAX_ACTIVITY_MINUTES, MAX_COUNTED_PER_STATUS,
    TimerCounts,
};
use minoots_kernel_api::{KernelError, KernelResult};
use minoots_store::dashboard::MINUTE_US;

use super::Kernel;
use crate::admin;
use crate::error::from_store;

pub(super) async fn timer_counts(kernel: &Kernel, tenant_id: &str) -> KernelResult<TimerCounts> {
    admin::check_tenant_id(tenant_id)?;
    kernel
        .store
        .timer_counts(tenant_id, MAX_COUNTED_PER_STATUS)
        .await
        .map_err(from_store)
}

/// The start of the window of `minutes` whole minutes whose last one holds `now_us`.
fn window_start_us(now_us: i64, minutes: u32) -> i64 {
    now_us.div_euclid(MINUTE_US) * MINUTE_US - (i64::from(minutes) - 1) * MINUTE_US
}

pub(super) async fn delivery_activity(
    kernel: &Kernel,
    tenant_id: &str,
    minutes: u32,
) -> KernelResult<DeliveryActivity> {
    admin::check_tenant_id(tenant_id)?;
    if !(1..=MAX_ACTIVITY_MINUTES).contains(&minutes) {
        return Err(KernelError::invalid(
            "minutes",
            format!("must be between 1 and {MAX_ACTIVITY_MINUTES}"),
        ));
    }
    let from_us = window_start_us(kernel.clock.now_us(), minutes);
    kernel
        .store
        .delivery_activity(tenant_id, from_us, minutes, MAX_ACTIVITY_EVENTS_SCANNED)
        .await
        .map_err(from_store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_ends_with_the_current_minute() {
        let now = 10 * MINUTE_US + 5;
        assert_eq!(window_start_us(now, 1), 10 * MINUTE_US);
        assert_eq!(window_start_us(now, 3), 8 * MINUTE_US);
        assert_eq!(window_start_us(10 * MINUTE_US, 60), -49 * MINUTE_US);
    }
}
