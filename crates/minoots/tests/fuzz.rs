//! Hostile input, generated: duration texts, timer request bodies, list cursors and webhook
//! URLs, built from valid seeds mutated at random and from random text, fed to the
//! functions that parse them. Each must answer (accept or refuse) without panicking, and
//! what it accepts must be within its limits.
//!
//! `MINOOTS_FUZZ_ITERATIONS` sets the number of inputs per target (default 20,000 for CI;
//! `MINOOTS_FUZZ_ITERATIONS=1000000 cargo test --release -p minoots --test fuzz` for the full
//! run). `MINOOTS_FUZZ_SEED` replays a run; the seed is printed.

use minoots_core::limits::MAX_TIMER_HORIZON_MS;
use minoots_core::{ActionPolicy, TimerRequest};
use minoots_orchestrator::ssrf::TargetPolicy;
use minoots_store::DueTimer;

fn iterations() -> usize {
    std::env::var("MINOOTS_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn rng(target: &str) -> fastrand::Rng {
    let seed = std::env::var("MINOOTS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("{target}: seed {seed} (MINOOTS_FUZZ_SEED={seed} replays it)");
    fastrand::Rng::with_seed(seed)
}

const ALPHABET: &[u8] =
    b"0123456789.:-+_/\\\"'{}[],@%#?&=~ !\t\n\r\0abcdefhmsuPTZyYnN\xc3\xa9\xff\xfe";

/// A mutation of `seed`: bytes replaced, inserted, deleted, duplicated or truncated, or a
/// random text, or a seed repeated.
fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.u8(0..10) {
        0 => {
            let n = rng.usize(0..64);
            return (0..n)
                .map(|_| ALPHABET[rng.usize(0..ALPHABET.len())])
                .collect();
        }
        1 => {
            let n = rng.usize(1..8);
            return seed.repeat(n);
        }
        _ => {}
    }
    for _ in 0..rng.usize(1..6) {
        let len = v.len();
        match rng.u8(0..6) {
            0 if len > 0 => v[rng.usize(0..len)] = ALPHABET[rng.usize(0..ALPHABET.len())],
            1 => v.insert(rng.usize(0..=len), ALPHABET[rng.usize(0..ALPHABET.len())]),
            2 if len > 0 => {
                v.remove(rng.usize(0..len));
            }
            3 if len > 0 => v.truncate(rng.usize(0..len)),
            4 if len > 0 => v[rng.usize(0..len)] = rng.u8(..),
            5 if len > 0 => {
                let i = rng.usize(0..len);
                let j = rng.usize(i..len);
                let part = v[i..=j].to_vec();
                v.splice(i..i, part);
            }
            _ => {}
        }
    }
    v
}

#[test]
fn duration_parsing_never_panics_and_accepts_only_sane_values() {
    let mut r = rng("durations");
    let seeds: &[&[u8]] = &[
        b"30s",
        b"1h30m",
        b"500ms",
        b"PT30S",
        b"P1DT2H",
        b"10d",
        b"2w",
        b"1.5s",
        b"30000",
        b"9223372036854775807ms",
        b"PT0.001S",
    ];
    for _ in 0..iterations() {
        let pick = seeds[r.usize(0..seeds.len())];
        let input = mutate(&mut r, pick);
        let text = String::from_utf8_lossy(&input);
        if let Ok(ms) = minoots_core::duration::parse_duration_ms(&text) {
            assert!(ms >= 0, "{text:?} parsed to {ms}");
        }
    }
}

#[test]
fn timer_bodies_never_panic_and_what_validates_is_within_limits() {
    let mut r = rng("timer bodies");
    let seeds: &[&[u8]] = &[
        br#"{"tenantId": "test", "requestedBy": "user", "name": "webhook-test", "duration": "30s", "actionBundle": {"actions": [{"type": "webhook", "url": "https://webhook.site/your-url"}]}}"#,
        br#"{"fireAt": "2027-01-01T00:00:00+01:00", "labels": {"a": "b"}, "metadata": {"x": [1, {"y": null}]}}"#,
        br#"{"duration": 1000, "actionBundle": {"actions": [{"type": "command", "command": "backup", "args": ["a"], "env": {"K": "V"}}], "retryPolicy": {"maxAttempts": 3, "multiplier": 2.5}}}"#,
        br#"{"duration": "1h", "actionBundle": {"actions": [{"type": "file", "path": "a/b.jsonl", "mode": "append"}]}, "idempotencyKey": "k"}"#,
        br#"{"duration": "5m", "actionBundle": {"actions": [{"type": "webhook", "url": "http://[::1]:80/x", "method": "PUT", "headers": {"x-a": "b"}, "body": {"z": 1}, "timeoutMs": 5000}]}}"#,
    ];
    let now = 1_795_773_600_000_000;
    let mut policy = ActionPolicy::default();
    policy.allowed_commands.insert("backup".into());
    policy.file_actions = true;
    let mut accepted = 0usize;
    for _ in 0..iterations() {
        let pick = seeds[r.usize(0..seeds.len())];
        let input = mutate(&mut r, pick);
        let Ok(req) = TimerRequest::from_json(&input) else {
            continue;
        };
        if let Ok(spec) = req.validate("acme", now) {
            let mut errors = minoots_core::ValidationErrors::new();
            spec.action_bundle
                .check_policy(&policy, "actionBundle", &mut errors);
            assert!(spec.fire_at_us <= now + MAX_TIMER_HORIZON_MS * 1000);
            assert!(spec.action_bundle.actions.len() <= minoots_core::limits::MAX_ACTIONS);
            accepted += 1;
        }
    }
    println!("timer bodies: {accepted} of {} accepted", iterations());
}

#[test]
fn cursors_never_panic_and_round_trip() {
    let mut r = rng("cursors");
    let good = DueTimer {
        fire_at_us: 1_795_773_600_000_000,
        id: minoots_core::TimerId::new_v7(),
    };
    let seed = good.encode_cursor();
    assert_eq!(DueTimer::decode_cursor(&seed), Some(good));
    for _ in 0..iterations() {
        let input = mutate(&mut r, seed.as_bytes());
        let text = String::from_utf8_lossy(&input);
        if let Some(d) = DueTimer::decode_cursor(&text) {
            // Whatever decodes encodes back to a cursor that decodes the same.
            assert_eq!(DueTimer::decode_cursor(&d.encode_cursor()), Some(d));
        }
    }
}

#[test]
fn url_checks_never_panic_and_never_pass_loopback_or_metadata() {
    let mut r = rng("urls");
    let seeds: &[&[u8]] = &[
        b"https://example.com/hook",
        b"http://127.0.0.1/x",
        b"http://[::ffff:127.0.0.1]/",
        b"http://0x7f000001/",
        b"http://017700000001/",
        b"http://2130706433/",
        b"http://169.254.169.254/latest/meta-data",
        b"http://[fd00::1]:8080/a?b#c",
        b"https://user:pass@example.com:443/p",
        b"http://localhost./",
        b"http://10.0.0.1/",
    ];
    let policy = TargetPolicy::default();
    for _ in 0..iterations() {
        let pick = seeds[r.usize(0..seeds.len())];
        let input = mutate(&mut r, pick);
        let text = String::from_utf8_lossy(&input);
        if let Ok(minoots_orchestrator::ssrf::CheckedTarget::Address(ip)) = policy.check_url(&text)
        {
            assert!(
                minoots_orchestrator::ssrf::classify(ip).is_none(),
                "{text:?} passed as {ip}"
            );
        }
    }
}
