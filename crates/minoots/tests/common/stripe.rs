//! A fake of the few Stripe API endpoints MINOOTS calls, served on loopback inside a test:
//! it records every request (path, headers, form fields, the status it answered) and can
//! be told to answer meter events with 500 a number of times, or to never answer them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::WAIT;

/// How the fake answers `POST /v1/billing/meter_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterMode {
    Ok,
    /// 500 for the next `n` requests, then 200.
    Fail(u32),
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub form: BTreeMap<String, String>,
    /// The status answered; 0 while (or when never) answered.
    pub answered: u16,
}

pub struct FakeStripe {
    pub base: String,
    requests: Mutex<Vec<Recorded>>,
    /// Subscriptions served by `GET /v1/subscriptions/{id}`.
    subscriptions: Mutex<HashMap<String, Value>>,
    meter_mode: Mutex<MeterMode>,
    arrived: Notify,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl FakeStripe {
    pub async fn start() -> Arc<FakeStripe> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(FakeStripe {
            base,
            requests: Mutex::default(),
            subscriptions: Mutex::default(),
            meter_mode: Mutex::new(MeterMode::Ok),
            arrived: Notify::new(),
        });
        let app = axum::Router::new()
            .route("/v1/checkout/sessions", axum::routing::post(checkout))
            .route("/v1/billing_portal/sessions", axum::routing::post(portal))
            .route("/v1/billing/meter_events", axum::routing::post(meter))
            .route("/v1/subscriptions/{id}", axum::routing::get(subscription))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Sets what `GET /v1/subscriptions/{id}` answers.
    pub fn set_subscription(&self, sub: Value) {
        let id = sub["id"].as_str().unwrap().to_string();
        self.subscriptions.lock().unwrap().insert(id, sub);
    }

    pub fn set_meter_mode(&self, mode: MeterMode) {
        *self.meter_mode.lock().unwrap() = mode;
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until `done` holds for the requests to `path`; returns them.
    pub async fn wait_for(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.arrived.notified();
                let seen = self.requests(path);
                if done(&seen) {
                    return seen;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the fake Stripe saw {what}: {:#?}", self.requests(path)))
    }

    fn record(&self, method: &str, path: String, h: &HeaderMap, body: &[u8]) -> usize {
        let form = url::form_urlencoded::parse(body).into_owned().collect();
        let mut all = self.requests.lock().unwrap();
        all.push(Recorded {
            method: method.into(),
            path,
            authorization: header(h, "authorization"),
            idempotency_key: header(h, "idempotency-key"),
            form,
            answered: 0,
        });
        all.len() - 1
    }

    fn answer(&self, i: usize, status: StatusCode, body: Value) -> Response {
        self.requests.lock().unwrap()[i].answered = status.as_u16();
        self.arrived.notify_waiters();
        (status, axum::Json(body)).into_response()
    }
}

async fn checkout(State(f): State<Arc<FakeStripe>>, h: HeaderMap, body: Bytes) -> Response {
    let i = f.record("POST", "/v1/checkout/sessions".into(), &h, &body);
    let url = format!("https://checkout.stripe.test/c/cs_{i}");
    f.answer(
        i,
        StatusCode::OK,
        json!({"id": format!("cs_{i}"), "url": url}),
    )
}

async fn portal(State(f): State<Arc<FakeStripe>>, h: HeaderMap, body: Bytes) -> Response {
    let i = f.record("POST", "/v1/billing_portal/sessions".into(), &h, &body);
    f.answer(
        i,
        StatusCode::OK,
        json!({"id": "bps_1", "url": "https://billing.stripe.test/p/bps_1"}),
    )
}

async fn subscription(
    State(f): State<Arc<FakeStripe>>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Response {
    let i = f.record("GET", format!("/v1/subscriptions/{id}"), &h, b"");
    let found = f.subscriptions.lock().unwrap().get(&id).cloned();
    match found {
        Some(sub) => f.answer(i, StatusCode::OK, sub),
        None => f.answer(
            i,
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "resource_missing", "message": "No such subscription"}}),
        ),
    }
}

async fn meter(State(f): State<Arc<FakeStripe>>, h: HeaderMap, body: Bytes) -> Response {
    let i = f.record("POST", "/v1/billing/meter_events".into(), &h, &body);
    let mode = {
        let mut m = f.meter_mode.lock().unwrap();
        let now = *m;
        if let MeterMode::Fail(n) = now {
            *m = if n > 1 {
                MeterMode::Fail(n - 1)
            } else {
                MeterMode::Ok
            };
        }
        now
    };
    match mode {
        MeterMode::Ok => f.answer(i, StatusCode::OK, json!({"object": "billing.meter_event"})),
        MeterMode::Fail(_) => f.answer(
            i,
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"message": "a fake outage"}}),
        ),
        MeterMode::Hang => {
            f.arrived.notify_waiters();
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}
