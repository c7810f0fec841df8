//! Conversions of a timer change (`UpdateTimer`) between [`TimerPatch`] and its protobuf
//! message, both directions. Decoding never panics: a malformed action becomes a
//! validation error naming the field, and the patch itself is validated by the kernel
//! exactly as the REST API's body is.

use minoots_core::{DurationInput, TimerId, TimerPatch, ValidationErrors};

use super::convert::{bundle_of, bundle_pb, from_struct, timer_id_of, to_struct};
use super::pb;
use crate::error::KernelResult;

/// The tenant, timer and patch a request carries.
pub fn update_request_of(r: pb::UpdateTimerRequest) -> KernelResult<(String, TimerId, TimerPatch)> {
    use pb::update_timer_request::When;
    let id = timer_id_of(&r.id, "id")?;
    let mut errors = ValidationErrors::new();
    let (duration, fire_at) = match r.when {
        None => (None, None),
        Some(When::Duration(d)) => (Some(DurationInput::Text(d)), None),
        Some(When::DurationMs(ms)) => (Some(DurationInput::Millis(ms)), None),
        Some(When::FireAtText(s)) => (None, Some(s)),
    };
    let action_bundle = r.action_bundle.as_ref().map(|b| bundle_of(b, &mut errors));
    errors.into_result()?;
    let patch = TimerPatch {
        version: r.version,
        duration,
        fire_at,
        metadata: r
            .metadata
            .as_ref()
            .map(|m| serde_json::Value::Object(from_struct(m))),
        labels: r.labels.map(|l| l.values.into_iter().collect()),
        action_bundle,
    };
    Ok((r.tenant_id, id, patch))
}

pub fn update_request_pb(tenant_id: &str, id: TimerId, p: TimerPatch) -> pb::UpdateTimerRequest {
    use pb::update_timer_request::When;
    let when = match (p.duration, p.fire_at) {
        (Some(DurationInput::Millis(ms)), _) => Some(When::DurationMs(ms)),
        (Some(DurationInput::Text(t)), _) => Some(When::Duration(t)),
        (None, Some(text)) => Some(When::FireAtText(text)),
        (None, None) => None,
    };
    pb::UpdateTimerRequest {
        tenant_id: tenant_id.to_string(),
        id: id.to_string(),
        version: p.version,
        when,
        metadata: match p.metadata {
            Some(serde_json::Value::Object(m)) => Some(to_struct(&m)),
            _ => None,
        },
        labels: p.labels.map(|l| pb::Labels {
            values: l.into_iter().collect(),
        }),
        action_bundle: p.action_bundle.as_ref().map(bundle_pb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_travels_and_comes_back_equal() {
        let id = TimerId::new_v7();
        let patches = [
            r#"{"version": 3, "fireAt": "2026-11-27T10:00:05Z", "labels": {}}"#,
            r#"{"version": 1, "duration": "30s", "metadata": {"a": [1, "x"]},
                "labels": {"team": "ops"},
                "actionBundle": {"actions": [{"type": "webhook", "url": "https://example.com/h"}]}}"#,
            r#"{"version": 2, "duration": 1500}"#,
            r#"{"metadata": {"only": true}}"#,
        ];
        for json in patches {
            let p = TimerPatch::from_json(json.as_bytes()).unwrap();
            let (tenant, back_id, back) =
                update_request_of(update_request_pb("acme", id, p.clone())).unwrap();
            assert_eq!((tenant.as_str(), back_id), ("acme", id));
            assert_eq!(back, p, "{json}");
        }
    }
}
