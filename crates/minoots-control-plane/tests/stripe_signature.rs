//! The `Stripe-Signature` verifier of `POST /webhooks/stripe`, against vectors made here
//! and one made by Stripe's own SDK (`fixtures/stripe_sdk_vector.json`, made by
//! `fixtures/stripe_sdk_vector.py` with stripe-python; see that script).

use minoots_control_plane::billing::signature::{
    SIGNATURE_TOLERANCE_S, SignatureError, header_for, parse_header, verify,
};

const SECRET: &str = "whsec_test_current";
const OLD_SECRET: &str = "whsec_test_previous";
const NOW: i64 = 1_800_000_000;
const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid","created":1800000000}"#;

fn secrets(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_valid_event_is_accepted() {
    let h = header_for(&[SECRET], NOW, BODY);
    assert_eq!(verify(Some(&h), BODY, &secrets(&[SECRET]), NOW), Ok(()));
}

#[test]
fn a_tampered_body_is_refused() {
    let h = header_for(&[SECRET], NOW, BODY);
    let tampered = br#"{"id":"evt_1","type":"invoice.paid","created":1800000001}"#;
    assert_eq!(
        verify(Some(&h), tampered, &secrets(&[SECRET]), NOW),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn a_wrong_secret_is_refused() {
    let h = header_for(&["whsec_someone_else"], NOW, BODY);
    assert_eq!(
        verify(Some(&h), BODY, &secrets(&[SECRET]), NOW),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn timestamps_are_accepted_within_300_seconds_either_way() {
    let s = secrets(&[SECRET]);
    assert_eq!(SIGNATURE_TOLERANCE_S, 300);
    for (sent_at, ok) in [
        (NOW - 299, true),
        (NOW - 300, true),
        (NOW - 301, false),
        (NOW + 299, true),
        (NOW + 301, false),
    ] {
        let h = header_for(&[SECRET], sent_at, BODY);
        let got = verify(Some(&h), BODY, &s, NOW);
        if ok {
            assert_eq!(got, Ok(()), "sent at now{:+}", sent_at - NOW);
        } else {
            assert_eq!(
                got,
                Err(SignatureError::OutsideTolerance(NOW - sent_at)),
                "sent at now{:+}",
                sent_at - NOW
            );
        }
    }
}

#[test]
fn the_matching_v1_may_come_first_or_second() {
    let s = secrets(&[SECRET]);
    let good = header_for(&[SECRET], NOW, BODY);
    let good_sig = good.split(",v1=").nth(1).unwrap();
    let bad_sig = "ab".repeat(32);
    let first = format!("t={NOW},v1={good_sig},v1={bad_sig}");
    let second = format!("t={NOW},v1={bad_sig},v1={good_sig}");
    assert_eq!(verify(Some(&first), BODY, &s, NOW), Ok(()));
    assert_eq!(verify(Some(&second), BODY, &s, NOW), Ok(()));
    // Both kept by the parser, in order.
    assert_eq!(parse_header(&second).unwrap().v1.len(), 2);
}

#[test]
fn a_header_with_only_v0_is_refused_as_malformed() {
    let h = header_for(&[SECRET], NOW, BODY).replace("v1=", "v0=");
    assert!(matches!(
        verify(Some(&h), BODY, &secrets(&[SECRET]), NOW),
        Err(SignatureError::Malformed(_))
    ));
    // A v0 beside a good v1 is ignored.
    let both = format!(
        "{},v0={}",
        header_for(&[SECRET], NOW, BODY),
        "00".repeat(32)
    );
    assert_eq!(verify(Some(&both), BODY, &secrets(&[SECRET]), NOW), Ok(()));
}

#[test]
fn malformed_and_missing_headers_are_refused_naming_the_problem() {
    let s = secrets(&[SECRET]);
    assert_eq!(verify(None, BODY, &s, NOW), Err(SignatureError::Missing));
    for bad in [
        "",
        "garbage",
        "v1=abcd",
        "t=notanumber,v1=00",
        &format!("t={NOW}"),
        &format!("t={NOW},t={NOW},v1={}", "00".repeat(32)),
        &"t=1,".repeat(2_000),
    ] {
        let got = verify(Some(bad), BODY, &s, NOW);
        assert!(
            matches!(got, Err(SignatureError::Malformed(_))),
            "{bad:.40}: {got:?}"
        );
        assert!(got.unwrap_err().to_string().contains("Stripe-Signature"));
    }
    // A v1 that is not 64 hex digits cannot match: no signature left.
    let short = format!("t={NOW},v1=abc");
    assert!(matches!(
        verify(Some(&short), BODY, &s, NOW),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn with_two_configured_secrets_either_one_verifies() {
    let both = secrets(&[SECRET, OLD_SECRET]);
    for signer in [SECRET, OLD_SECRET] {
        let h = header_for(&[signer], NOW, BODY);
        assert_eq!(verify(Some(&h), BODY, &both, NOW), Ok(()), "{signer}");
    }
    // During a rotation Stripe signs with both: one header, two v1.
    let h = header_for(&[OLD_SECRET, SECRET], NOW, BODY);
    assert_eq!(verify(Some(&h), BODY, &secrets(&[SECRET]), NOW), Ok(()));
    assert_eq!(verify(Some(&h), BODY, &secrets(&[OLD_SECRET]), NOW), Ok(()));
}

#[test]
fn a_vector_signed_by_stripes_own_sdk_verifies() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/stripe_sdk_vector.json")).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    let t = v["timestamp"].as_i64().unwrap();
    let payload = v["payload"].as_str().unwrap().as_bytes();
    let header = v["header"].as_str().unwrap();
    assert_eq!(
        verify(Some(header), payload, std::slice::from_ref(&secret), t),
        Ok(())
    );
    // And our signer makes the same header.
    assert_eq!(header_for(&[&secret], t, payload), header);
    // One byte changed: refused.
    let mut changed = payload.to_vec();
    changed[10] ^= 1;
    assert_eq!(
        verify(Some(header), &changed, &[secret], t),
        Err(SignatureError::NoMatch)
    );
}
