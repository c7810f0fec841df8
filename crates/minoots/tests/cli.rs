//! The client CLI against a live `minoots serve --demo`: create, list, get, wait, cancel,
//! deliveries, tenants and keys, with `--json` output parsed, a table checked, and a bad
//! duration reported with the field and a non-zero exit; `schedules preview` across New
//! York's spring-forward gap as a table and as JSON, and a bad time zone named.
//! `schedules create` from flags and from `--body` with flags over it, `list` and `get` as
//! JSON and as tables, `runs` (none yet; then, on a tier allowing 1 s, fired runs whose
//! timers name the schedule), a bad cron and an interval below the tier's refused with the
//! field; and `pause`, `resume`, `trigger` and `delete` of a schedule.

mod common;

use std::process::{Command, Output};

use common::{KillOnDrop, free_port, start_process, terminate};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "mnt_cli_admin_key_0123456789abcdef0123456789";
const DEMO_KEY: &str = "mnt_demo_key_free";
/// The start of the schedules whose records must stay empty while a test runs.
const START_AT: &str = "2099-01-01T00:00:00Z";
/// How long a 1 s schedule's first fired run may take to show in its records.
const FAST_RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts `minoots serve --demo` on a fresh store under `dir`; returns it (killed if an
/// assertion fails first, or it would outlive the test with its output pipe open) and its
/// REST base URL.
fn serve_demo(dir: &std::path::Path) -> (KillOnDrop, String) {
    let data = dir.join("data");
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let (server, _) = start_process(
        &[
            "serve",
            "--demo",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-addr",
            &http,
            "--grpc-addr",
            &grpc,
        ],
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY)],
        "minoots ready on ",
    );
    (KillOnDrop(server), format!("http://{http}"))
}

/// A table's lines as cells (columns are separated by at least two spaces).
fn rows_of(out: &Output) -> Vec<Vec<String>> {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// A failed command's stderr, asserting that it failed.
fn failure_of(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cli(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(args)
        .env("MINOOTS_URL", url)
        .env("MINOOTS_API_KEY", key)
        .env("MINOOTS_LOG", "warn")
        .output()
        .expect("run the CLI")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn cli_create_list_get_wait_cancel_against_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = serve_demo(dir.path());
    let key = DEMO_KEY;

    let created = json_of(&cli(
        &url,
        key,
        &[
            "timers", "create", "--in", "1s", "--name", "cli-test", "--label", "team=ops", "--json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "cli-test");
    assert_eq!(created["labels"]["team"], "ops");
    let other = json_of(&cli(
        &url,
        key,
        &["timers", "create", "--in", "1h", "--json"],
    ));
    let other_id = other["id"].as_str().unwrap().to_string();

    let listed = json_of(&cli(
        &url,
        key,
        &["timers", "list", "--label", "team:ops", "--json"],
    ));
    let ids: Vec<&str> = listed["timers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let table = cli(&url, key, &["timers", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&id) && text.contains(&other_id), "{text}");

    assert_eq!(
        json_of(&cli(&url, key, &["timers", "get", &id, "--json"]))["id"],
        id.as_str()
    );
    let waited = json_of(&cli(
        &url,
        key,
        &["timers", "wait", &id, "--timeout", "30s", "--json"],
    ));
    assert_ne!(waited["status"], "scheduled");
    assert!(waited["firedAt"].is_string());

    let cancelled = json_of(&cli(
        &url,
        key,
        &["timers", "cancel", &other_id, "--reason", "done", "--json"],
    ));
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancelReason"], "done");
    let again = cli(&url, key, &["timers", "cancel", &other_id]);
    assert!(!again.status.success());

    // A bad duration: non-zero exit, the field and the fix on stderr.
    let bad = cli(&url, key, &["timers", "create", "--in", "soon"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("duration"), "{err}");

    // A schedule preview: 02:30 did not exist in New York on 2026-03-08, so that run is at
    // the gap's end (03:00 local), flagged; the next day's is at 02:30 again.
    let preview = [
        "schedules",
        "preview",
        "--cron",
        "0 30 2 * * *",
        "--timezone",
        "America/New_York",
        "--from",
        "2026-03-07T12:00:00Z",
        "--count",
        "2",
    ];
    let out = cli(&url, key, &preview);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [
            vec!["AT (UTC)", "LOCAL", "DST", "FIRE AT"],
            vec![
                "2026-03-08T07:00:00Z",
                "2026-03-08T03:00:00-04:00",
                "gapShifted",
                "2026-03-08T07:00:00Z"
            ],
            vec![
                "2026-03-09T06:30:00Z",
                "2026-03-09T02:30:00-04:00",
                "-",
                "2026-03-09T06:30:00Z"
            ],
            vec![
                format!(
                    "time zone database {}",
                    minoots_core::schedule::tzdb_version()
                )
                .as_str()
            ],
        ],
        "{text}"
    );
    let answer = json_of(&cli(&url, key, &[&preview[..], &["--json"]].concat()));
    assert_eq!(answer["runs"][0]["at"], "2026-03-08T07:00:00Z", "{answer}");
    assert_eq!(answer["runs"][0]["dst"], "gapShifted", "{answer}");
    assert_eq!(answer["runs"][1]["at"], "2026-03-09T06:30:00Z", "{answer}");
    assert_eq!(answer["runs"].as_array().unwrap().len(), 2, "{answer}");
    let bad = cli(
        &url,
        key,
        &[
            "schedules",
            "preview",
            "--cron",
            "0 30 2 * * *",
            "--timezone",
            "Mars/Olympus",
        ],
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("timezone"), "{err}");

    // Admin commands.
    let t = json_of(&cli(
        &url,
        ADMIN_KEY,
        &["tenants", "create", "acme", "--tier", "pro", "--json"],
    ));
    assert_eq!(t["tier"], "pro");
    let t = json_of(&cli(
        &url,
        ADMIN_KEY,
        &["tenants", "set-tier", "acme", "team", "--json"],
    ));
    assert_eq!(t["tier"], "team");
    let k = json_of(&cli(
        &url,
        ADMIN_KEY,
        &[
            "keys",
            "create",
            "--tenant",
            "acme",
            "--role",
            "timers:read",
            "--json",
        ],
    ));
    let plaintext = k["key"].as_str().unwrap().to_string();
    let keys = json_of(&cli(
        &url,
        ADMIN_KEY,
        &["keys", "list", "--tenant", "acme", "--json"],
    ));
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        json_of(&cli(&url, &plaintext, &["timers", "list", "--json"]))["timers"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    json_of(&cli(
        &url,
        ADMIN_KEY,
        &["keys", "revoke", k["id"].as_str().unwrap(), "--json"],
    ));
    let refused = cli(&url, &plaintext, &["timers", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("revoked"));

    terminate(&server.0);
    assert!(server.0.wait().unwrap().success());
}

#[test]
fn cli_schedules_create_list_get_runs_against_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = serve_demo(dir.path());
    let key = DEMO_KEY;

    // From flags. Slots from 2099 on: none is dispatched while the test runs, so records,
    // runsFired and nextRunAt stay as created.
    let nightly = json_of(&cli(
        &url,
        key,
        &[
            "schedules",
            "create",
            "--cron",
            "0 30 2 * * *",
            "--timezone",
            "America/New_York",
            "--start-at",
            START_AT,
            "--name",
            "nightly",
            "--webhook",
            "http://127.0.0.1:9/hook",
            "--max-runs",
            "3",
            "--overlap",
            "bufferOne",
            "--misfire",
            "all",
            "--jitter",
            "30s",
            "--label",
            "team=ops",
            "--json",
        ],
    ));
    let nightly_id = nightly["id"].as_str().unwrap().to_string();
    for (field, value) in [
        ("name", json!("nightly")),
        ("cron", json!("0 30 2 * * *")),
        ("timezone", json!("America/New_York")),
        ("status", json!("active")),
        ("maxRuns", json!(3)),
        ("overlap", json!("bufferOne")),
        ("jitter", json!("30s")),
        ("labels", json!({"team": "ops"})),
        ("runsFired", json!(0)),
    ] {
        assert_eq!(nightly[field], value, "{field}: {nightly}");
    }
    assert_eq!(nightly["misfire"]["policy"], "all", "{nightly}");
    assert_eq!(
        nightly["actionBundle"]["actions"][0]["url"],
        "http://127.0.0.1:9/hook"
    );
    // Its next run is the preview's first for the same spec.
    let preview = json_of(&cli(
        &url,
        key,
        &[
            "schedules",
            "preview",
            "--cron",
            "0 30 2 * * *",
            "--timezone",
            "America/New_York",
            "--start-at",
            START_AT,
            "--count",
            "1",
            "--json",
        ],
    ));
    assert_eq!(nightly["nextRunAt"], preview["runs"][0]["at"], "{preview}");

    // From --body, with a flag over one of its fields.
    let quarter = json_of(&cli(
        &url,
        key,
        &[
            "schedules",
            "create",
            "--body",
            r#"{"name": "quarter", "every": "15m", "phase": "7m", "startAt": "2099-01-01T00:00:00Z", "labels": {"kind": "body"}, "misfire": {"window": "2h", "policy": "all"}}"#,
            "--misfire",
            "none",
            "--json",
        ],
    ));
    let quarter_id = quarter["id"].as_str().unwrap().to_string();
    assert_eq!(quarter["every"], "15m", "{quarter}");
    assert_eq!(quarter["phase"], "7m", "{quarter}");
    assert_eq!(quarter["labels"], json!({"kind": "body"}), "{quarter}");
    assert_eq!(quarter["misfire"]["policy"], "none", "{quarter}");
    assert_eq!(quarter["misfire"]["window"], "2h", "{quarter}");
    assert_eq!(quarter["nextRunAt"], "2099-01-01T00:07:00Z", "{quarter}");

    // Both listed, as JSON and as a table.
    let listed = json_of(&cli(&url, key, &["schedules", "list", "--json"]));
    let mut ids: Vec<&str> = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![nightly_id.as_str(), quarter_id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{listed}");
    let rows = rows_of(&cli(&url, key, &["schedules", "list"]));
    assert_eq!(
        rows[0],
        [
            "ID",
            "NAME",
            "STATUS",
            "SPEC",
            "TIMEZONE",
            "NEXT RUN AT",
            "RUNS FIRED"
        ],
        "{rows:?}"
    );
    let row_of = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("no row for {id}: {rows:?}"))
            .clone()
    };
    assert_eq!(
        row_of(&nightly_id),
        [
            nightly_id.as_str(),
            "nightly",
            "active",
            "0 30 2 * * *",
            "America/New_York",
            nightly["nextRunAt"].as_str().unwrap(),
            "0"
        ]
    );
    assert_eq!(
        row_of(&quarter_id),
        [
            quarter_id.as_str(),
            "quarter",
            "active",
            "every 15m phase 7m",
            "UTC",
            quarter["nextRunAt"].as_str().unwrap(),
            "0"
        ]
    );

    // One, as JSON and as a table.
    let got = json_of(&cli(
        &url,
        key,
        &["schedules", "get", &nightly_id, "--json"],
    ));
    assert_eq!(got["id"], nightly_id.as_str());
    assert_eq!(got["cron"], "0 30 2 * * *");
    assert_eq!(got["nextRunAt"], nightly["nextRunAt"]);
    let rows = rows_of(&cli(&url, key, &["schedules", "get", &quarter_id]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][0], quarter_id);
    assert_eq!(rows[1][3], "every 15m phase 7m");

    // No slot has passed: no run records.
    let runs = json_of(&cli(
        &url,
        key,
        &["schedules", "runs", &nightly_id, "--json"],
    ));
    assert_eq!(runs, json!({"runs": [], "nextCursor": null}));
    let rows = rows_of(&cli(&url, key, &["schedules", "runs", &nightly_id]));
    assert_eq!(
        rows,
        [vec!["SCHEDULED AT", "STATUS", "REASON", "TIMER ID"]],
        "{rows:?}"
    );

    // Refusals: the API's field errors on stderr, a non-zero exit.
    let err = failure_of(&cli(
        &url,
        key,
        &["schedules", "create", "--cron", "0 61 * * *"],
    ));
    assert!(err.contains("cron: "), "{err}");
    let err = failure_of(&cli(&url, key, &["schedules", "create", "--every", "10s"]));
    assert!(
        err.contains("every: "),
        "the free tier's 60 s minimum: {err}"
    );
    let err = failure_of(&cli(
        &url,
        key,
        &["schedules", "create", "--body", "{not json"],
    ));
    assert!(err.contains("--body"), "{err}");
    let err = failure_of(&cli(
        &url,
        key,
        &["schedules", "get", "00000000-0000-4000-8000-000000000000"],
    ));
    assert!(err.contains("not found"), "{err}");

    // On a tier allowing 1 s intervals, a schedule every second fires runs; each fired
    // record names its timer, and the timer names the schedule and the slot.
    json_of(&cli(
        &url,
        ADMIN_KEY,
        &["tenants", "create", "fast", "--tier", "team", "--json"],
    ));
    let k = json_of(&cli(
        &url,
        ADMIN_KEY,
        &[
            "keys",
            "create",
            "--tenant",
            "fast",
            "--role",
            "timers:read",
            "--role",
            "timers:write",
            "--json",
        ],
    ));
    let fast_key = k["key"].as_str().unwrap().to_string();
    let every = json_of(&cli(
        &url,
        &fast_key,
        &[
            "schedules",
            "create",
            "--every",
            "1s",
            "--name",
            "fast",
            "--json",
        ],
    ));
    let every_id = every["id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let fired = loop {
        let runs = json_of(&cli(
            &url,
            &fast_key,
            &["schedules", "runs", &every_id, "--json"],
        ));
        let fired = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "fired")
            .cloned();
        if let Some(run) = fired {
            break run;
        }
        assert!(
            started.elapsed() < FAST_RUN_LIMIT,
            "no fired run within {FAST_RUN_LIMIT:?}: {runs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let timer_id = fired["timerId"].as_str().unwrap().to_string();
    let rows = rows_of(&cli(&url, &fast_key, &["schedules", "runs", &every_id]));
    let row = rows
        .iter()
        .find(|r| r.last().map(String::as_str) == Some(timer_id.as_str()))
        .unwrap_or_else(|| panic!("no row for timer {timer_id}: {rows:?}"));
    assert_eq!(
        row,
        &[
            fired["scheduledAt"].as_str().unwrap(),
            "fired",
            "-",
            timer_id.as_str()
        ]
    );
    let timer = json_of(&cli(
        &url,
        &fast_key,
        &["timers", "get", &timer_id, "--json"],
    ));
    assert_eq!(timer["scheduleId"], every_id.as_str(), "{timer}");
    assert_eq!(timer["scheduledAt"], fired["scheduledAt"], "{timer}");
    // Another tenant's schedule is not found.
    let err = failure_of(&cli(&url, key, &["schedules", "runs", &every_id]));
    assert!(err.contains("not found"), "{err}");

    terminate(&server.0);
    assert!(server.0.wait().unwrap().success());
}

/// Needs `POST /schedules/{id}/pause`, `/resume`, `/trigger` and `DELETE /schedules/{id}`.
#[test]
fn cli_schedules_pause_resume_trigger_delete_against_a_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = serve_demo(dir.path());
    let key = DEMO_KEY;
    let created = json_of(&cli(
        &url,
        key,
        &[
            "schedules",
            "create",
            "--every",
            "1m",
            "--name",
            "control",
            "--json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_string();

    let paused = json_of(&cli(&url, key, &["schedules", "pause", &id, "--json"]));
    assert_eq!(paused["status"], "paused", "{paused}");
    let got = json_of(&cli(&url, key, &["schedules", "get", &id, "--json"]));
    assert_eq!(got["status"], "paused", "{got}");
    let rows = rows_of(&cli(&url, key, &["schedules", "list"]));
    assert_eq!(rows[1][0], id, "{rows:?}");
    assert_eq!(rows[1][2], "paused", "{rows:?}");
    let resumed = json_of(&cli(&url, key, &["schedules", "resume", &id, "--json"]));
    assert_eq!(resumed["status"], "active", "{resumed}");
    json_of(&cli(&url, key, &["schedules", "pause", &id, "--json"]));
    let resumed = json_of(&cli(
        &url,
        key,
        &["schedules", "resume", &id, "--catch-up", "--json"],
    ));
    assert_eq!(resumed["status"], "active", "{resumed}");

    // An extra run now: its timer names the schedule and fires.
    let run = json_of(&cli(&url, key, &["schedules", "trigger", &id, "--json"]));
    assert_eq!(run["scheduleId"], id.as_str(), "{run}");
    let waited = json_of(&cli(
        &url,
        key,
        &[
            "timers",
            "wait",
            run["id"].as_str().unwrap(),
            "--timeout",
            "30s",
            "--json",
        ],
    ));
    assert!(
        ["fired", "settled"].contains(&waited["status"].as_str().unwrap_or("")),
        "{waited}"
    );

    let out = cli(&url, key, &["schedules", "delete", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("schedule {id} deleted")
    );
    let err = failure_of(&cli(&url, key, &["schedules", "get", &id]));
    assert!(err.contains("not found"), "{err}");
    let err = failure_of(&cli(&url, key, &["schedules", "delete", &id]));
    assert!(err.contains("not found"), "{err}");
    let listed: Value = json_of(&cli(&url, key, &["schedules", "list", "--json"]));
    assert_eq!(listed["schedules"], json!([]), "{listed}");

    terminate(&server.0);
    assert!(server.0.wait().unwrap().success());
}

#[test]
fn configuration_file_below_environment_and_flags_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("minoots.toml");
    let port = free_port();
    std::fs::write(
        &file,
        format!(
            r#"
data-dir = "{}"
http_addr = "127.0.0.1:{port}"
grpc-addr = "127.0.0.1:{}"
admin-key = "{ADMIN_KEY}"
demo = true

[tiers.free]
requestsPerMinute = 2
createsPerMinute = 1
timersPerDay = 10
pendingTimers = 1
maxDurationMs = 60000
"#,
            dir.path().join("data").display(),
            free_port()
        ),
    )
    .unwrap();
    let print = |env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_minoots"));
        c.args(["config", "print", "--config"]).arg(&file);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.env_remove("MINOOTS_HTTP_ADDR").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let shown = print(&[]);
    assert!(
        shown.contains(&format!("http-addr = \"127.0.0.1:{port}\"")),
        "{shown}"
    );
    assert!(shown.contains("admin-key = \"********\""), "{shown}");
    assert!(!shown.contains(ADMIN_KEY), "the secret is masked");
    assert!(shown.contains("demo = \"true\""), "{shown}");
    // The environment wins over the file.
    let mut c = Command::new(env!("CARGO_BIN_EXE_minoots"));
    let out = c
        .args(["config", "print", "--config"])
        .arg(&file)
        .env("MINOOTS_HTTP_ADDR", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("http-addr = \"127.0.0.1:1\""));

    // A server started from the file applies its tiers; a flag beats the file.
    let flag_port = free_port();
    let (server, line) = start_process(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--http-addr",
            &format!("127.0.0.1:{flag_port}"),
        ],
        &[],
        "minoots ready on ",
    );
    let mut server = KillOnDrop(server);
    assert!(line.contains(&flag_port.to_string()), "{line}");
    let url = format!("http://127.0.0.1:{flag_port}");
    let v: serde_json::Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{url}/usage"))
            .header("x-api-key", "mnt_demo_key_free")
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    });
    assert_eq!(v["limits"]["requestsPerMinute"], 2, "{v}");
    assert_eq!(v["limits"]["maxDurationMs"], 60000);
    terminate(&server.0);
    assert!(server.0.wait().unwrap().success());

    // An unknown setting is an error that names it.
    std::fs::write(&file, "htp-addr = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(["config", "print", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("htp-addr"));
}
