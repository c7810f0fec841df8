//! Schema fuzzing of the REST API: `schemathesis` (PyPI) generates requests from the live
//! `/openapi.json` of a real `minoots control-plane` in demo mode and runs every check it
//! has (`--checks all`) over every route: no answer is a 5xx, every answer matches the
//! document (status code, content type, headers, body schema, SSE events), what the
//! document calls valid is accepted and what it calls invalid is refused.
//!
//! Two things are set around the generated requests, both for reasons outside the
//! document's reach: `schemathesis_hooks.py` does not send the valid-looking cases that
//! break a rule JSON Schema cannot state (a `fireAt` relative to now, two fields that must
//! agree, actions the demo server does not enable; each is in the field's description),
//! and `timeout=1s` is fixed on the event streams and the long-poll `wait`, which hold a
//! request open until their timeout by design (the stream's otherwise forever).
//!
//! The control plane runs beside a `minoots kernel` and no orchestrator, so the timers the
//! fuzzer creates fire but are never delivered: nothing leaves the machine, whatever URLs
//! it makes up. Prints "skipped: schemathesis not installed" when the tool is missing.

mod common;

use std::process::{Child, Command};

use common::{free_port, start_kernel, start_process};

/// The bootstrap admin key of the run (demo servers only).
const ADMIN_KEY: &str = "mnt_schemathesis_admin_key_0123456789abcdef";
/// Tier limits lifted so the fuzzer tests the handlers rather than the rate limiter and
/// quotas (they have their own tests); the farthest fire time is the document's 10 years.
const TIERS: &str = r#"{"free": {"requestsPerMinute": null, "createsPerMinute": null, "timersPerDay": null, "pendingTimers": null, "maxDurationMs": null}}"#;
/// Generated cases per operation and phase: enough to reach every field, bounded so the
/// whole test stays within about three minutes on two cores in a debug build.
const MAX_EXAMPLES: &str = "25";
/// The fuzzer's seed, so a failure in CI can be replayed; `MINOOTS_SCHEMATHESIS_SEED`
/// picks another one.
const DEFAULT_SEED: &str = "20261204";
/// Written into schemathesis' working directory: a short `timeout` on the routes that hold
/// a request open until it passes.
const CONFIG: &str = r#"
[[operations]]
include-path-regex = '^(/events|/timers/stream|/timers/\{id\}/wait)$'
parameters = { "timeout" = "1s" }
"#;

/// Kills the processes it holds when dropped, also when a test fails.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn installed() -> bool {
    Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs schemathesis in `work_dir` against `base` with `key` and `extra` arguments; panics
/// with its report unless it passed.
fn run_schemathesis(base: &str, key: &str, extra: &[&str], work_dir: &std::path::Path) {
    let seed = std::env::var("MINOOTS_SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    std::fs::write(work_dir.join("schemathesis.toml"), CONFIG).expect("write the config");
    let hooks_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let schema = format!("{base}/openapi.json");
    let header = format!("X-API-Key: {key}");
    let mut args = vec![
        "run",
        schema.as_str(),
        "-H",
        header.as_str(),
        "--checks",
        "all",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        seed.as_str(),
        "--request-timeout",
        "10",
        "--phases",
        "examples,coverage,fuzzing",
        // One worker: parallel workers trip a CPython 3.11 `ast` race inside
        // hypothesis ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--no-color",
    ];
    args.extend_from_slice(extra);
    // Run in a scratch directory: schemathesis keeps its example database in the current
    // directory.
    let out = Command::new("schemathesis")
        .args(&args)
        .current_dir(work_dir)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", hooks_dir)
        .output()
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" generated, ") || l.contains("Seed:"))
        .collect();
    println!("schemathesis {extra:?}: {}", summary.join(" | ").trim());
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_live_api_matches_its_openapi_document_under_schema_fuzzing() {
    if !installed() {
        println!("skipped: schemathesis not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (kernel, kernel_url) = start_kernel(dir.path());
    let mut procs = Processes(vec![kernel]);
    let http = format!("127.0.0.1:{}", free_port());
    let (cp, _) = start_process(
        &[
            "control-plane",
            "--demo",
            "--kernel-url",
            &kernel_url,
            "--http-addr",
            &http,
        ],
        &[("MINOOTS_ADMIN_KEY", ADMIN_KEY), ("MINOOTS_TIERS", TIERS)],
        "minoots control plane ready on ",
    );
    procs.0.push(cp);
    let base = format!("http://{http}");
    // Every route but the admin ones with the demo key (the public routes included).
    run_schemathesis(
        &base,
        "mnt_demo_key_free",
        &["--exclude-path-regex", "^/admin"],
        scratch.path(),
    );
    // The admin routes with the admin key.
    run_schemathesis(
        &base,
        ADMIN_KEY,
        &["--include-path-regex", "^/admin"],
        scratch.path(),
    );
    drop(procs);
}
