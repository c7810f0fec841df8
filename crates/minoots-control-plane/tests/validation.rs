//! No silent fallbacks over REST: a webhook header that HTTP cannot carry exactly as
//! written is refused when the timer is created, with a 400 problem+json naming the
//! header, and nothing is stored.

mod common;
use common::*;

use minoots_control_plane::ControlPlaneConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_header_that_cannot_be_sent_as_written_is_a_400_naming_it() {
    let s = start(ControlPlaneConfig::default()).await;
    let k = s
        .tenant_with_key("acme", "pro", &["timers:read", "timers:write"])
        .await;
    let k = Some(k.as_str());
    // (header name, header value as JSON text)
    let cases = [
        // HTTP drops the surrounding spaces: the receiver would see another value.
        ("Authorization", r#"" Bearer padded ""#),
        // A line break would end the header (or inject another).
        ("X-Foo", r#""a\r\nX-Injected: 1""#),
        // Framing is HTTP's own; a tenant's value would contradict the real body.
        ("Transfer-Encoding", r#""chunked""#),
        ("webhook-signature", r#""v1,forged""#),
    ];
    for (name, value) in cases {
        let body = format!(
            r#"{{"duration": "30s", "actionBundle": {{"actions": [{{"type": "webhook",
                "url": "https://example.com/hook", "headers": {{"{name}": {value}}}}}]}}}}"#
        );
        let r = s.call("POST", "/timers", k, Some(&body)).await;
        r.assert_problem(
            400,
            Some(&format!("actionBundle.actions[0].headers.{name}")),
        );
    }
    let body = r#"{"duration": "30s", "actionBundle": {"actions": [{"type": "webhook",
        "url": "https://example.com/hook", "headers": {"X-Trace": "a", "x-trace": "b"}}]}}"#;
    let r = s.call("POST", "/timers", k, Some(body)).await;
    r.assert_problem(400, Some("actionBundle.actions[0].headers.x-trace"));

    let list = s.call("GET", "/timers", k, None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.body["timers"].as_array().map(Vec::len),
        Some(0),
        "nothing refused was stored: {}",
        list.text
    );
}
