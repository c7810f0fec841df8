//! The MCP tools through rmcp's own client, against a live control plane on loopback
//! (in-process kernel on a fresh SQLite store) reached over HTTP with the demo key:
//! the tool list, create then wait until fired, a bad duration as a tool error naming the
//! field, cancel, reschedule at the version read and fire now, an unknown timer as "not
//! found", a schedule preview across New York's spring-forward gap (with a bad time
//! zone as a tool error naming the field), and a schedule created, read, listed and its
//! (empty) run records, with a bad cron as a tool error naming the field.

use std::sync::Arc;
use std::time::Duration;

use minoots_control_plane::{AppState, Bootstrap, ControlPlaneConfig, bootstrap, serve};
use minoots_core::{Clock, SystemClock};
use minoots_kernel::{Kernel, KernelApi, KernelConfig};
use minoots_mcp::{Backend, MinootsMcp, RemoteApi};
use minoots_store::{SqliteConfig, SqliteStore, Store};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use serde_json::{Value, json};

/// Bound on every client call: a wait for a 1 s timer on a loaded machine.
const CALL_LIMIT: Duration = Duration::from_secs(60);

fn args(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_against_a_live_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap());
    let kernel = Kernel::start(store, clock, KernelConfig::default()).unwrap();
    let api: Arc<dyn KernelApi> = kernel.clone();
    bootstrap(
        api.as_ref(),
        Bootstrap {
            admin_key: None,
            demo: true,
        },
    )
    .await
    .unwrap();
    let config = ControlPlaneConfig {
        demo: true,
        ..ControlPlaneConfig::default()
    };
    let state = AppState::new(api, config, Some(kernel.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(serve(state, listener, async {
        let _ = stopped.await;
    }));

    let backend = Backend::Remote(RemoteApi::new(&url, "mnt_demo_key_free").unwrap());
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let running = MinootsMcp::new(backend).serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ().serve(client_io).await.unwrap();
    let call = |name: &'static str, a: Value| {
        let client = &client;
        async move {
            tokio::time::timeout(
                CALL_LIMIT,
                client.call_tool(CallToolRequestParams::new(name).with_arguments(args(a))),
            )
            .await
            .unwrap_or_else(|_| panic!("{name} did not answer within {CALL_LIMIT:?}"))
            .unwrap()
        }
    };

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
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
        ]
    );

    let created = call(
        "create_timer",
        json!({"duration": "1s", "name": "rust-client"}),
    )
    .await;
    assert_eq!(created.is_error, Some(false), "{}", text(&created));
    let timer = created.structured_content.clone().unwrap();
    assert_eq!(timer["status"], "scheduled");
    assert_eq!(timer["requestedBy"], "mcp");
    assert_eq!(
        serde_json::from_str::<Value>(&text(&created)).unwrap(),
        timer,
        "the text and the structured content carry the same timer"
    );
    let id = timer["id"].as_str().unwrap().to_string();

    let waited = call("wait_for_timer", json!({"id": id, "timeout": "30s"})).await;
    assert_eq!(waited.is_error, Some(false), "{}", text(&waited));
    let fired = waited.structured_content.unwrap();
    assert!(
        ["fired", "settled"].contains(&fired["status"].as_str().unwrap()),
        "wait_for_timer answered before the timer fired: {fired}"
    );

    let bad = call("create_timer", json!({"duration": "soon"})).await;
    assert_eq!(bad.is_error, Some(true));
    assert!(text(&bad).starts_with("duration:"), "{}", text(&bad));
    assert_eq!(
        bad.structured_content.unwrap()["status"],
        400,
        "the API's problem document comes along"
    );

    let later = call("create_timer", json!({"duration": "1h"})).await;
    let later_id = later.structured_content.unwrap()["id"].clone();
    let cancelled = call("cancel_timer", json!({"id": later_id, "reason": "done"})).await;
    assert_eq!(cancelled.structured_content.unwrap()["status"], "cancelled");

    // Reschedule at the version read; a stale version is a tool error saying so.
    let t = call("create_timer", json!({"duration": "1h"})).await;
    let t = t.structured_content.unwrap();
    let moved = call(
        "reschedule_timer",
        json!({"id": t["id"], "version": t["version"], "duration": "2h"}),
    )
    .await;
    assert_eq!(moved.is_error, Some(false), "{}", text(&moved));
    let moved = moved.structured_content.unwrap();
    assert_eq!(moved["version"], 2);
    assert_eq!(moved["durationMs"], 7_200_000);
    let stale = call(
        "reschedule_timer",
        json!({"id": t["id"], "version": 1, "duration": "3h"}),
    )
    .await;
    assert_eq!(stale.is_error, Some(true));
    assert!(
        text(&stale).contains("version 2, not 1"),
        "{}",
        text(&stale)
    );
    let now = call("fire_timer_now", json!({"id": t["id"]})).await;
    assert_eq!(now.is_error, Some(false), "{}", text(&now));
    assert_eq!(now.structured_content.unwrap()["status"], "settled");
    let again = call("fire_timer_now", json!({"id": t["id"]})).await;
    assert_eq!(again.is_error, Some(true));
    assert!(text(&again).contains("already settled"), "{}", text(&again));

    let missing = call(
        "get_timer",
        json!({"id": "0193a0c4-8f1e-7cc3-9d0e-3f1b2a4c5d6e"}),
    )
    .await;
    assert_eq!(missing.is_error, Some(true));
    assert!(text(&missing).contains("not found"), "{}", text(&missing));

    // 02:30 did not exist in New York on 2026-03-08: that run fires at the gap's end.
    let preview = call(
        "preview_schedule",
        json!({"cron": "0 30 2 * * *", "timezone": "America/New_York",
            "from": "2026-03-07T12:00:00Z", "count": 2}),
    )
    .await;
    assert_eq!(preview.is_error, Some(false), "{}", text(&preview));
    let answer = preview.structured_content.clone().unwrap();
    let runs = answer["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{answer}");
    assert_eq!(runs[0]["at"], "2026-03-08T07:00:00Z");
    assert_eq!(runs[0]["local"], "2026-03-08T03:00:00-04:00");
    assert_eq!(runs[0]["dst"], "gapShifted");
    assert_eq!(runs[1]["at"], "2026-03-09T06:30:00Z");
    assert_eq!(runs[1]["dst"], Value::Null);
    assert!(answer["tzdbVersion"].is_string(), "{answer}");
    let summary = preview.content[0].as_text().unwrap().text.clone();
    assert!(
        summary.starts_with("2 runs from 2026-03-08T07:00:00Z to 2026-03-09T06:30:00Z")
            && summary.contains("1 moved past a DST gap"),
        "{summary}"
    );
    let json_text = preview.content[1].as_text().unwrap().text.clone();
    assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), answer);

    let bad_zone = call(
        "preview_schedule",
        json!({"cron": "0 30 2 * * *", "timezone": "America/Gotham"}),
    )
    .await;
    assert_eq!(bad_zone.is_error, Some(true));
    assert!(
        text(&bad_zone).starts_with("timezone:"),
        "{}",
        text(&bad_zone)
    );

    // A schedule: created, read back and listed with its fields, no run records yet (its
    // slots start in 2099, so none is dispatched while the test runs); a bad cron is the
    // API's field error.
    let created = call(
        "create_schedule",
        json!({"name": "every-minute", "every": "1m", "startAt": "2099-01-01T00:00:00Z",
            "labels": {"via": "rmcp"}}),
    )
    .await;
    assert_eq!(created.is_error, Some(false), "{}", text(&created));
    let schedule = created.structured_content.unwrap();
    assert_eq!(schedule["status"], "active", "{schedule}");
    assert_eq!(schedule["every"], "1m", "{schedule}");
    assert_eq!(schedule["nextRunAt"], "2099-01-01T00:00:00Z", "{schedule}");
    let got = call("get_schedule", json!({"id": schedule["id"]})).await;
    assert_eq!(got.structured_content.unwrap()["id"], schedule["id"]);
    let listed = call("list_schedules", json!({"limit": 5})).await;
    let listed = listed.structured_content.unwrap();
    assert_eq!(listed["schedules"][0]["id"], schedule["id"], "{listed}");
    assert_eq!(listed["schedules"][0]["labels"], json!({"via": "rmcp"}));
    let runs = call("list_schedule_runs", json!({"id": schedule["id"]})).await;
    assert_eq!(
        runs.structured_content.unwrap(),
        json!({"runs": [], "nextCursor": null})
    );
    let bad_cron = call("create_schedule", json!({"cron": "0 61 * * *"})).await;
    assert_eq!(bad_cron.is_error, Some(true));
    assert!(text(&bad_cron).contains("cron: "), "{}", text(&bad_cron));
    assert_eq!(
        bad_cron.structured_content.unwrap()["errors"][0]["field"],
        "cron"
    );

    client.cancel().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), http).await;
    kernel.shutdown().await;
}
