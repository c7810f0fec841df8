//! Billing end to end: a real `minoots serve` against a fake Stripe on loopback
//! (`common/stripe.rs`). Signed Stripe events move a tenant's tier, and its limits with
//! it, at once; an event applies once; an older state never wins; a failed payment keeps
//! the tier until the grace period ends (a short one, set in days like any operator's),
//! then the tenant is free until it pays; usage reaches Stripe's meters once per bucket,
//! retried under the same identifier, and survives a SIGKILL of `serve`.

mod common;

use std::time::Duration;

use common::stripe::{FakeStripe, MeterMode};
use common::{KillOnDrop, WAIT, call, free_port, start_serve};
use minoots_control_plane::billing::signature::header_for;
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "mnt_billing_admin_key_0123456789abcdef0123";
const SECRET_KEY: &str = "sk_test_minoots_fake";
const OLD_WEBHOOK_SECRET: &str = "whsec_previous_secret";
const WEBHOOK_SECRET: &str = "whsec_current_secret";
const METER_PATH: &str = "/v1/billing/meter_events";

struct Server {
    child: Option<KillOnDrop>,
    base: String,
    ports: (u16, u16),
    dir: tempfile::TempDir,
}

fn env<'a>(fake: &'a str, grace_days: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("MINOOTS_ADMIN_KEY", ADMIN_KEY),
        ("MINOOTS_STRIPE_SECRET_KEY", SECRET_KEY),
        (
            "MINOOTS_STRIPE_WEBHOOK_SECRETS",
            "whsec_previous_secret, whsec_current_secret",
        ),
        ("MINOOTS_STRIPE_PRICE_PRO", "price_pro"),
        ("MINOOTS_STRIPE_PRICE_TEAM", "price_team"),
        ("MINOOTS_BILLING_GRACE_DAYS", grace_days),
        ("MINOOTS_STRIPE_API_BASE", fake),
        ("MINOOTS_BILLING_METER_BUCKET", "4s"),
        ("MINOOTS_BILLING_SEND_INTERVAL", "200ms"),
        ("MINOOTS_ALLOW_PRIVATE_TARGETS", "true"),
    ]
}

impl Server {
    fn start(fake: &FakeStripe, grace_days: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ports = (free_port(), free_port());
        let mut s = Server {
            child: None,
            base: String::new(),
            ports,
            dir,
        };
        s.restart(fake, grace_days);
        s
    }

    fn restart(&mut self, fake: &FakeStripe, grace_days: &str) {
        let (child, base) = start_serve(
            &self.dir.path().join("data"),
            self.ports.0,
            self.ports.1,
            &[],
            &env(&fake.base, grace_days),
        );
        self.child = Some(KillOnDrop(child));
        self.base = base;
    }

    fn sigkill(&mut self) {
        // KillOnDrop sends SIGKILL and reaps the process.
        self.child.take();
    }
}

async fn admin(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let (code, v) = call(
        http,
        Method::POST,
        format!("{base}{path}"),
        ADMIN_KEY,
        Some(body),
    )
    .await;
    assert_eq!(code, 201, "{path}: {v}");
    v
}

/// A tenant on the free tier and a key of its own.
async fn tenant(http: &reqwest::Client, base: &str, id: &str) -> String {
    admin(
        http,
        base,
        "/admin/tenants",
        json!({"id": id, "name": id, "tier": "free"}),
    )
    .await;
    let k = admin(
        http,
        base,
        "/admin/keys",
        json!({"tenantId": id, "name": "billing"}),
    )
    .await;
    k["key"].as_str().unwrap().to_string()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POSTs a Stripe event signed now with `secret`.
async fn send_event(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    event: &Value,
) -> (u16, Value) {
    let body = event.to_string();
    let sig = header_for(&[secret], now_s(), body.as_bytes());
    let resp = http
        .post(format!("{base}/webhooks/stripe"))
        .header("stripe-signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (
        code,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default(),
    )
}

fn subscription(status: &str, price: &str) -> Value {
    json!({"id": "sub_acme", "object": "subscription", "customer": "cus_acme", "status": status,
           "metadata": {"tenant_id": "acme"},
           "items": {"data": [{"price": {"id": price}, "current_period_start": 1_800_000_000i64,
                               "current_period_end": 1_802_592_000i64}]}})
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": {"object": object}})
}

async fn billing(http: &reqwest::Client, base: &str, key: &str) -> (Value, u64) {
    let resp = http
        .get(format!("{base}/billing"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let limit: u64 = resp.headers()["ratelimit-limit"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
        limit,
    )
}

async fn create(http: &reqwest::Client, base: &str, key: &str, body: Value) -> (u16, Value) {
    call(
        http,
        Method::POST,
        format!("{base}/timers"),
        key,
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_events_move_the_tier_and_its_limits_at_once() {
    let fake = FakeStripe::start().await;
    // A grace period of 3 s, written in days as an operator writes it.
    let server = Server::start(&fake, "0.0000347");
    let (http, base) = (reqwest::Client::new(), server.base.clone());
    let key = tenant(&http, &base, "acme").await;

    let (b, limit) = billing(&http, &base, &key).await;
    assert_eq!(
        (b["tier"].as_str(), b["status"].clone(), limit),
        (Some("free"), Value::Null, 60)
    );

    // Checkout: a session in subscription mode for the tier's price, for this tenant.
    let (code, bad) = call(
        &http,
        Method::POST,
        format!("{base}/billing/checkout"),
        &key,
        Some(json!({"tier": "gold"})),
    )
    .await;
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["errors"][0]["field"], "tier", "{bad}");
    let (code, link) = call(
        &http,
        Method::POST,
        format!("{base}/billing/checkout"),
        &key,
        Some(json!({"tier": "pro"})),
    )
    .await;
    assert_eq!(code, 200, "{link}");
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.test/")
    );
    let sent = &fake.requests("/v1/checkout/sessions")[0];
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Bearer sk_test_minoots_fake")
    );
    assert!(sent.idempotency_key.is_some());
    for (k, v) in [
        ("mode", "subscription"),
        ("line_items[0][price]", "price_pro"),
        ("line_items[0][quantity]", "1"),
        ("client_reference_id", "acme"),
    ] {
        assert_eq!(
            sent.form.get(k).map(String::as_str),
            Some(v),
            "{k}: {:?}",
            sent.form
        );
    }
    assert!(!sent.form.contains_key("customer"), "no customer yet");
    let (code, no_portal) = call(
        &http,
        Method::POST,
        format!("{base}/billing/portal"),
        &key,
        None,
    )
    .await;
    assert_eq!(code, 409, "{no_portal}");

    // Free: 5 scheduled timers at most.
    for _ in 0..5 {
        assert_eq!(
            create(&http, &base, &key, json!({"duration": "1h"}))
                .await
                .0,
            201
        );
    }
    let (code, refused) = create(&http, &base, &key, json!({"duration": "1h"})).await;
    assert_eq!(
        (code, refused["quota"].as_str()),
        (429, Some("pendingTimers")),
        "{refused}"
    );

    // The checkout completes: the tenant is linked and pro at once (limits included).
    fake.set_subscription(subscription("active", "price_pro"));
    let checkout = event(
        "evt_checkout",
        "checkout.session.completed",
        1_800_000_010,
        json!({
        "id": "cs_1", "object": "checkout.session", "client_reference_id": "acme",
        "customer": "cus_acme", "subscription": "sub_acme", "mode": "subscription"}),
    );
    let (code, r) = send_event(&http, &base, WEBHOOK_SECRET, &checkout).await;
    assert_eq!((code, r["effect"].as_str()), (200, Some("applied")), "{r}");
    let (b, limit) = billing(&http, &base, &key).await;
    assert_eq!(
        (b["tier"].as_str(), b["status"].as_str(), limit),
        (Some("pro"), Some("active"), 600),
        "{b}"
    );
    assert_eq!(b["currentPeriodEnd"], "2027-02-14T08:00:00Z");
    assert_eq!(
        create(&http, &base, &key, json!({"duration": "1h"}))
            .await
            .0,
        201,
        "pro allows a 6th"
    );

    // The same event again (signed with the previous secret, as during a rotation): no effect.
    let (code, r) = send_event(&http, &base, OLD_WEBHOOK_SECRET, &checkout).await;
    assert_eq!(
        (code, r["effect"].as_str()),
        (200, Some("duplicate")),
        "{r}"
    );

    // updated(team), then an older updated(pro): team stays.
    let team = event(
        "evt_team",
        "customer.subscription.updated",
        1_800_000_020,
        subscription("active", "price_team"),
    );
    assert_eq!(
        send_event(&http, &base, WEBHOOK_SECRET, &team).await.1["effect"],
        "applied"
    );
    let older = event(
        "evt_pro_older",
        "customer.subscription.updated",
        1_800_000_015,
        subscription("active", "price_pro"),
    );
    assert_eq!(
        send_event(&http, &base, WEBHOOK_SECRET, &older).await.1["effect"],
        "ignored"
    );
    let (b, limit) = billing(&http, &base, &key).await;
    assert_eq!((b["tier"].as_str(), limit), (Some("team"), 3_000), "{b}");

    // A failed payment: team until the grace period ends, then free.
    fake.set_subscription(subscription("past_due", "price_team"));
    let failed = event(
        "evt_failed",
        "invoice.payment_failed",
        1_800_000_030,
        json!({"id": "in_1", "object": "invoice", "customer": "cus_acme", "subscription": "sub_acme"}),
    );
    assert_eq!(
        send_event(&http, &base, WEBHOOK_SECRET, &failed).await.1["effect"],
        "applied"
    );
    let (b, _) = billing(&http, &base, &key).await;
    assert_eq!(
        (b["tier"].as_str(), b["status"].as_str()),
        (Some("team"), Some("past_due")),
        "{b}"
    );
    assert!(b["graceUntil"].is_string(), "{b}");
    let free = tokio::time::timeout(WAIT, async {
        loop {
            let (b, limit) = billing(&http, &base, &key).await;
            if b["tier"] == "free" {
                return (b, limit);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the tier becomes free once the grace period ends");
    assert_eq!(free.1, 60, "free limits at once");
    // Nothing is deleted: the 6 timers are still scheduled; a new one is refused by name.
    let list = common::get_json(&http, &format!("{base}/timers?status=scheduled"), &key).await;
    assert_eq!(list["timers"].as_array().unwrap().len(), 6, "{list}");
    let (code, refused) = create(&http, &base, &key, json!({"duration": "1h"})).await;
    assert_eq!(
        (code, refused["quota"].as_str()),
        (429, Some("pendingTimers")),
        "{refused}"
    );

    // Paid: team again. Deleted: free.
    fake.set_subscription(subscription("active", "price_team"));
    let paid = event(
        "evt_paid",
        "invoice.paid",
        1_800_000_040,
        json!({"id": "in_1", "object": "invoice", "customer": "cus_acme", "subscription": "sub_acme"}),
    );
    assert_eq!(
        send_event(&http, &base, WEBHOOK_SECRET, &paid).await.1["effect"],
        "applied"
    );
    let (b, limit) = billing(&http, &base, &key).await;
    assert_eq!(
        (b["tier"].as_str(), b["graceUntil"].clone(), limit),
        (Some("team"), Value::Null, 3_000),
        "{b}"
    );
    let deleted = event(
        "evt_deleted",
        "customer.subscription.deleted",
        1_800_000_050,
        subscription("canceled", "price_team"),
    );
    assert_eq!(
        send_event(&http, &base, WEBHOOK_SECRET, &deleted).await.1["effect"],
        "applied"
    );
    assert_eq!(billing(&http, &base, &key).await.0["tier"], "free");

    // The portal for the linked customer; a later checkout reuses it.
    let (code, portal) = call(
        &http,
        Method::POST,
        format!("{base}/billing/portal"),
        &key,
        None,
    )
    .await;
    assert_eq!(code, 200, "{portal}");
    assert_eq!(
        fake.requests("/v1/billing_portal/sessions")[0]
            .form
            .get("customer")
            .map(String::as_str),
        Some("cus_acme")
    );
    call(
        &http,
        Method::POST,
        format!("{base}/billing/checkout"),
        &key,
        Some(json!({"tier": "team"})),
    )
    .await;
    assert_eq!(
        fake.requests("/v1/checkout/sessions")[1]
            .form
            .get("customer")
            .map(String::as_str),
        Some("cus_acme")
    );

    // Bad signatures and bodies: 4xx naming what is wrong, and no effect.
    let body = event(
        "evt_forged",
        "customer.subscription.updated",
        1_800_000_060,
        subscription("active", "price_team"),
    )
    .to_string();
    let post = |sig: Option<String>, body: String| {
        let mut r = http.post(format!("{base}/webhooks/stripe")).body(body);
        if let Some(s) = sig {
            r = r.header("stripe-signature", s);
        }
        r.send()
    };
    for (sig, says) in [
        (None, "missing"),
        (Some("t=1,v0=abc".to_string()), "malformed"),
        (
            Some(header_for(&["whsec_wrong"], now_s(), body.as_bytes())),
            "no v1 signature",
        ),
        (
            Some(header_for(
                &[WEBHOOK_SECRET],
                now_s() - 301,
                body.as_bytes(),
            )),
            "more than the 300 s",
        ),
    ] {
        let resp = post(sig, body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400);
        let p: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(p["detail"].as_str().unwrap().contains(says), "{p}");
    }
    let huge = "x".repeat(300 * 1024);
    assert_eq!(
        post(
            Some(header_for(&[WEBHOOK_SECRET], now_s(), huge.as_bytes())),
            huge
        )
        .await
        .unwrap()
        .status(),
        413
    );
    assert_eq!(billing(&http, &base, &key).await.0["tier"], "free");
}

/// Waits until now is early in a metering bucket of `bucket_s` (at most 1 s into it), so
/// the writes that follow land in one bucket; returns its start in seconds.
async fn start_of_a_bucket(bucket_s: i64) -> i64 {
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let into = now_ms % (bucket_s * 1_000);
        if into < 500 {
            return now_ms / 1_000 - (now_ms / 1_000) % bucket_s;
        }
        tokio::time::sleep(Duration::from_millis((bucket_s * 1_000 - into + 50) as u64)).await;
    }
}

async fn receiver() -> String {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> u64 {
    let text = common::scrape(http, base).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

/// Waits until the billing service finished `n` more passes than `from`.
async fn passes_after(http: &reqwest::Client, base: &str, from: u64, n: u64) {
    tokio::time::timeout(WAIT, async {
        while metric(http, base, "minoots_billing_passes_total").await < from + n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("billing passes run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reaches_stripe_once_per_bucket_and_survives_a_kill() {
    let fake = FakeStripe::start().await;
    let mut server = Server::start(&fake, "7");
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let key = tenant(&http, &base, "acme").await;
    fake.set_subscription(subscription("active", "price_pro"));
    let checkout = event(
        "evt_checkout",
        "checkout.session.completed",
        1_800_000_010,
        json!({"client_reference_id": "acme", "customer": "cus_acme", "subscription": "sub_acme"}),
    );
    assert_eq!(
        send_event(&http, &base, WEBHOOK_SECRET, &checkout).await.0,
        200
    );
    let hook = receiver().await;

    // 3 creates and 2 successful deliveries in one 4 s bucket.
    let bucket = start_of_a_bucket(4).await;
    for i in 0..3 {
        let actions = if i < 2 {
            json!([{"type": "webhook", "url": hook}])
        } else {
            json!([])
        };
        let (code, t) = create(&http, &base, &key, json!({"duration": if i < 2 { "50ms" } else { "1h" }, "actionBundle": {"actions": actions}})).await;
        assert_eq!(code, 201, "{t}");
    }
    let sent = fake
        .wait_for(METER_PATH, "two meter events", |r| {
            r.iter().filter(|r| r.answered == 200).count() >= 2
        })
        .await;
    let by_name = |name: &str| {
        sent.iter()
            .find(|r| r.form["event_name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {sent:#?}"))
    };
    let created = by_name("minoots_timers_created");
    let delivered = by_name("minoots_deliveries_succeeded");
    assert_eq!(created.form["payload[value]"], "3");
    assert_eq!(delivered.form["payload[value]"], "2");
    assert_eq!(created.form["identifier"], format!("acme:tc:{bucket}"));
    assert_eq!(delivered.form["identifier"], format!("acme:ds:{bucket}"));
    for r in [&created, &delivered] {
        assert_eq!(r.form["payload[stripe_customer_id]"], "cus_acme");
        assert_eq!(r.form["timestamp"], bucket.to_string());
        assert_eq!(
            r.idempotency_key.as_deref(),
            Some(r.form["identifier"].as_str())
        );
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer sk_test_minoots_fake")
        );
    }
    assert_eq!(sent.len(), 2, "one event per meter and bucket: {sent:#?}");

    // A second run sends nothing: more passes, no more events.
    let passes = metric(&http, &base, "minoots_billing_passes_total").await;
    passes_after(&http, &base, passes, 3).await;
    assert_eq!(fake.requests(METER_PATH).len(), 2);

    // A 500 is retried with the same identifier.
    fake.set_meter_mode(MeterMode::Fail(1));
    let bucket = start_of_a_bucket(4).await;
    assert_eq!(
        create(&http, &base, &key, json!({"duration": "1h"}))
            .await
            .0,
        201
    );
    let id = format!("acme:tc:{bucket}");
    let tries = fake
        .wait_for(METER_PATH, "a retried meter event", |r| {
            r.iter()
                .any(|r| r.form["identifier"] == id && r.answered == 200)
        })
        .await;
    let tries: Vec<_> = tries
        .into_iter()
        .filter(|r| r.form["identifier"] == id)
        .collect();
    assert_eq!(
        tries.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![500, 200],
        "{tries:#?}"
    );
    assert!(tries.iter().all(|r| r.form["payload[value]"] == "1"));
    assert!(metric(&http, &base, "minoots_billing_meter_send_failures_total").await >= 1);

    // SIGKILL between counting and sending: Stripe never answers the send, the process
    // dies, and the restarted process sends the same bucket under the same identifier.
    fake.set_meter_mode(MeterMode::Hang);
    let bucket = start_of_a_bucket(4).await;
    for _ in 0..2 {
        assert_eq!(
            create(&http, &base, &key, json!({"duration": "1h"}))
                .await
                .0,
            201
        );
    }
    let id = format!("acme:tc:{bucket}");
    fake.wait_for(METER_PATH, "the send that hangs", |r| {
        r.iter().any(|r| r.form["identifier"] == id)
    })
    .await;
    server.sigkill();
    fake.set_meter_mode(MeterMode::Ok);
    server.restart(&fake, "7");
    let after = fake
        .wait_for(METER_PATH, "the bucket sent after the restart", |r| {
            r.iter()
                .any(|r| r.form["identifier"] == id && r.answered == 200)
        })
        .await;
    let sends: Vec<_> = after
        .iter()
        .filter(|r| r.form["identifier"] == id)
        .collect();
    assert!(
        sends.iter().all(|r| r.form["payload[value]"] == "2"),
        "{sends:#?}"
    );
    assert_eq!(
        sends.iter().filter(|r| r.answered == 200).count(),
        1,
        "{sends:#?}"
    );
    // And nothing else was sent twice with a 200.
    let mut ok: Vec<String> = after
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.form["identifier"].clone())
        .collect();
    let n = ok.len();
    ok.sort();
    ok.dedup();
    assert_eq!(ok.len(), n, "an identifier counted twice: {after:#?}");
}
