//! The MCP server driven by a real MCP client (the official Python SDK, `mcp` on PyPI)
//! against a live `minoots serve --demo`: over stdio (`minoots mcp --url --api-key`) and
//! over streamable HTTP (`/mcp` on the control plane). The client initializes, lists the
//! tools, creates a 1 s timer and waits for it (with progress), cancels another, gets a
//! tool error naming the field for a bad duration, gets "not found" for another tenant's
//! timer, and sleeps 1 s. Then the schedule tools: a created schedule comes back from
//! `list_schedules` and `get_schedule` with its fields and a `nextRunAt` equal to the
//! preview's first run, with no run records yet; a bad cron is a tool error naming the
//! field; on a tier allowing 1 s intervals, a schedule every second shows a fired run
//! record whose timer names the schedule and the slot. Also: `/mcp` without or with an
//! unknown key is 401, and a foreign `Origin` or `Host` is 403.
//!
//! A second test pauses, resumes, triggers and deletes a schedule through the tools over
//! both transports.
//!
//! Without the Python SDK the test prints "skipped: python mcp SDK not installed".

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, call, free_port, start_process, terminate};
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "mnt_mcp_admin_key_0123456789abcdef0123456789";
const DEMO_KEY: &str = "mnt_demo_key_free";
/// The client script's whole run, on a loaded machine.
const CLIENT_LIMIT: Duration = Duration::from_secs(180);

fn python_mcp_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import mcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the client script with `args` and returns its RESULT line as JSON.
fn run_client(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .env("MINOOTS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let started = Instant::now();
    while child.try_wait().expect("poll the client").is_none() {
        if started.elapsed() > CLIENT_LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the MCP client did not finish within {CLIENT_LIMIT:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the MCP client failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in the client's output:\n{stdout}"));
    serde_json::from_str(line).unwrap()
}

/// What every run of the scenario must have seen.
fn check_scenario(r: &Value, transport: &str) {
    let ctx = format!("{transport}: {r:#}");
    assert_eq!(r["serverName"], "minoots", "{ctx}");
    assert_eq!(
        r["tools"],
        json!([
            "cancel_timer",
            "create_schedule",
            "create_timer",
            "delete_schedule",
            "fire_timer_now",
            "get_schedule",
            "get_timer",
            "list_deliveries",
            "list_schedule_runs",
            "list_schedules",
            "list_timers",
            "pause_schedule",
            "preview_schedule",
            "redrive_timer",
            "reschedule_timer",
            "resume_schedule",
            "sleep",
            "trigger_schedule",
            "wait_for_timer"
        ]),
        "{ctx}"
    );
    assert_eq!(r["toolsWithSchemas"], 19, "{ctx}");
    assert_eq!(r["createdStatus"], "scheduled", "{ctx}");
    assert_eq!(r["createdTextIsJson"], true, "{ctx}");
    let fired = ["fired", "settled"];
    assert!(
        fired.contains(&r["waitedStatus"].as_str().unwrap_or("")),
        "wait_for_timer returned before the timer fired; {ctx}"
    );
    assert!(r["waitedFiredAt"].is_string(), "{ctx}");
    let progress = r["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "no progress notification; {ctx}");
    assert!(
        progress[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("waiting for timer"),
        "{ctx}"
    );
    assert!(
        fired.contains(&r["getStatus"].as_str().unwrap_or("")),
        "{ctx}"
    );
    assert_eq!(r["listedIds"], json!([r["createdId"]]), "{ctx}");
    assert_eq!(r["deliveriesIsError"], false, "{ctx}");
    assert_eq!(r["cancelled"]["isError"], false, "{ctx}");
    assert_eq!(r["cancelled"]["status"], "cancelled", "{ctx}");
    assert_eq!(r["cancelled"]["cancelReason"], "not needed", "{ctx}");
    assert_eq!(r["cancelAgain"]["isError"], true, "{ctx}");
    assert_eq!(r["badDuration"]["isError"], true, "{ctx}");
    assert!(
        r["badDuration"]["text"]
            .as_str()
            .unwrap()
            .starts_with("duration:"),
        "the bad duration's tool error does not name the field; {ctx}"
    );
    assert_eq!(r["unknownArgument"]["isError"], true, "{ctx}");
    assert!(
        r["unknownArgument"]["text"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{ctx}"
    );
    for key in ["foreign", "foreignCancel"] {
        assert_eq!(
            r[key]["isError"], true,
            "another tenant's timer was reachable; {ctx}"
        );
        assert!(
            r[key]["text"].as_str().unwrap().contains("not found"),
            "{ctx}"
        );
    }
    assert_eq!(r["sleep"]["isError"], false, "{ctx}");
    assert!(
        fired.contains(&r["sleep"]["status"].as_str().unwrap_or("")),
        "{ctx}"
    );
    assert!(
        r["sleep"]["seconds"].as_f64().unwrap() >= 1.0,
        "sleep 1s returned early; {ctx}"
    );
    check_schedules(r, &ctx);
}

/// A tool result's text, for messages and `contains` checks.
fn text(result: &Value) -> &str {
    result["text"].as_str().unwrap_or("")
}

/// The schedule part of the scenario: create, list, get, runs, a bad cron, an unknown id
/// and (with `fastCreated`) a fired run read back with its timer.
fn check_schedules(r: &Value, ctx: &str) {
    let created = &r["scheduleCreated"];
    let id = created["id"].as_str().expect("the schedule has an id");
    for (field, value) in [
        ("name", json!("mcp-weekday-nine")),
        ("cron", json!("0 0 9 * * MON-FRI")),
        ("timezone", json!("Europe/Paris")),
        ("status", json!("active")),
        ("runsFired", json!(0)),
        ("labels", json!({"via": "mcp"})),
        ("maxRuns", json!(5)),
        ("overlap", json!("bufferOne")),
    ] {
        assert_eq!(created[field], value, "created schedule's {field}; {ctx}");
    }
    assert_eq!(created["misfire"]["policy"], "none", "{ctx}");
    assert_eq!(
        created["actionBundle"]["actions"][0]["url"], "http://127.0.0.1:9/never-called",
        "webhookUrl became the schedule's action; {ctx}"
    );
    // The schedule's next run is the first run the stateless preview names for its spec.
    assert_eq!(created["nextRunAt"], r["previewFirstAt"], "{ctx}");

    // The tenant's only schedule at that point, listed with the same fields.
    let listed = r["scheduleList"]["schedules"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{ctx}");
    for field in [
        "id",
        "name",
        "cron",
        "timezone",
        "status",
        "nextRunAt",
        "runsFired",
        "labels",
    ] {
        assert_eq!(listed[0][field], created[field], "listed {field}; {ctx}");
    }
    assert!(r["scheduleList"]["nextCursor"].is_null(), "{ctx}");
    let got = &r["scheduleGot"];
    assert_eq!(got["isError"], false, "{ctx}");
    assert_eq!(got["structured"]["id"], id, "{ctx}");
    assert_eq!(got["structured"]["cron"], created["cron"], "{ctx}");
    // No slot has passed yet: no run records.
    let runs = &r["scheduleRuns"];
    assert_eq!(runs["isError"], false, "{ctx}");
    assert_eq!(
        runs["structured"],
        json!({"runs": [], "nextCursor": null}),
        "{ctx}"
    );

    // A bad cron: the API's 400, its field error in the tool error's text and its problem
    // document as structured content.
    let bad = &r["badCron"];
    assert_eq!(bad["isError"], true, "{ctx}");
    assert!(text(bad).contains("cron: "), "{ctx}");
    assert_eq!(bad["structured"]["status"], 400, "{ctx}");
    assert_eq!(bad["structured"]["errors"][0]["field"], "cron", "{ctx}");
    assert_eq!(r["unknownSchedule"]["isError"], true, "{ctx}");
    assert!(text(&r["unknownSchedule"]).contains("not found"), "{ctx}");

    if r["fastCreated"].is_object() {
        let run = &r["fastRun"];
        assert!(
            run.is_object(),
            "no fired run of a 1 s schedule within the limit; {ctx}"
        );
        assert_eq!(run["status"], "fired", "{ctx}");
        let timer = &r["fastRunTimer"];
        assert_eq!(timer["id"], run["timerId"], "{ctx}");
        assert_eq!(timer["scheduleId"], r["fastCreated"]["id"], "{ctx}");
        assert_eq!(timer["scheduledAt"], run["scheduledAt"], "{ctx}");
    }
}

/// What the schedule-control scenario must have seen: pause, resume, trigger, delete.
fn check_schedule_control(r: &Value, transport: &str) {
    let ctx = format!("{transport}: {r:#}");
    let id = r["created"]["id"].as_str().expect("the schedule has an id");
    for (step, status) in [
        ("paused", "paused"),
        ("gotPaused", "paused"),
        ("resumed", "active"),
    ] {
        assert_eq!(r[step]["isError"], false, "{step}; {ctx}");
        assert_eq!(r[step]["structured"]["id"], id, "{step}; {ctx}");
        assert_eq!(r[step]["structured"]["status"], status, "{step}; {ctx}");
    }
    let triggered = &r["triggered"];
    assert_eq!(triggered["isError"], false, "{ctx}");
    assert_eq!(triggered["structured"]["scheduleId"], id, "{ctx}");
    let fired = ["fired", "settled"];
    assert!(
        fired.contains(
            &r["triggeredWaited"]["structured"]["status"]
                .as_str()
                .unwrap_or("")
        ),
        "the triggered run did not fire; {ctx}"
    );
    assert_eq!(r["pauseUnknown"]["isError"], true, "{ctx}");
    assert!(text(&r["pauseUnknown"]).contains("not found"), "{ctx}");
    assert_eq!(r["deleted"]["isError"], false, "{ctx}");
    assert_eq!(
        r["deleted"]["structured"],
        json!({"id": id, "deleted": true}),
        "{ctx}"
    );
    for step in ["gotDeleted", "deletedAgain"] {
        assert_eq!(r[step]["isError"], true, "{step}; {ctx}");
        assert!(text(&r[step]).contains("not found"), "{step}; {ctx}");
    }
    assert!(
        !r["listedAfterDelete"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == id),
        "{ctx}"
    );
}

/// Creates a 1 h timer with `key` through REST; returns its id.
async fn timer_of(http: &reqwest::Client, base: &str, key: &str) -> String {
    let body = json!({"duration": "1h", "name": "not-yours"});
    let (status, t) = call(
        http,
        Method::POST,
        format!("{base}/timers"),
        key,
        Some(body),
    )
    .await;
    assert_eq!(status, 201);
    t["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_over_stdio_and_streamable_http_against_a_live_server() {
    if !python_mcp_installed() {
        println!("skipped: python mcp SDK not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = serve_demo(&dir.path().join("data"));
    let addr = base.trim_start_matches("http://").to_string();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // A second tenant with its own key, through the admin API.
    let post = |path: &str, key: &'static str, body: Value| {
        call(
            &http,
            Method::POST,
            format!("{base}{path}"),
            key,
            Some(body),
        )
    };
    let (status, answer) = post(
        "/admin/tenants",
        ADMIN_KEY,
        // Team: schedules may fire every second.
        json!({"id": "other", "name": "Other", "tier": "team"}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = post(
        "/admin/keys",
        ADMIN_KEY,
        json!({"tenantId": "other", "name": "mcp-test", "roles": ["timers:read", "timers:write"]}),
    )
    .await;
    assert_eq!(status, 201);
    let other_key = answer["key"].as_str().unwrap().to_string();
    let others_timer = timer_of(&http, &base, &other_key).await;
    let demo_timer = timer_of(&http, &base, DEMO_KEY).await;

    // `/mcp` refuses a missing or unknown key before any MCP handling, and foreign
    // browser origins and host names (DNS rebinding).
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"}}});
    let mcp = format!("{base}/mcp");
    let probe = |headers: &[(&str, &str)]| {
        let mut rb = http
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(init.to_string());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send()
    };
    let r = probe(&[]).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "a refused key is answered like the REST API"
    );
    assert!(r.text().await.unwrap().contains("API key"));
    let r = probe(&[("authorization", "Bearer mnt_no_such_key_0000000000000000")])
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = probe(&[("x-api-key", DEMO_KEY), ("origin", "http://evil.example")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a foreign Origin was accepted");
    let r = probe(&[("x-api-key", DEMO_KEY), ("host", "evil.example")])
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a foreign Host was accepted");
    let own_origin = format!("http://{addr}");
    let r = probe(&[("x-api-key", DEMO_KEY), ("origin", &own_origin)])
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the server's own origin was refused");
    assert!(r.headers().contains_key("mcp-session-id"));
    drop(r);

    // Over stdio, acting as tenant "test" with the demo key.
    let bin = env!("CARGO_BIN_EXE_minoots");
    let stdio = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            run_client(&[
                "stdio",
                "--foreign-id",
                &others_timer,
                "--",
                bin,
                "mcp",
                "--url",
                &base,
                "--api-key",
                DEMO_KEY,
            ])
        }
    })
    .await
    .unwrap();
    check_scenario(&stdio, "stdio");

    // Over streamable HTTP, acting as tenant "other" with its key.
    let streamable = tokio::task::spawn_blocking(move || {
        run_client(&[
            "http",
            &mcp,
            "--api-key",
            &other_key,
            "--foreign-id",
            &demo_timer,
            "--fast-schedules",
        ])
    })
    .await
    .unwrap();
    check_scenario(&streamable, "streamable HTTP");
    assert_ne!(stdio["createdId"], streamable["createdId"]);

    terminate(&server.0);
    let status = server.0.wait().unwrap();
    assert!(status.success(), "minoots serve exited with {status}");
}

/// Starts `minoots serve --demo` on a fresh store; returns it and its REST base URL.
fn serve_demo(data: &std::path::Path) -> (KillOnDrop, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let (server, _) = start_process(
        &[
            "serve",
            "--demo",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-addr",
            &addr,
            "--grpc-addr",
            &grpc,
        ],
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY)],
        "minoots ready on ",
    );
    (KillOnDrop(server), format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_schedule_pause_resume_trigger_delete_over_both_transports() {
    if !python_mcp_installed() {
        println!("skipped: python mcp SDK not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = serve_demo(&dir.path().join("data"));
    let bin = env!("CARGO_BIN_EXE_minoots");
    let stdio = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            run_client(&[
                "stdio",
                "--scenario",
                "schedule-control",
                "--",
                bin,
                "mcp",
                "--url",
                &base,
                "--api-key",
                DEMO_KEY,
            ])
        }
    })
    .await
    .unwrap();
    check_schedule_control(&stdio, "stdio");
    let mcp = format!("{base}/mcp");
    let streamable = tokio::task::spawn_blocking(move || {
        run_client(&[
            "http",
            &mcp,
            "--api-key",
            DEMO_KEY,
            "--scenario",
            "schedule-control",
        ])
    })
    .await
    .unwrap();
    check_schedule_control(&streamable, "streamable HTTP");
    assert_ne!(stdio["created"]["id"], streamable["created"]["id"]);

    terminate(&server.0);
    let status = server.0.wait().unwrap();
    assert!(status.success(), "minoots serve exited with {status}");
}
