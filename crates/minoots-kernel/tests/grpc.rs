//! The kernel over real gRPC on loopback, driven by the gRPC implementation of
//! `KernelApi`: schedule, get, list with paging, cancel, event streams, leases and
//! reports, error codes, and the token.

#[allow(dead_code)]
mod common;
use common::{lease, next_item, succeeded};

use std::sync::Arc;

use minoots_core::{
    AttemptOutcome, Clock, EventType, Missing, SystemClock, TimerRequest, TimerStatus,
};
use minoots_kernel::grpc::{GrpcKernelClient, GrpcServerConfig, serve};
use minoots_kernel::{Kernel, KernelApi, KernelConfig, KernelError, LeaseRequest};
use minoots_store::{AttemptReport, EventQuery, SqliteConfig, SqliteStore, Store, TimerQuery};
use tokio::net::TcpListener;

struct Running {
    kernel: Arc<Kernel>,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

async fn start(token: Option<&str>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap());
    let kernel = Kernel::start(store, clock, KernelConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api: Arc<dyn KernelApi> = kernel.clone();
    let config = GrpcServerConfig {
        token: token.map(str::to_string),
    };
    tokio::spawn(async move {
        serve(api, listener, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        kernel,
        url,
        stop: Some(stop),
        _dir: dir,
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.kernel.shutdown().await;
    }
}

fn req(json: &str) -> TimerRequest {
    TimerRequest::from_json(json.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_and_fire_now_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    let t = c
        .schedule_timer("acme", req(r#"{"duration": "1h", "labels": {"a": "b"}}"#))
        .await
        .unwrap()
        .timer;
    let patch = |json: &str| minoots_core::TimerPatch::from_json(json.as_bytes()).unwrap();
    let changed = c
        .update_timer(
            "acme",
            t.id,
            patch(r#"{"version": 1, "duration": "2h", "labels": {}, "metadata": {"n": 1}}"#),
        )
        .await
        .unwrap();
    assert_eq!(changed.version, 2);
    // A duration counts from the change.
    assert_eq!(changed.duration_ms, Some(7_200_000));
    assert!(changed.fire_at_us >= t.created_at_us + 7_200_000_000);
    assert!(changed.labels.is_empty(), "empty labels travel as a change");
    assert_eq!(changed.metadata["n"], 1);
    assert_eq!(r.kernel.get_timer("acme", t.id).await.unwrap(), changed);
    // Refusals keep their meaning across the wire.
    let stale = c
        .update_timer("acme", t.id, patch(r#"{"version": 1, "duration": "3h"}"#))
        .await
        .unwrap_err();
    assert!(
        matches!(stale, KernelError::Conflict { status: None, .. }),
        "{stale:?}"
    );
    let bad = c
        .update_timer("acme", t.id, patch(r#"{"version": 2, "fireAt": "soon"}"#))
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, KernelError::Invalid(e) if e.errors[0].field == "fireAt"),
        "{bad:?}"
    );
    assert!(matches!(
        c.fire_timer_now("globex", t.id).await,
        Err(KernelError::NotFound(Missing::Timer(id))) if id == t.id
    ));
    let fired = c.fire_timer_now("acme", t.id).await.unwrap();
    assert_eq!(
        fired.status,
        TimerStatus::Settled,
        "no actions: settled on fire"
    );
    assert!(fired.fired_late_us().is_some_and(|l| l >= 0));
    assert!(matches!(
        c.fire_timer_now("acme", t.id).await,
        Err(KernelError::Conflict {
            status: Some(TimerStatus::Settled),
            ..
        })
    ));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_get_list_cancel_and_stream_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();

    const ORIGINAL: &str = r#"{"name": "webhook-test", "requestedBy": "user", "duration": "1h", "metadata": {"order": 42, "tags": ["a"]},
                   "labels": {"team": "ops"}, "idempotencyKey": "k-1",
                   "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/hook", "headers": {"x-a": "b"}, "body": {"x": 1}, "timeoutMs": 5000}],
                                    "retryPolicy": {"maxAttempts": 3}}}"#;
    let created = c.schedule_timer("acme", req(ORIGINAL)).await.unwrap();
    assert!(created.created);
    let t = created.timer;
    assert_eq!(t.name, "webhook-test");
    assert_eq!(t.metadata["order"], 42);
    assert_eq!(t.status, TimerStatus::Scheduled);
    // Everything survives both conversions.
    let got = c.get_timer("acme", t.id).await.unwrap();
    assert_eq!(got, t);
    assert_eq!(got, r.kernel.get_timer("acme", t.id).await.unwrap());
    // Idempotency key: the same request gives the same timer back.
    let again = c.schedule_timer("acme", req(ORIGINAL)).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.timer.id, t.id);

    // fireAt in every form the API accepts.
    let at = c
        .schedule_timer("acme", req(r#"{"fireAt": "2099-01-01T00:00:00+01:00"}"#))
        .await;
    assert!(
        matches!(at, Err(KernelError::Invalid(ref e)) if e.has_field("fireAt")),
        "beyond 10 years: {at:?}"
    );

    for i in 0..7 {
        c.schedule_timer("acme", req(&format!(r#"{{"duration": "{}m"}}"#, 10 + i)))
            .await
            .unwrap();
    }
    // Paging: 3 + 3 + 2 timers in fire order, each page continuing where the last ended.
    let mut all = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = c
            .list_timers(TimerQuery {
                tenant_id: "acme".into(),
                status: None,
                label: None,
                limit: 3,
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        pages += 1;
        all.extend(page.timers);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].fire_at_us <= w[1].fire_at_us));
    let ops = c
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            status: None,
            label: Some(("team".into(), "ops".into())),
            limit: 50,
            after: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ops.timers.len(), 1);

    let mut events = c
        .stream_events(EventQuery {
            after_seq: 0,
            tenant_id: Some("acme".into()),
            types: vec![EventType::TimerCancelled],
            ..Default::default()
        })
        .await
        .unwrap();
    let cancelled = c
        .cancel_timer("acme", t.id, Some("no longer needed".into()))
        .await
        .unwrap();
    assert_eq!(cancelled.status, TimerStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("no longer needed"));
    let e = next_item(&mut events).await;
    assert_eq!(e.timer_id, t.id);
    assert_eq!(e.event_type, EventType::TimerCancelled);
    assert_eq!(e.data["reason"], "no longer needed");

    // Errors keep their meaning across the wire.
    let conflict = c.cancel_timer("acme", t.id, None).await.unwrap_err();
    assert!(
        matches!(
            conflict,
            KernelError::Conflict {
                status: Some(TimerStatus::Cancelled),
                ..
            }
        ),
        "{conflict:?}"
    );
    assert!(matches!(
        c.get_timer("other", t.id).await,
        Err(KernelError::NotFound(_))
    ));
    let bad = c
        .schedule_timer("acme", req(r#"{"duration": "soon"}"#))
        .await
        .unwrap_err();
    match bad {
        KernelError::Invalid(e) => {
            assert!(e.has_field("duration"), "{e}");
            assert!(
                e.errors[0].message.contains("30s"),
                "says how to fix it: {e}"
            );
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    let bad_page = c
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            status: None,
            label: None,
            limit: 100_000,
            after: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(bad_page, KernelError::Invalid(ref e) if e.has_field("limit")));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_resume_from_a_sequence_number_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    for _ in 0..4 {
        c.schedule_timer("acme", req(r#"{"duration": "1h"}"#))
            .await
            .unwrap();
    }
    let mut s = c.stream_events(EventQuery::default()).await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..4 {
        seqs.push(next_item(&mut s).await.seq);
    }
    drop(s);
    let mut resumed = c
        .stream_events(EventQuery {
            after_seq: seqs[1],
            ..Default::default()
        })
        .await
        .unwrap();
    let a = next_item(&mut resumed).await;
    let b = next_item(&mut resumed).await;
    assert_eq!((a.seq, b.seq), (seqs[2], seqs[3]));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_leased_and_reported_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    let t = c
        .schedule_timer("acme", req(r#"{"duration": "50ms", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}]}}"#))
        .await
        .unwrap()
        .timer;
    let mut leases = c
        .lease_deliveries(lease("orch-1", 30_000, 4))
        .await
        .unwrap();
    let d = next_item(&mut leases).await;
    assert_eq!(d.timer.id, t.id);
    assert_eq!(d.action, t.action_bundle.actions[0]);
    let report = AttemptReport {
        delivery_id: d.delivery.id,
        lease_owner: "orch-1".into(),
        attempt: d.delivery.attempt,
        started_at_us: SystemClock.now_us(),
        duration_us: 1_500,
        outcome: AttemptOutcome::Succeeded,
        retry_after_ms: None,
        http_status: Some(204),
        exit_code: None,
        error: None,
        response_excerpt: Some(String::new()),
    };
    let stale = AttemptReport {
        lease_owner: "orch-2".into(),
        ..report.clone()
    };
    assert!(matches!(
        c.report_attempt(stale).await,
        Err(KernelError::Fenced(_))
    ));
    let out = c.report_attempt(report).await.unwrap();
    assert_eq!(out.timer_status, TimerStatus::Settled);
    let ds = c.list_deliveries("acme", t.id).await.unwrap();
    assert_eq!(ds[0].attempts[0].http_status, Some(204));
    assert!(matches!(
        c.list_deliveries("other", t.id).await,
        Err(KernelError::NotFound(_))
    ));
    let bad = c
        .lease_deliveries(LeaseRequest {
            lease_owner: String::new(),
            lease_ttl_ms: 10,
            max_in_flight: 0,
        })
        .await;
    assert!(matches!(bad, Err(KernelError::Invalid(_))));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_configured() {
    let r = start(Some("a-long-enough-kernel-token")).await;
    let none = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    assert!(matches!(
        none.get_timer("acme", minoots_core::TimerId::new_v7())
            .await,
        Err(KernelError::Unauthenticated(_))
    ));
    let wrong = GrpcKernelClient::connect_lazy(&r.url, Some("a-long-enough-kernel-tokeN")).unwrap();
    assert!(matches!(
        wrong
            .get_timer("acme", minoots_core::TimerId::new_v7())
            .await,
        Err(KernelError::Unauthenticated(_))
    ));
    let right = GrpcKernelClient::connect_lazy(&r.url, Some("a-long-enough-kernel-token")).unwrap();
    assert!(matches!(
        right
            .get_timer("acme", minoots_core::TimerId::new_v7())
            .await,
        Err(KernelError::NotFound(_))
    ));
    r.stop().await;
}

#[tokio::test]
async fn a_kernel_beyond_loopback_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path()), clock.clone()).unwrap());
    let kernel = Kernel::start(store, clock, KernelConfig::default()).unwrap();
    // Binding the wildcard address sends no traffic anywhere; serve must refuse at once.
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = serve(
        kernel.clone(),
        listener,
        GrpcServerConfig::default(),
        async {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, KernelError::Config(c) if c.setting == "MINOOTS_KERNEL_TOKEN"),
        "{err}"
    );
    kernel.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_kernel_is_reported_as_unavailable() {
    // A loopback port that was just free: nothing listens there, the connection is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = GrpcKernelClient::connect_lazy(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let e = c
        .get_timer("acme", minoots_core::TimerId::new_v7())
        .await
        .unwrap_err();
    assert!(matches!(e, KernelError::Unavailable(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_redrive_and_release_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();

    let first = c.webhook_secrets("acme").await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        first[0].starts_with("whsec_") && first[0].len() > 40,
        "{first:?}"
    );
    assert_eq!(
        c.webhook_secrets("acme").await.unwrap(),
        first,
        "stable until rotated"
    );
    assert_ne!(
        c.webhook_secrets("other").await.unwrap(),
        first,
        "per tenant"
    );
    let new = c.rotate_webhook_secret("acme").await.unwrap();
    assert_eq!(
        c.webhook_secrets("acme").await.unwrap(),
        vec![new, first[0].clone()],
        "both sign during the grace period"
    );
    assert!(matches!(
        c.webhook_secrets("bad tenant!").await,
        Err(KernelError::Invalid(_))
    ));

    let t = c
        .schedule_timer(
            "acme",
            req(r#"{"duration": "20ms", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}], "retryPolicy": {"maxAttempts": 2}}}"#),
        )
        .await
        .unwrap()
        .timer;
    let mut leases = c
        .lease_deliveries(lease("orch-1", 30_000, 4))
        .await
        .unwrap();
    let d = next_item(&mut leases).await;
    // Only the lease holder can hand it back.
    assert!(matches!(
        c.release_delivery(d.delivery.id, "orch-2", d.delivery.attempt)
            .await,
        Err(KernelError::Fenced(_))
    ));
    // Handed back unexecuted: it comes straight back, and the hand-back was no attempt.
    c.release_delivery(d.delivery.id, "orch-1", d.delivery.attempt)
        .await
        .unwrap();
    let d = next_item(&mut leases).await;
    assert_eq!(d.delivery.attempt, 1);
    let report = AttemptReport {
        delivery_id: d.delivery.id,
        lease_owner: "orch-1".into(),
        attempt: d.delivery.attempt,
        started_at_us: SystemClock.now_us(),
        duration_us: 1,
        outcome: AttemptOutcome::Permanent,
        retry_after_ms: None,
        http_status: Some(404),
        exit_code: None,
        error: Some("not found".into()),
        response_excerpt: None,
    };
    assert_eq!(
        c.report_attempt(report).await.unwrap().timer_status,
        TimerStatus::Failed
    );
    let redriven = c.redrive_timer("acme", t.id).await.unwrap();
    assert_eq!(redriven.status, TimerStatus::Fired);
    let d = next_item(&mut leases).await;
    assert_eq!(d.delivery.attempt, 2, "runs again after the redrive");
    let conflict = c.redrive_timer("acme", t.id).await.unwrap_err();
    assert!(
        matches!(conflict, KernelError::Conflict { .. }),
        "{conflict:?}"
    );
    assert!(matches!(
        c.redrive_timer("other", t.id).await,
        Err(KernelError::NotFound(_))
    ));
    r.stop().await;
}

fn new_key(id: &str, tenant: &str, hash: u8, roles: &[&str]) -> minoots_store::ApiKey {
    minoots_store::ApiKey {
        id: id.into(),
        tenant_id: tenant.into(),
        name: format!("key {id}"),
        key_hash: [hash; 32],
        prefix: "mnt_xyz".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        created_at_us: 0,
        expires_at_us: None,
        revoked_at_us: None,
        last_used_at_us: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_keys_and_authentication_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    let tenant = c
        .create_tenant(minoots_kernel::NewTenant {
            id: "acme".into(),
            name: "Acme".into(),
            tier: "free".into(),
        })
        .await
        .unwrap();
    assert_eq!(tenant.tier, "free");
    assert!(tenant.created_at_us > 0);
    let dup = c
        .create_tenant(minoots_kernel::NewTenant {
            id: "acme".into(),
            name: "Again".into(),
            tier: "free".into(),
        })
        .await;
    assert!(matches!(dup, Err(KernelError::Conflict { .. })), "{dup:?}");
    let bad = c
        .create_tenant(minoots_kernel::NewTenant {
            id: "no spaces".into(),
            name: "x".into(),
            tier: "free".into(),
        })
        .await;
    assert!(
        matches!(&bad, Err(KernelError::Invalid(e)) if e.has_field("id")),
        "{bad:?}"
    );

    // A key for an unknown tenant is refused; a key for acme authenticates.
    let orphan = c
        .create_api_key(new_key("k0", "ghost", 9, &["admin"]))
        .await;
    assert!(
        matches!(orphan, Err(KernelError::NotFound(_))),
        "{orphan:?}"
    );
    let key = c
        .create_api_key(new_key("k1", "acme", 1, &["timers:read", "timers:write"]))
        .await
        .unwrap();
    assert_eq!(key.roles, ["timers:read", "timers:write"]);
    let (found, found_tenant) = c.authenticate([1; 32]).await.unwrap().expect("live key");
    assert_eq!(found.id, "k1");
    assert_eq!(found_tenant.id, "acme");
    assert_eq!(c.authenticate([2; 32]).await.unwrap(), None);

    // A tier change shows at the next authentication (the cache is emptied).
    c.update_tenant(
        "acme",
        minoots_store::TenantUpdate {
            tier: Some("pro".into()),
            name: None,
        },
    )
    .await
    .unwrap();
    let (_, t) = c.authenticate([1; 32]).await.unwrap().unwrap();
    assert_eq!(t.tier, "pro");

    // Revocation takes effect at once, even though the key was cached.
    let revoked = c.revoke_api_key("k1").await.unwrap();
    assert!(revoked.revoked_at_us.is_some());
    assert_eq!(c.authenticate([1; 32]).await.unwrap(), None);
    assert!(matches!(
        c.revoke_api_key("nope").await,
        Err(KernelError::NotFound(_))
    ));

    // An expired key does not authenticate.
    let mut expired = new_key("k2", "acme", 2, &["timers:read"]);
    expired.expires_at_us = Some(SystemClock.now_us() - 1);
    c.create_api_key(expired).await.unwrap();
    assert_eq!(c.authenticate([2; 32]).await.unwrap(), None);

    let keys = c
        .list_api_keys(Some("acme".into()), None, 10)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].key_hash, [1; 32]);
    let tenants = c.list_tenants(None, 10).await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert!(matches!(
        c.list_tenants(None, 0).await,
        Err(KernelError::Invalid(_))
    ));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_idempotency_conflicts_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    let quotas = minoots_kernel::TenantQuotas {
        max_per_day: Some(10),
        max_pending: Some(2),
    };
    for _ in 0..2 {
        c.schedule_timer_with("acme", req(r#"{"duration": "1h"}"#), quotas)
            .await
            .unwrap();
    }
    let over = c
        .schedule_timer_with("acme", req(r#"{"duration": "1h"}"#), quotas)
        .await;
    assert_eq!(
        over.unwrap_err(),
        KernelError::QuotaExceeded {
            quota: minoots_core::Quota::PendingTimers,
            limit: 2
        }
    );
    let usage = c.tenant_usage("acme").await.unwrap();
    assert_eq!((usage.created_today, usage.pending), (2, 2));

    let first = c
        .schedule_timer(
            "acme",
            req(r#"{"duration": "1h", "idempotencyKey": "k", "metadata": {"a": 1}}"#),
        )
        .await
        .unwrap();
    let replay = c
        .schedule_timer(
            "acme",
            req(r#"{"duration": "1h", "idempotencyKey": "k", "metadata": {"a": 1}}"#),
        )
        .await
        .unwrap();
    assert!(!replay.created);
    assert_eq!(replay.timer.id, first.timer.id);
    let other_body = c
        .schedule_timer(
            "acme",
            req(r#"{"duration": "2h", "idempotencyKey": "k", "metadata": {"a": 1}}"#),
        )
        .await;
    assert!(
        matches!(&other_body, Err(KernelError::Conflict { message, .. }) if message.contains("idempotency key")),
        "{other_body:?}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_not_found_is_named_in_process_and_over_grpc() {
    let r = start(None).await;
    let remote = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    let in_process: Arc<dyn KernelApi> = r.kernel.clone();
    let over_grpc: Arc<dyn KernelApi> = Arc::new(remote);
    let t = r
        .kernel
        .schedule_timer("acme", req(r#"{"duration": "1h"}"#))
        .await
        .unwrap()
        .timer;
    let no_timer = minoots_core::TimerId::new_v7();
    let no_delivery = minoots_core::DeliveryId::new_v7();
    let report = succeeded(no_delivery, "orch-1", 1, SystemClock.now_us());
    let key = minoots_store::ApiKey {
        id: "key-of-nobody".into(),
        tenant_id: "nobody".into(),
        name: "a key".into(),
        key_hash: [7; 32],
        prefix: "mnt_abcd".into(),
        roles: vec!["timers:read".into()],
        created_at_us: SystemClock.now_us(),
        expires_at_us: None,
        revoked_at_us: None,
        last_used_at_us: None,
    };
    for (how, k) in [("in process", &in_process), ("over gRPC", &over_grpc)] {
        let delivery = Missing::Delivery(no_delivery);
        let tenant = Missing::Tenant("nobody".into());
        let cases: Vec<(&str, Result<(), KernelError>, Missing)> = vec![
            (
                "get",
                k.get_timer("acme", no_timer).await.map(drop),
                Missing::Timer(no_timer),
            ),
            (
                "get another tenant's",
                k.get_timer("other", t.id).await.map(drop),
                Missing::Timer(t.id),
            ),
            (
                "cancel another tenant's",
                k.cancel_timer("other", t.id, None).await.map(drop),
                Missing::Timer(t.id),
            ),
            (
                "deliveries of another tenant's",
                k.list_deliveries("other", t.id).await.map(drop),
                Missing::Timer(t.id),
            ),
            (
                "redrive",
                k.redrive_timer("acme", no_timer).await.map(drop),
                Missing::Timer(no_timer),
            ),
            (
                "report",
                k.report_attempt(report.clone()).await.map(drop),
                delivery.clone(),
            ),
            (
                "release",
                k.release_delivery(no_delivery, "orch-1", 1).await,
                delivery.clone(),
            ),
            (
                "release later",
                k.release_delivery_after(no_delivery, "orch-1", 1, 10).await,
                delivery.clone(),
            ),
            (
                "get tenant",
                k.get_tenant("nobody").await.map(drop),
                tenant.clone(),
            ),
            (
                "update tenant",
                k.update_tenant("nobody", Default::default())
                    .await
                    .map(drop),
                tenant.clone(),
            ),
            (
                "key for a tenant",
                k.create_api_key(key.clone()).await.map(drop),
                tenant.clone(),
            ),
            (
                "revoke key",
                k.revoke_api_key("no-such-key").await.map(drop),
                Missing::ApiKey("no-such-key".into()),
            ),
        ];
        for (what, got, missing) in cases {
            assert_eq!(got, Err(KernelError::NotFound(missing)), "{what} {how}");
        }
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_over_grpc() {
    use minoots_core::schedule::{RunStatus, ScheduleRequest};
    use minoots_kernel::ScheduleQuotas;
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    let every_second =
        ScheduleRequest::from_json(br#"{"every": "1s", "labels": {"k": "v"}}"#).unwrap();
    let s = c
        .create_schedule(
            "acme",
            every_second.clone(),
            ScheduleQuotas {
                max_schedules: Some(1),
                min_interval_ms: 1000,
            },
        )
        .await
        .unwrap();
    // The record comes back as the kernel holds it (its progress moves on meanwhile: the
    // dispatcher works on the real clock, so only what no dispatch changes is compared).
    let same = |a: &minoots_core::schedule::Schedule, b: &minoots_core::schedule::Schedule| {
        (a.id, &a.tenant_id, &a.request, a.created_at_us, a.version)
            == (b.id, &b.tenant_id, &b.request, b.created_at_us, b.version)
    };
    let local = r.kernel.get_schedule("acme", s.id).await.unwrap();
    assert!(same(&local, &s));
    assert!(same(&c.get_schedule("acme", s.id).await.unwrap(), &s));
    let listed = c
        .list_schedules("acme", &Default::default(), None, 10)
        .await
        .unwrap();
    assert!(listed.len() == 1 && same(&listed[0], &s));
    assert!(matches!(
        c.get_schedule("other", s.id).await,
        Err(KernelError::NotFound(Missing::Schedule(id))) if id == s.id
    ));
    // The quota and the tier's interval travel with the request.
    let quota = c
        .create_schedule(
            "acme",
            every_second.clone(),
            ScheduleQuotas {
                max_schedules: Some(1),
                min_interval_ms: 0,
            },
        )
        .await;
    assert!(
        matches!(quota, Err(KernelError::QuotaExceeded { limit: 1, .. })),
        "{quota:?}"
    );
    let too_often = c
        .create_schedule(
            "b",
            every_second,
            ScheduleQuotas {
                max_schedules: None,
                min_interval_ms: 60_000,
            },
        )
        .await;
    assert!(
        matches!(&too_often, Err(KernelError::Invalid(e)) if e.has_field("every")),
        "{too_often:?}"
    );
    // Runs on the real clock: wait for the first record, then read it over gRPC.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let runs = loop {
        let runs = c.list_schedule_runs("acme", s.id, None, 10).await.unwrap();
        if !runs.is_empty() {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a run within its lead"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(runs[0].status, RunStatus::Fired);
    assert_eq!(
        runs,
        r.kernel
            .list_schedule_runs("acme", s.id, None, runs.len())
            .await
            .unwrap()
    );
    // Changes travel too: a pause, a trigger (its timer comes back), a patch refused at a
    // stale version and one that names a bad field, and a delete.
    use minoots_kernel::{ScheduleChange, ScheduleChanged};
    let quotas = ScheduleQuotas {
        max_schedules: None,
        min_interval_ms: 1000,
    };
    let change = |change: ScheduleChange| c.change_schedule("acme", s.id, change, quotas);
    let ScheduleChanged { schedule, timer } = change(ScheduleChange::Pause).await.unwrap();
    assert_eq!(schedule.progress.status.as_str(), "paused");
    assert!(timer.is_none());
    let triggered = change(ScheduleChange::Trigger).await.unwrap();
    let timer = triggered.timer.expect("the trigger's run");
    assert_eq!(timer.schedule.map(|l| l.id), Some(s.id));
    let patch = |json: &str| {
        serde_json::from_str::<serde_json::Value>(json)
            .unwrap()
            .as_object()
            .unwrap()
            .clone()
    };
    let stale = change(ScheduleChange::Update {
        version: schedule.version + 5,
        patch: patch(r#"{"every": "2s"}"#),
    })
    .await;
    assert!(
        matches!(stale, Err(KernelError::Conflict { .. })),
        "{stale:?}"
    );
    let bad = change(ScheduleChange::Update {
        version: schedule.version,
        patch: patch(r#"{"every": "2s", "timezone": "Nowhere/Land"}"#),
    })
    .await;
    assert!(
        matches!(&bad, Err(KernelError::Invalid(e)) if e.has_field("timezone")),
        "{bad:?}"
    );
    let ok = change(ScheduleChange::Update {
        version: schedule.version,
        patch: patch(r#"{"every": "2s"}"#),
    })
    .await
    .unwrap();
    assert_eq!(ok.schedule.version, schedule.version + 1);
    change(ScheduleChange::Delete).await.unwrap();
    assert!(matches!(
        c.get_schedule("acme", s.id).await,
        Err(KernelError::NotFound(_))
    ));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_and_list_filters_over_grpc() {
    let r = start(None).await;
    let c = GrpcKernelClient::connect_lazy(&r.url, None).unwrap();
    for (name, minutes) in [("backup-db", 10), ("backup-files", 20), ("report", 30)] {
        c.schedule_timer(
            "acme",
            req(&format!(
                r#"{{"name": "{name}", "duration": "{minutes}m"}}"#
            )),
        )
        .await
        .unwrap();
    }
    let cancelled = c
        .schedule_timer("acme", req(r#"{"name": "backup-old", "duration": "1h"}"#))
        .await
        .unwrap()
        .timer;
    c.cancel_timer("acme", cancelled.id, None).await.unwrap();
    // A success, reported as an executor would, for the activity.
    c.schedule_timer(
        "acme",
        req(r#"{"duration": "1ms", "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}]}}"#),
    )
    .await
    .unwrap();
    let mut leases = c.lease_deliveries(lease("w1", 30_000, 1)).await.unwrap();
    let leased = next_item(&mut leases).await;
    c.report_attempt(succeeded(
        leased.delivery.id,
        "w1",
        leased.delivery.attempt,
        SystemClock.now_us(),
    ))
    .await
    .unwrap();
    drop(leases);

    let counts = c.timer_counts("acme").await.unwrap();
    assert_eq!((counts.scheduled, counts.cancelled), (3, 1));
    assert_eq!(counts.settled + counts.fired, 1);
    assert!(!counts.capped);
    assert_eq!(c.timer_counts("other").await.unwrap().scheduled, 0);

    let activity = c.delivery_activity("acme", 5).await.unwrap();
    assert_eq!(activity.minutes.len(), 5);
    assert!(activity.complete);
    let succeeded: u64 = activity.minutes.iter().map(|m| m.succeeded).sum();
    assert_eq!(succeeded, 1);
    let now = SystemClock.now_us();
    let last = activity.minutes.last().unwrap().start_us;
    assert!(
        last <= now && now - last < 60_000_000 + 5_000_000,
        "{last} {now}"
    );
    let bad = c.delivery_activity("acme", 61).await;
    assert!(
        matches!(&bad, Err(KernelError::Invalid(e)) if e.has_field("minutes")),
        "{bad:?}"
    );

    // Name prefix and fire-time bounds cross the wire with the status filter.
    let first = c
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .timers;
    let backup_db = first.iter().find(|t| t.name == "backup-db").unwrap();
    let names = c
        .list_timers(TimerQuery {
            tenant_id: "acme".into(),
            status: Some(TimerStatus::Scheduled),
            name_prefix: Some("backup".into()),
            fire_from_us: Some(backup_db.fire_at_us + 1),
            fire_before_us: Some(backup_db.fire_at_us + 3_600_000_000),
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .timers
        .into_iter()
        .map(|t| t.name)
        .collect::<Vec<_>>();
    assert_eq!(names, vec!["backup-files".to_string()]);
    r.stop().await;
}
