//! The client CLI against a live `minoots serve --demo`: create, list, get, wait, cancel,
//! deliveries, tenants and keys, with `--json` output parsed, a table checked, and a bad
//! duration reported with the field and a non-zero exit; `schedules preview` across New
//! York's spring-forward gap as a table and as JSON, and a bad time zone named.

mod common;

use std::process::{Command, Output};

use common::{KillOnDrop, free_port, start_process, terminate};

const ADMIN_KEY: &str = "mnt_cli_admin_key_0123456789abcdef0123456789";

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
    let port = free_port();
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{port}");
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
    // Killed if an assertion fails first; it would otherwise outlive the test and hold
    // the test's output pipe open.
    let mut server = KillOnDrop(server);
    let url = format!("http://{http}");
    let key = "mnt_demo_key_free";

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
