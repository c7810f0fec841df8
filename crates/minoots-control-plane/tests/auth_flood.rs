//! Unauthenticated floods over real HTTP on loopback: guessed keys cost the store a
//! bounded number of lookups per client address, are answered 401 or 429 (never 5xx), and
//! do not keep due timers from firing. Client addresses are distinct loopback addresses
//! (127.0.0.1–127.0.0.4), which Linux routes without any set-up.
//!
//! The flood's size is `MINOOTS_FLOOD_REQUESTS` (default 20,000) and the timers falling
//! due meanwhile `MINOOTS_FLOOD_TIMERS` (default 10,000).

mod common;
use common::{ADMIN_KEY, Server, start};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use minoots_control_plane::ControlPlaneConfig;
use minoots_control_plane::auth::{FAILED_AUTH_QUOTA, generate_key};
use minoots_core::timefmt::format_us;
use minoots_core::{Clock, SystemClock, TimerRequest};
use minoots_kernel::metrics::KernelMetrics;

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A client whose connections come from `addr`.
fn client_from(addr: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(addr)
        .build()
        .unwrap()
}

fn lookups(s: &Server) -> u64 {
    KernelMetrics::get(&s.kernel.metrics().store_key_lookups)
}

/// `GET /timers` with `key` from `client`: the status and the `Retry-After` header.
async fn get_timers(client: &reqwest::Client, url: &str, key: &str) -> (u16, Option<String>) {
    let r = client
        .get(format!("{url}/timers"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status().as_u16(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_failed_authentication_budget_gets_429_without_a_lookup() {
    // 5 at once, then one a minute: nothing refills while the test runs.
    let s = start(ControlPlaneConfig {
        failed_auth_burst: 5,
        failed_auth_per_minute: 1,
        ..ControlPlaneConfig::default()
    })
    .await;
    let (a, b, c) = (
        client_from(loopback(1)),
        client_from(loopback(2)),
        client_from(loopback(3)),
    );

    let before = lookups(&s);
    for i in 0..5 {
        let key = generate_key().unwrap();
        assert_eq!(get_timers(&a, &s.url, &key).await.0, 401, "failure {i}");
    }
    assert_eq!(
        lookups(&s) - before,
        5,
        "each failure within the budget is looked up"
    );
    for _ in 0..20 {
        let key = generate_key().unwrap();
        let (status, retry) = get_timers(&a, &s.url, &key).await;
        assert_eq!(status, 429);
        let retry: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    let r = a
        .get(format!("{}/timers", s.url))
        .header("x-api-key", generate_key().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["quota"], FAILED_AUTH_QUOTA, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("retry after"));
    assert_eq!(
        lookups(&s) - before,
        5,
        "refused requests do not reach the store"
    );
    // Until the budget refills, the address is refused even with a valid key.
    assert_eq!(get_timers(&a, &s.url, ADMIN_KEY).await.0, 429);

    // Another address is not affected.
    assert_eq!(get_timers(&b, &s.url, ADMIN_KEY).await.0, 200);
    assert_eq!(
        get_timers(&b, &s.url, &generate_key().unwrap()).await.0,
        401
    );

    // Malformed keys are refused without a lookup and do not spend the budget.
    let before = lookups(&s);
    for bad in ["short", &"k".repeat(300), "mnt_with space_0123456789abcdef"] {
        for _ in 0..10 {
            assert_eq!(get_timers(&c, &s.url, bad).await.0, 401);
        }
    }
    let no_key = c.get(format!("{}/timers", s.url)).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(lookups(&s) - before, 0, "no lookup for a malformed key");
    assert_eq!(get_timers(&c, &s.url, ADMIN_KEY).await.0, 200);

    let metrics = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "minoots_rate_limited_total{{quota=\"{FAILED_AUTH_QUOTA}\",tier=\"none\"}} 22"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("minoots_store_key_lookups_total {}", lookups(&s))),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_guessed_keys_is_refused_with_bounded_store_lookups_while_every_timer_fires() {
    let requests = env_size("MINOOTS_FLOOD_REQUESTS", 20_000);
    let timers = env_size("MINOOTS_FLOOD_TIMERS", 10_000);
    /// Client addresses, and requests in flight from each.
    const ADDRESSES: u8 = 4;
    const IN_FLIGHT_PER_ADDRESS: usize = 8;
    let config = ControlPlaneConfig::default();
    let (burst, per_minute) = (config.failed_auth_burst, config.failed_auth_per_minute);
    let s = start(config).await;

    // Timers due from 1 s after set-up, over 3 s: they fall due while the flood runs.
    let now = SystemClock.now_us();
    let first_due = now + 1_000_000;
    let mut made = 0;
    while made < timers {
        let n = 1_000.min(timers - made);
        let chunk: Vec<TimerRequest> = (made..made + n)
            .map(|i| {
                let at = first_due + (i as i64 * 3_000_000 / timers.max(1) as i64);
                TimerRequest::from_json(
                    format!(r#"{{"fireAt": "{}", "name": "flood"}}"#, format_us(at)).as_bytes(),
                )
                .unwrap()
            })
            .collect();
        s.kernel.schedule_many("flood", chunk).await.unwrap();
        made += n;
    }

    let before = lookups(&s);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for a in 1..=ADDRESSES {
        let client = client_from(loopback(a));
        for _ in 0..IN_FLIGHT_PER_ADDRESS {
            let (client, next, url) = (client.clone(), next.clone(), s.url.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen: BTreeMap<(u16, bool), usize> = BTreeMap::new();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let key = generate_key().unwrap();
                    let (status, retry) = get_timers(&client, &url, &key).await;
                    *seen.entry((status, retry.is_some())).or_default() += 1;
                }
                seen
            }));
        }
    }
    let mut seen: BTreeMap<(u16, bool), usize> = BTreeMap::new();
    for t in tasks {
        for (k, n) in t.await.unwrap() {
            *seen.entry(k).or_default() += n;
        }
    }
    let flood_s = started.elapsed().as_secs_f64();
    let looked_up = lookups(&s) - before;

    // Every timer fires (waiting for the count, not for a fixed time).
    let deadline = Instant::now() + Duration::from_secs(60);
    while KernelMetrics::get(&s.kernel.metrics().timers_fired) < timers as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {timers} timers fired",
            KernelMetrics::get(&s.kernel.metrics().timers_fired)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The counter rises when the firing thread takes a timer, before its fire commits:
    // wait for the store to hold none scheduled.
    loop {
        let scheduled = s.kernel.store().stats().await.unwrap().scheduled_timers;
        if scheduled == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{scheduled} timers still scheduled in the store after every one was taken to fire"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Only 401 (no Retry-After) and 429 (with it).
    let total: usize = seen.values().sum();
    assert_eq!(total, requests);
    for (status, retry) in seen.keys() {
        assert!(
            matches!((status, retry), (401, false) | (429, true)),
            "unexpected answers to the flood: {seen:?}"
        );
    }
    // Each address: its burst, and one a second refilled while the flood ran.
    let refilled = (per_minute as f64 * flood_s / 60.0).ceil() as u64 + 1;
    let bound = u64::from(ADDRESSES) * (u64::from(burst) + refilled);
    eprintln!(
        "flood: {requests} requests in {flood_s:.1} s, answers {seen:?}, store key lookups {looked_up} (bound {bound}), {timers} timers fired"
    );
    assert!(
        looked_up <= bound,
        "{looked_up} key lookups reached the store, more than the bound {bound}"
    );
    assert_eq!(
        seen.get(&(401, false)).copied().unwrap_or(0) as u64,
        looked_up,
        "every 401 is one lookup"
    );
    assert!(
        seen.get(&(429, true)).copied().unwrap_or(0) as u64 >= requests as u64 - bound,
        "the rest is refused with 429: {seen:?}"
    );
    s.stop().await;
}
