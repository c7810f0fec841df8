//! The crash harness at a small size, through the binary, with default lease settings:
//! `minoots bench crash` creates timers at a steady rate while it SIGKILLs and restarts a
//! real `minoots serve` (or, in microservice mode, the `minoots orchestrator` beside a
//! kernel and a control plane) at random moments, then checks from its durable webhook sink
//! that no acknowledged timer was lost, none was delivered early, every duplicate had a
//! kill between its receipts, stays within kills × max in flight and was received again
//! within 10 s of the restart, and that the final SIGTERM exits 0. The seed is random and
//! printed; `MINOOTS_CRASH_SEED` repeats a run.

use std::process::Command;

const TIMERS: usize = 1_500;
const KILLS: usize = 10;
const MAX_IN_FLIGHT: usize = 64;

#[test]
fn timers_survive_ten_sigkills_never_lost_never_early_duplicates_bounded() {
    crash_run("serve");
}

#[test]
fn timers_survive_ten_sigkills_of_the_orchestrator_in_microservice_mode() {
    crash_run("orchestrator");
}

fn crash_run(kill: &str) {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("MINOOTS_CRASH_SEED").unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            .to_string()
    });
    eprintln!("crash harness seed {seed} (MINOOTS_CRASH_SEED={seed} repeats it)");
    let out = Command::new(env!("CARGO_BIN_EXE_minoots"))
        .args(["bench", "crash", "--dir"])
        .arg(dir.path())
        .args([
            "--timers",
            &TIMERS.to_string(),
            "--kills",
            &KILLS.to_string(),
            "--rate",
            "100",
            "--max-in-flight",
            &MAX_IN_FLIGHT.to_string(),
            "--seed",
            &seed,
            "--kill",
            kill,
        ])
        .env("MINOOTS_LOG", "warn")
        .output()
        .expect("run minoots bench crash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let server_log =
        std::fs::read_to_string(dir.path().join("crash/server.log")).unwrap_or_default();
    let context = format!(
        "seed {seed}\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log (last 4 KiB):\n{}",
        &server_log[server_log.len().saturating_sub(4096)..]
    );
    let line = stdout
        .lines()
        .find(|l| l.contains(r#""section":"crash""#))
        .unwrap_or_else(|| panic!("no crash section printed\n{context}"));
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    eprintln!("{line}");

    assert_eq!(r["kills"], KILLS, "{context}");
    assert_eq!(
        r["acknowledged"], TIMERS,
        "every create acknowledged\n{context}"
    );
    assert_eq!(
        r["lost"], 0,
        "acknowledged timers never delivered\n{context}"
    );
    assert_eq!(r["delivered"], TIMERS, "{context}");
    assert_eq!(r["early"], 0, "deliveries before their fireAt\n{context}");
    assert_eq!(r["unknown_receipts"], 0, "{context}");
    assert_eq!(
        r["duplicates_without_a_kill_between"], 0,
        "a delivery ran twice with no kill between\n{context}"
    );
    let duplicates = r["duplicates"].as_u64().unwrap() as usize;
    assert!(
        duplicates <= KILLS * MAX_IN_FLIGHT,
        "{duplicates} duplicates above kills × max in flight\n{context}"
    );
    if duplicates > 0 {
        let slowest = r["redelivered_after_restart_ms"]["max"].as_i64().unwrap();
        assert!(
            slowest <= 10_000,
            "a delivery in flight at a kill came back {slowest} ms after the restart\n{context}"
        );
    }
    assert_eq!(r["sigterm_exit_code"], 0, "{context}");
    assert!(
        out.status.success(),
        "minoots bench crash failed: {:?}\n{context}",
        out.status
    );
}
