//! Conformance case about what does not exist: every operation that names an object
//! answers `NotFound` saying which kind of object it did not find, with the id it was
//! asked for, whether the object never existed or belongs to another tenant. The kernel
//! passes this value on unchanged, so a wrong kind here is a wrong answer to the user.

use minoots_core::{AttemptOutcome, DeliveryId, TimerId};

use super::{Harness, SEC, T0, all_events, create, report_on, timer};
use crate::*;

pub async fn every_not_found_names_what_is_missing(h: &Harness) {
    let t = create(h, timer(h, "acme", T0 + SEC, 1)).await;
    let no_timer = TimerId::new_v7();
    let no_delivery = DeliveryId::new_v7();
    let report = report_on(no_delivery, "w1", 1, AttemptOutcome::Succeeded, T0);
    let s = &h.store;
    let cases: Vec<(&str, StoreResult<()>, Missing)> = vec![
        (
            "cancel an unknown timer",
            s.cancel_timer("acme", no_timer, None).await.map(drop),
            Missing::Timer(no_timer),
        ),
        (
            "cancel another tenant's timer",
            s.cancel_timer("other", t.id, None).await.map(drop),
            Missing::Timer(t.id),
        ),
        (
            "list the deliveries of another tenant's timer",
            s.list_deliveries("other", t.id).await.map(drop),
            Missing::Timer(t.id),
        ),
        (
            "redrive an unknown timer",
            s.redrive_timer("acme", no_timer).await.map(drop),
            Missing::Timer(no_timer),
        ),
        (
            "report on an unknown delivery",
            s.report_attempt(report).await.map(drop),
            Missing::Delivery(no_delivery),
        ),
        (
            "release an unknown delivery",
            s.release_delivery(no_delivery, "w1", 1).await,
            Missing::Delivery(no_delivery),
        ),
        (
            "release an unknown delivery after a delay",
            s.release_delivery_after(no_delivery, "w1", 1, SEC).await,
            Missing::Delivery(no_delivery),
        ),
        (
            "update an unknown tenant",
            s.update_tenant("nobody", TenantUpdate::default())
                .await
                .map(drop),
            Missing::Tenant("nobody".into()),
        ),
        (
            "revoke an unknown key",
            s.revoke_api_key("no-such-key").await.map(drop),
            Missing::ApiKey("no-such-key".into()),
        ),
    ];
    for (what, got, missing) in cases {
        assert_eq!(got, Err(StoreError::NotFound(missing)), "{what}");
    }
    assert_eq!(all_events(h).await.len(), 1, "the refusals wrote nothing");
}
