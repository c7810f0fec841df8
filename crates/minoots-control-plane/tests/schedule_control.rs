//! Schedules changed through the REST API, over real HTTP on a manual clock: pause (runs not
//! yet fired are withdrawn), resume with and without catch-up, trigger-now, PATCH at a
//! version (future runs recomputed), delete; and the slot rules seen through the API:
//! overlap, jitter, `maxRuns`, `endAt`. No orchestrator runs here, so a run whose timer has
//! a webhook stays active (its delivery waits) — which is what the overlap cases need; the
//! webhooks name a loopback port and are never sent.

mod common;
use common::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use minoots_control_plane::ControlPlaneConfig;
use minoots_core::ManualClock;
use minoots_core::timefmt::{format_us, parse_rfc3339_us};
use serde_json::Value;

const MIN: i64 = 60_000_000;
const SEC: i64 = 1_000_000;
/// A webhook that is never sent (no orchestrator runs in these tests).
const HOOK: &str =
    r#""actionBundle": {"actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]}"#;

struct Fixture {
    s: Server,
    clock: Arc<ManualClock>,
    key: String,
    /// 2026-12-10T00:00:00Z: slots of `every` 1m fall on t0 + n minutes.
    t0: i64,
}

async fn fixture() -> Fixture {
    let t0 = parse_rfc3339_us("2026-12-10T00:00:00Z").unwrap();
    let clock = ManualClock::new(t0 + SEC);
    let s = start_with_clock(ControlPlaneConfig::default(), clock.clone()).await;
    let key = s
        .tenant_with_key("acme", "team", &["timers:read", "timers:write"])
        .await;
    Fixture { s, clock, key, t0 }
}

impl Fixture {
    async fn create(&self, body: &str) -> String {
        let r = self
            .s
            .call("POST", "/schedules", Some(&self.key), Some(body))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().unwrap().to_string()
    }

    async fn get(&self, id: &str) -> Value {
        let r = self
            .s
            .call("GET", &format!("/schedules/{id}"), Some(&self.key), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }

    async fn post(&self, path: &str, body: Option<&str>) -> Reply {
        self.s.call("POST", path, Some(&self.key), body).await
    }

    async fn runs(&self, id: &str) -> Vec<Value> {
        let r = self
            .s
            .call(
                "GET",
                &format!("/schedules/{id}/runs?limit=500"),
                Some(&self.key),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["runs"].as_array().unwrap().clone()
    }

    /// Waits until the schedule's records satisfy `done` (the dispatcher works on its own
    /// task after a clock change).
    async fn runs_until(&self, id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let runs = self.runs(id).await;
            if done(&runs) {
                return runs;
            }
            assert!(Instant::now() < deadline, "records: {runs:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moves the clock to `at_us` and waits until the slot at `slot_us` has its record.
    async fn advance(&self, id: &str, at_us: i64, slot_us: i64) -> Vec<Value> {
        self.clock.set_us(at_us);
        let slot = format_us(slot_us);
        self.runs_until(id, |r| r.iter().any(|x| x["scheduledAt"] == slot.as_str()))
            .await
    }

    async fn timer_status(&self, id: &str) -> String {
        let t = self
            .s
            .call("GET", &format!("/timers/{id}"), Some(&self.key), None)
            .await;
        assert_eq!(t.status, 200, "{}", t.text);
        t.body["status"].as_str().unwrap().to_string()
    }
}

/// `(slot, status, reason)` of each record.
fn summary(runs: &[Value]) -> Vec<(String, String, Option<String>)> {
    runs.iter()
        .map(|r| {
            (
                r["scheduledAt"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["reason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn rec(at: i64, status: &str, reason: Option<&str>) -> (String, String, Option<String>) {
    (
        format_us(at),
        status.to_string(),
        reason.map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_withdraws_runs_and_resume_catches_up_only_when_asked() {
    let f = fixture().await;
    let t0 = f.t0;
    let id = f.create(r#"{"every": "1m"}"#).await;
    // 5 s before the first slot its run's timer exists (created ahead), not yet fired.
    let runs = f.advance(&id, t0 + MIN - 5 * SEC, t0 + MIN).await;
    assert_eq!(summary(&runs), [rec(t0 + MIN, "fired", None)]);
    let ahead = runs[0]["timerId"].as_str().unwrap().to_string();
    assert_eq!(f.timer_status(&ahead).await, "scheduled");

    let paused = f.post(&format!("/schedules/{id}/pause"), None).await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    assert_eq!(paused.body["status"], "paused");
    assert_eq!(paused.body["version"], 2);
    assert_eq!(paused.body["runsFired"], 0);
    // The run created ahead is withdrawn: its timer cancelled, its record skipped(paused).
    assert_eq!(f.timer_status(&ahead).await, "cancelled");
    assert_eq!(
        summary(&f.runs(&id).await),
        [rec(t0 + MIN, "skipped", Some("paused"))]
    );
    // Pausing again changes nothing (not even the version).
    let again = f.post(&format!("/schedules/{id}/pause"), None).await;
    assert_eq!(again.body["version"], 2);

    // Slots pass while paused: each recorded skipped(paused), none fires.
    let runs = f.advance(&id, t0 + 3 * MIN + 30 * SEC, t0 + 3 * MIN).await;
    assert_eq!(
        summary(&runs),
        [
            rec(t0 + MIN, "skipped", Some("paused")),
            rec(t0 + 2 * MIN, "skipped", Some("paused")),
            rec(t0 + 3 * MIN, "skipped", Some("paused")),
        ]
    );
    // Resume without catch-up: nothing of the pause runs; the next slot fires as usual.
    let resumed = f.post(&format!("/schedules/{id}/resume"), None).await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_eq!(resumed.body["status"], "active");
    assert_eq!(resumed.body["runsFired"], 0);
    assert_eq!(resumed.body["nextRunAt"], format_us(t0 + 4 * MIN).as_str());
    let runs = f.advance(&id, t0 + 4 * MIN, t0 + 4 * MIN).await;
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[3]["status"], "fired");

    // Pause at 04:10 and resume at 06:30 with catchUp: of the paused slots (05:00, 06:00)
    // the newest fires at once (policy latest), the other stays skipped(paused).
    f.clock.set_us(t0 + 4 * MIN + 10 * SEC);
    assert_eq!(
        f.post(&format!("/schedules/{id}/pause"), None).await.status,
        200
    );
    f.advance(&id, t0 + 6 * MIN + 30 * SEC, t0 + 6 * MIN).await;
    let resumed = f
        .post(
            &format!("/schedules/{id}/resume"),
            Some(r#"{"catchUp": true}"#),
        )
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_eq!(resumed.body["runsFired"], 2);
    let runs = f.runs(&id).await;
    assert_eq!(
        summary(&runs[4..]),
        [
            rec(t0 + 5 * MIN, "skipped", Some("paused")),
            rec(t0 + 6 * MIN, "fired", None),
        ]
    );
    assert_eq!(
        runs[5]["fireAt"],
        format_us(t0 + 6 * MIN + 30 * SEC).as_str(),
        "a caught-up run fires at the resume"
    );

    // A bad resume body is refused and changes nothing.
    f.post(
        &format!("/schedules/{id}/resume"),
        Some(r#"{"catchup": true}"#),
    )
    .await
    .assert_problem(400, Some("catchup"));
    f.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_runs_once_outside_the_slots_and_delete_cancels_what_has_not_fired() {
    let f = fixture().await;
    let t0 = f.t0;
    let id = f.create(r#"{"every": "1m", "name": "tick"}"#).await;
    let trig = f.post(&format!("/schedules/{id}/trigger"), None).await;
    assert_eq!(trig.status, 201, "{}", trig.text);
    assert_eq!(trig.body["scheduleId"], id.as_str());
    assert_eq!(trig.body["scheduledAt"], format_us(t0 + SEC).as_str());
    assert_eq!(trig.body["name"], "tick");
    let timer = trig.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        trig.header("location"),
        Some(format!("/timers/{timer}").as_str())
    );
    // It fires now (no actions: it settles at once), and is not a slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.timer_status(&timer).await == "scheduled" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = f.get(&id).await;
    assert_eq!(s["runsFired"], 0);
    assert_eq!(s["version"], 1);
    assert!(f.runs(&id).await.is_empty());

    // The next slot's run is created ahead; delete cancels it and removes everything.
    let runs = f.advance(&id, t0 + MIN - 5 * SEC, t0 + MIN).await;
    let ahead = runs[0]["timerId"].as_str().unwrap().to_string();
    let del =
        f.s.call("DELETE", &format!("/schedules/{id}"), Some(&f.key), None)
            .await;
    assert_eq!(del.status, 204, "{}", del.text);
    assert_eq!(f.timer_status(&ahead).await, "cancelled");
    for path in [format!("/schedules/{id}"), format!("/schedules/{id}/runs")] {
        f.s.call("GET", &path, Some(&f.key), None)
            .await
            .assert_problem(404, None);
    }
    f.post(&format!("/schedules/{id}/trigger"), None)
        .await
        .assert_problem(404, None);
    f.s.call("DELETE", &format!("/schedules/{id}"), Some(&f.key), None)
        .await
        .assert_problem(404, None);
    // The slot passes: nothing fires for the deleted schedule.
    f.clock.set_us(t0 + 2 * MIN);
    assert_eq!(f.timer_status(&ahead).await, "cancelled");
    f.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_checks_the_version_and_recomputes_the_future_slots() {
    let f = fixture().await;
    let t0 = f.t0;
    let id = f
        .create(r#"{"every": "1m", "labels": {"team": "ops"}}"#)
        .await;
    let runs = f.advance(&id, t0 + MIN - 5 * SEC, t0 + MIN).await;
    let ahead = runs[0]["timerId"].as_str().unwrap().to_string();
    let path = format!("/schedules/{id}");

    // Refusals change nothing.
    type Refusal<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, Option<&'a str>);
    let refused: [Refusal; 7] = [
        (r#"{"version": 9, "every": "2m"}"#, &[], 409, None),
        (r#"{"every": "2m"}"#, &[], 400, Some("version")),
        (
            r#"{"version": 1, "cron": "0 0 25 * * *"}"#,
            &[],
            400,
            Some("cron"),
        ),
        (
            r#"{"version": 1, "every": "500ms"}"#,
            &[],
            400,
            Some("every"),
        ),
        (
            r#"{"version": 1, "timezone": "Mars/Base"}"#,
            &[],
            400,
            Some("timezone"),
        ),
        (
            r#"{"version": 1, "sometimes": 1}"#,
            &[],
            400,
            Some("sometimes"),
        ),
        (
            r#"{"version": 1, "every": "2m"}"#,
            &[("if-match", "\"2\"")],
            400,
            Some("version"),
        ),
    ];
    for (body, headers, status, field) in refused {
        f.s.call_with("PATCH", &path, Some(&f.key), Some(body), headers)
            .await
            .assert_problem(status, field);
    }
    assert_eq!(f.get(&id).await["version"], 1);
    assert_eq!(f.timer_status(&ahead).await, "scheduled");

    // A new interval: the run created ahead for 00:01 is withdrawn (its slot has not come),
    // and the new spec's slots follow from the change: every 2 minutes, so 00:02.
    let r =
        f.s.call_with(
            "PATCH",
            &path,
            Some(&f.key),
            Some(r#"{"every": "2m", "labels": null}"#),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["every"], "2m");
    assert!(r.body.get("labels").is_none(), "{}", r.text);
    assert_eq!(r.body["nextRunAt"], format_us(t0 + 2 * MIN).as_str());
    assert_eq!(f.timer_status(&ahead).await, "cancelled");
    assert!(f.runs(&id).await.is_empty());
    let runs = f.advance(&id, t0 + 2 * MIN, t0 + 2 * MIN).await;
    assert_eq!(summary(&runs), [rec(t0 + 2 * MIN, "fired", None)]);

    // A cron spec replaces every; the stale version is refused.
    let r =
        f.s.call(
            "PATCH",
            &path,
            Some(&f.key),
            Some(r#"{"version": 2, "cron": "0 30 * * * *"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("every").is_none(), "{}", r.text);
    assert_eq!(r.body["nextRunAt"], format_us(t0 + 30 * MIN).as_str());
    f.s.call(
        "PATCH",
        &path,
        Some(&f.key),
        Some(r#"{"version": 2, "name": "x"}"#),
    )
    .await
    .assert_problem(409, None);
    f.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runs_and_end_at_complete_a_schedule_and_patch_reopens_it() {
    let f = fixture().await;
    let t0 = f.t0;
    let capped = f.create(r#"{"every": "1m", "maxRuns": 2}"#).await;
    let ended = f
        .create(&format!(
            r#"{{"every": "1m", "endAt": "{}"}}"#,
            format_us(t0 + 3 * MIN)
        ))
        .await;
    // Minute by minute (a jump over several slots would make them missed slots).
    for n in 1..=3 {
        f.clock.set_us(t0 + n * MIN + SEC);
        f.runs_until(&ended, |r| r.len() == n as usize).await;
        f.runs_until(&capped, |r| r.len() == (n as usize).min(2))
            .await;
    }
    let ended_runs = f.runs(&ended).await;
    assert!(ended_runs.iter().all(|r| r["status"] == "fired"));
    let runs = f.runs(&capped).await;
    assert_eq!(
        summary(&runs),
        [
            rec(t0 + MIN, "fired", None),
            rec(t0 + 2 * MIN, "fired", None)
        ]
    );
    for id in [&capped, &ended] {
        let s = f.get(id).await;
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(s["nextRunAt"], Value::Null);
    }
    // A completed schedule cannot be paused, resumed or triggered.
    for verb in ["pause", "resume", "trigger"] {
        f.post(&format!("/schedules/{capped}/{verb}"), None)
            .await
            .assert_problem(409, None);
    }
    // Raising maxRuns makes it active again from now on.
    let version = f.get(&capped).await["version"].as_i64().unwrap();
    let r =
        f.s.call(
            "PATCH",
            &format!("/schedules/{capped}"),
            Some(&f.key),
            Some(&format!(r#"{{"version": {version}, "maxRuns": 3}}"#)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "active");
    // From the change on: the slot at 03:00, before it, stays unrecorded (it was not a
    // slot of the completed schedule), the next one fires and completes it again.
    assert_eq!(r.body["nextRunAt"], format_us(t0 + 4 * MIN).as_str());
    let runs = f.advance(&capped, t0 + 4 * MIN + SEC, t0 + 4 * MIN).await;
    assert_eq!(
        summary(&runs),
        [
            rec(t0 + MIN, "fired", None),
            rec(t0 + 2 * MIN, "fired", None),
            rec(t0 + 4 * MIN, "fired", None)
        ]
    );
    assert_eq!(f.get(&capped).await["status"], "completed");
    f.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_policies_decide_slots_that_come_while_a_run_is_active() {
    let f = fixture().await;
    let t0 = f.t0;
    let mut ids = Vec::new();
    for overlap in ["skip", "bufferOne", "cancelOther", "allowAll"] {
        let id = f
            .create(&format!(
                r#"{{"every": "1m", "overlap": "{overlap}", {HOOK}}}"#
            ))
            .await;
        ids.push((overlap, id));
    }
    // Each run's delivery waits (no orchestrator), so the first run stays active.
    for step in 1..=3 {
        f.clock.set_us(t0 + step * MIN + SEC);
        for (_, id) in &ids {
            f.runs_until(id, |r| r.len() == step as usize).await;
        }
    }
    for (overlap, id) in &ids {
        let got = summary(&f.runs(id).await);
        let want = match *overlap {
            "skip" => vec![
                rec(t0 + MIN, "fired", None),
                rec(t0 + 2 * MIN, "skipped", Some("overlap")),
                rec(t0 + 3 * MIN, "skipped", Some("overlap")),
            ],
            "bufferOne" => vec![
                rec(t0 + MIN, "fired", None),
                rec(t0 + 2 * MIN, "buffered", None),
                rec(t0 + 3 * MIN, "skipped", Some("overlap")),
            ],
            // The active run already fired, so nothing is left to cancel: each slot fires.
            _ => vec![
                rec(t0 + MIN, "fired", None),
                rec(t0 + 2 * MIN, "fired", None),
                rec(t0 + 3 * MIN, "fired", None),
            ],
        };
        assert_eq!(got, want, "overlap {overlap}");
    }
    f.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_each_run_as_the_preview_says() {
    let f = fixture().await;
    let t0 = f.t0;
    let id = f.create(r#"{"every": "1m", "jitter": "40s"}"#).await;
    let preview =
        f.s.call(
            "GET",
            &format!("/schedules/{id}/preview?count=3"),
            Some(&f.key),
            None,
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    let previewed: Vec<(i64, i64)> = preview.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                parse_rfc3339_us(r["at"].as_str().unwrap()).unwrap(),
                parse_rfc3339_us(r["fireAt"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let mut delayed = 0;
    for (at, fire_at) in &previewed {
        assert!(
            *fire_at >= *at && *fire_at < *at + 40 * SEC,
            "{}",
            preview.text
        );
        delayed += usize::from(fire_at > at);
    }
    assert!(delayed >= 2, "jitter delays: {previewed:?}");
    // Each slot's run is due exactly when the preview said. Slot by slot: each run's timer
    // is created ahead of its slot, then fires (no actions: it settles) within the jitter.
    for n in 1..=3 {
        let runs = f.advance(&id, t0 + n * MIN - 5 * SEC, t0 + n * MIN).await;
        f.clock.set_us(t0 + n * MIN + 45 * SEC);
        let timer = runs[n as usize - 1]["timerId"]
            .as_str()
            .unwrap()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while f.timer_status(&timer).await == "scheduled" {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Each record shows when its run fired, as its timer does.
    let runs = f.runs(&id).await;
    let recorded: Vec<(i64, i64)> = runs
        .iter()
        .map(|r| {
            (
                parse_rfc3339_us(r["scheduledAt"].as_str().unwrap()).unwrap(),
                parse_rfc3339_us(r["fireAt"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(recorded, previewed);
    for r in &runs {
        let timer = r["timerId"].as_str().unwrap();
        let t =
            f.s.call("GET", &format!("/timers/{timer}"), Some(&f.key), None)
                .await;
        assert_eq!(t.body["fireAt"], r["fireAt"]);
        assert_eq!(t.body["firedAt"], r["firedAt"]);
        assert!(r["firedAt"].is_string(), "{r}");
    }
    f.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_status_and_label() {
    let f = fixture().await;
    let a = f
        .create(r#"{"every": "1m", "labels": {"team": "ops"}}"#)
        .await;
    let b = f
        .create(r#"{"every": "1m", "labels": {"team": "web"}}"#)
        .await;
    f.post(&format!("/schedules/{b}/pause"), None).await;
    let ids = |query: &'static str| {
        let f = &f;
        async move {
            let r =
                f.s.call("GET", &format!("/schedules?{query}"), Some(&f.key), None)
                    .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.body["schedules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("status=paused").await, [b.as_str()]);
    assert_eq!(ids("status=active").await, [a.as_str()]);
    assert_eq!(ids("label=team:ops").await, [a.as_str()]);
    assert!(ids("label=team:ops&status=paused").await.is_empty());
    assert_eq!(ids("status=&label=").await.len(), 2);
    for (query, field) in [("status=sleeping", "status"), ("label=team", "label")] {
        f.s.call("GET", &format!("/schedules?{query}"), Some(&f.key), None)
            .await
            .assert_problem(400, Some(field));
    }
    f.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_the_server_does_not_allow_are_refused_on_create_and_patch() {
    let f = fixture().await;
    // This server enables no command actions (the operator's default).
    let command = r#""actionBundle": {"actions": [{"type": "command", "command": "rm"}]}"#;
    f.s.call(
        "POST",
        "/schedules",
        Some(&f.key),
        Some(&format!(r#"{{"every": "1m", {command}}}"#)),
    )
    .await
    .assert_problem(400, Some("actionBundle.actions[0].type"));
    let id = f.create(r#"{"every": "1m"}"#).await;
    f.s.call(
        "PATCH",
        &format!("/schedules/{id}"),
        Some(&f.key),
        Some(&format!(r#"{{"version": 1, {command}}}"#)),
    )
    .await
    .assert_problem(400, Some("actionBundle.actions[0].type"));
    assert_eq!(f.get(&id).await["version"], 1);
    let list = f.s.call("GET", "/schedules", Some(&f.key), None).await;
    assert_eq!(list.body["schedules"].as_array().unwrap().len(), 1);
    f.s.stop().await;
}
