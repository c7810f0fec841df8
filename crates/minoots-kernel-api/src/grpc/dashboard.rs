//! The dashboard's overview over gRPC: the conversions between the core's timer counts
//! and delivery activity and the `minoots.timer.v1` messages.

use minoots_core::records::{DeliveryActivity, DeliveryMinute, TimerCounts};

use super::pb;

pub fn counts_pb(c: &TimerCounts) -> pb::TimerCounts {
    pb::TimerCounts {
        scheduled: c.scheduled,
        fired: c.fired,
        settled: c.settled,
        failed: c.failed,
        cancelled: c.cancelled,
        capped: c.capped,
    }
}

pub fn counts_of(c: pb::TimerCounts) -> TimerCounts {
    TimerCounts {
        scheduled: c.scheduled,
        fired: c.fired,
        settled: c.settled,
        failed: c.failed,
        cancelled: c.cancelled,
        capped: c.capped,
    }
}

pub fn activity_pb(a: &DeliveryActivity) -> pb::DeliveryActivity {
    pb::DeliveryActivity {
        minutes: a
            .minutes
            .iter()
            .map(|m| pb::DeliveryMinute {
                start_us: m.start_us,
                succeeded: m.succeeded,
                retried: m.retried,
                dead: m.dead,
            })
            .collect(),
        complete: a.complete,
    }
}

pub fn activity_of(a: pb::DeliveryActivity) -> DeliveryActivity {
    DeliveryActivity {
        minutes: a
            .minutes
            .into_iter()
            .map(|m| DeliveryMinute {
                start_us: m.start_us,
                succeeded: m.succeeded,
                retried: m.retried,
                dead: m.dead,
            })
            .collect(),
        complete: a.complete,
    }
}
