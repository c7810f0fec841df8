//! What an attempt's report does to its delivery and timer: success (and settling the
//! timer with its last delivery), a retry after a jittered backoff, or death.

use crate::model::{
    AttemptOutcome, DeathReason, Delivery, DeliveryStatus, ForbiddenTransition, TimerStatus,
};
use crate::retry::RetryPolicy;

use super::kill::{KillPlan, plan_kill};

/// What the store read for a report, in the transaction that will write it. The report
/// has been fenced already: `delivery` is in flight under the reporter's lease.
#[derive(Debug, Clone, Copy)]
pub struct ReportRead<'a> {
    pub delivery: &'a Delivery,
    pub timer_status: TimerStatus,
    /// The timer's other deliveries of the same occurrence that have not succeeded.
    pub others_unfinished: u64,
}

/// What a report will do, decided (and checked) before anything is written, so a refused
/// report has nothing to roll back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportPlan {
    /// The delivery succeeded; `settles_timer` when it was the last unfinished one of a
    /// timer that has not failed (a failed timer stays failed when a later action works).
    Succeed { settles_timer: bool },
    /// The delivery is pending again, due `delay_ms` from now.
    Retry {
        next_attempt_at_us: i64,
        delay_ms: u64,
    },
    /// The delivery dies: a permanent failure, or a retryable one with no attempt left.
    Kill(KillPlan),
}

impl ReportPlan {
    /// The delivery's status once the plan is written.
    pub fn delivery_status(&self) -> DeliveryStatus {
        match self {
            ReportPlan::Succeed { .. } => DeliveryStatus::Succeeded,
            ReportPlan::Retry { .. } => DeliveryStatus::Pending,
            ReportPlan::Kill(_) => DeliveryStatus::Dead,
        }
    }

    /// When the next attempt is due, if the plan schedules one.
    pub fn next_attempt_at_us(&self) -> Option<i64> {
        match self {
            ReportPlan::Retry {
                next_attempt_at_us, ..
            } => Some(*next_attempt_at_us),
            _ => None,
        }
    }

    /// The timer's status once the plan is written, given its status `before`.
    pub fn timer_status_after(&self, before: TimerStatus) -> TimerStatus {
        match self {
            ReportPlan::Succeed {
                settles_timer: true,
            } => TimerStatus::Settled,
            ReportPlan::Succeed {
                settles_timer: false,
            }
            | ReportPlan::Retry { .. } => before,
            // It fails now, or it had failed already.
            ReportPlan::Kill(_) => TimerStatus::Failed,
        }
    }
}

/// Plans a report of `outcome` for the delivery in `read`. `now_us` is the batch's time;
/// `unit_random`, uniform in `[0, 1)`, jitters the backoff; `retry_after_ms` is the
/// server's hint. `retry_policy` reads the timer's retry policy and is called only when a
/// retry is planned.
pub fn plan_report<E: From<ForbiddenTransition>>(
    read: &ReportRead<'_>,
    outcome: AttemptOutcome,
    retry_after_ms: Option<u64>,
    now_us: i64,
    unit_random: f64,
    retry_policy: impl FnOnce() -> Result<RetryPolicy, E>,
) -> Result<ReportPlan, E> {
    let d = read.delivery;
    match outcome {
        AttemptOutcome::Succeeded => {
            d.status.check_transition(d.id, DeliveryStatus::Succeeded)?;
            let settles_timer =
                read.others_unfinished == 0 && read.timer_status != TimerStatus::Failed;
            if settles_timer {
                read.timer_status
                    .check_transition(d.timer_id, TimerStatus::Settled)?;
            }
            Ok(ReportPlan::Succeed { settles_timer })
        }
        AttemptOutcome::Retryable if d.attempt < d.max_attempts => {
            let delay_ms = retry_policy()?.backoff_ms(d.attempt, unit_random, retry_after_ms);
            d.status.check_transition(d.id, DeliveryStatus::Pending)?;
            Ok(ReportPlan::Retry {
                next_attempt_at_us: now_us + (delay_ms as i64) * 1_000,
                delay_ms,
            })
        }
        AttemptOutcome::Retryable | AttemptOutcome::Permanent => {
            let reason = if outcome == AttemptOutcome::Permanent {
                DeathReason::PermanentFailure
            } else {
                DeathReason::RetriesExhausted
            };
            Ok(ReportPlan::Kill(plan_kill(
                d,
                Some(read.timer_status),
                reason,
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{T0, in_flight};

    const MS: i64 = 1_000;

    /// A retry policy of 3 attempts, 1 s doubling up to 10 s.
    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: Some(3),
            initial_backoff_ms: Some(1_000),
            max_backoff_ms: Some(10_000),
            multiplier: Some(2.0),
        }
    }

    /// Plans a report with the policy above; panics if the policy is read when the plan
    /// needs none (`needs_policy == false`).
    fn plan(
        d: &Delivery,
        timer_status: TimerStatus,
        others_unfinished: u64,
        outcome: AttemptOutcome,
        retry_after_ms: Option<u64>,
        unit_random: f64,
    ) -> Result<ReportPlan, ForbiddenTransition> {
        let read = ReportRead {
            delivery: d,
            timer_status,
            others_unfinished,
        };
        plan_report(&read, outcome, retry_after_ms, T0, unit_random, || {
            Ok::<_, ForbiddenTransition>(policy())
        })
    }

    #[test]
    fn a_success_settles_the_timer_with_its_last_delivery_only() {
        use TimerStatus::*;
        // (timer status, other unfinished deliveries, settles, timer status after)
        let table = [
            (Fired, 0, true, Settled),
            (Fired, 1, false, Fired),
            (Fired, 5, false, Fired),
            // A failed timer stays failed when another of its actions succeeds later.
            (Failed, 0, false, Failed),
            (Failed, 2, false, Failed),
        ];
        for (timer, others, settles_timer, after) in table {
            let p = plan(
                &in_flight(1, 3),
                timer,
                others,
                AttemptOutcome::Succeeded,
                None,
                0.5,
            )
            .unwrap();
            assert_eq!(
                p,
                ReportPlan::Succeed { settles_timer },
                "{timer}, {others}"
            );
            assert_eq!(p.delivery_status(), DeliveryStatus::Succeeded);
            assert_eq!(p.timer_status_after(timer), after);
            assert_eq!(p.next_attempt_at_us(), None);
        }
    }

    #[test]
    fn a_retryable_failure_with_attempts_left_backs_off_within_the_ceiling() {
        // (attempt that failed, unit random, Retry-After ms, delay ms)
        let table = [
            // The ceiling after attempt 1 is 1 s, after attempt 2 is 2 s.
            (1, 0.0, None, 0),
            (1, 0.999, None, 999),
            (2, 0.0, None, 0),
            (2, 0.999, None, 1_998),
            (2, 0.5, None, 1_000),
            // Retry-After is a floor...
            (1, 0.0, Some(5_000), 5_000),
            (2, 0.999, Some(1_500), 1_998),
            // ...capped at the policy's maximum backoff.
            (2, 0.0, Some(60_000), 10_000),
        ];
        for (attempt, random, retry_after, delay_ms) in table {
            let p = plan(
                &in_flight(attempt, 3),
                TimerStatus::Fired,
                1,
                AttemptOutcome::Retryable,
                retry_after,
                random,
            )
            .unwrap();
            assert_eq!(
                p,
                ReportPlan::Retry {
                    next_attempt_at_us: T0 + delay_ms as i64 * MS,
                    delay_ms
                },
                "attempt {attempt}, random {random}, Retry-After {retry_after:?}"
            );
            assert_eq!(p.delivery_status(), DeliveryStatus::Pending);
            assert_eq!(p.timer_status_after(TimerStatus::Fired), TimerStatus::Fired);
            assert_eq!(p.next_attempt_at_us(), Some(T0 + delay_ms as i64 * MS));
        }
    }

    #[test]
    fn a_failure_with_no_retry_left_kills_the_delivery_and_fails_the_timer() {
        use AttemptOutcome::*;
        use DeathReason::*;
        use TimerStatus::*;
        // (attempt, max attempts, outcome, timer status, reason, fails the timer)
        let table = [
            (3, 3, Retryable, Fired, RetriesExhausted, true),
            // An attempt past the budget (a lowered budget) dies as well.
            (4, 3, Retryable, Fired, RetriesExhausted, true),
            (1, 3, Permanent, Fired, PermanentFailure, true),
            (3, 3, Permanent, Fired, PermanentFailure, true),
            // An earlier action's death failed the timer already.
            (3, 3, Retryable, Failed, RetriesExhausted, false),
            (1, 3, Permanent, Failed, PermanentFailure, false),
        ];
        for (attempt, max, outcome, timer, reason, fail_timer) in table {
            let d = in_flight(attempt, max);
            let read = ReportRead {
                delivery: &d,
                timer_status: timer,
                others_unfinished: 0,
            };
            let p = plan_report(
                &read,
                outcome,
                None,
                T0,
                0.5,
                || -> Result<_, ForbiddenTransition> { panic!("a death needs no retry policy") },
            )
            .unwrap();
            assert_eq!(
                p,
                ReportPlan::Kill(KillPlan { reason, fail_timer }),
                "attempt {attempt}/{max}, {outcome:?}, {timer}"
            );
            assert_eq!(p.delivery_status(), DeliveryStatus::Dead);
            assert_eq!(p.timer_status_after(timer), TimerStatus::Failed);
            assert_eq!(p.next_attempt_at_us(), None);
        }
    }

    #[test]
    fn the_retry_policy_is_read_only_for_a_retry() {
        let mut reads = 0;
        for outcome in [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Retryable,
            AttemptOutcome::Permanent,
        ] {
            let d = in_flight(1, 3);
            let read = ReportRead {
                delivery: &d,
                timer_status: TimerStatus::Fired,
                others_unfinished: 0,
            };
            plan_report(&read, outcome, None, T0, 0.5, || {
                reads += 1;
                Ok::<_, ForbiddenTransition>(policy())
            })
            .unwrap();
        }
        assert_eq!(reads, 1);
    }

    #[test]
    fn a_report_the_state_machines_forbid_is_refused_before_any_write() {
        use AttemptOutcome::*;
        use TimerStatus::*;
        let pending = Delivery {
            status: DeliveryStatus::Pending,
            ..in_flight(1, 3)
        };
        // (delivery, timer status, outcome, refused change)
        let table = [
            // A settled timer cannot settle again nor fail.
            (
                in_flight(1, 3),
                Settled,
                Succeeded,
                ("timer", "settled", "settled"),
            ),
            (
                in_flight(3, 3),
                Cancelled,
                Retryable,
                ("timer", "cancelled", "failed"),
            ),
            // A delivery that is not in flight has no attempt to report.
            (
                pending.clone(),
                Fired,
                Succeeded,
                ("delivery", "pending", "succeeded"),
            ),
            (
                pending.clone(),
                Fired,
                Retryable,
                ("delivery", "pending", "pending"),
            ),
            (pending, Fired, Permanent, ("delivery", "pending", "dead")),
        ];
        for (d, timer, outcome, refused) in table {
            let e = plan(&d, timer, 0, outcome, None, 0.5).unwrap_err();
            assert_eq!((e.kind, e.from, e.to), refused, "{timer}, {outcome:?}");
        }
    }

    #[test]
    fn a_policy_that_cannot_be_read_refuses_the_retry() {
        let d = in_flight(1, 3);
        let read = ReportRead {
            delivery: &d,
            timer_status: TimerStatus::Fired,
            others_unfinished: 0,
        };
        #[derive(Debug, PartialEq)]
        enum Trouble {
            Unreadable,
            Forbidden,
        }
        impl From<ForbiddenTransition> for Trouble {
            fn from(_: ForbiddenTransition) -> Self {
                Trouble::Forbidden
            }
        }
        let out = plan_report(&read, AttemptOutcome::Retryable, None, T0, 0.5, || {
            Err(Trouble::Unreadable)
        });
        assert_eq!(out, Err(Trouble::Unreadable));
    }
}
