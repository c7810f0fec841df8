//! Errors say what they are, also across gRPC: every kernel error comes back from
//! `to_status` → `from_status` equal to what was sent (what was not found, why the store
//! cannot write, which quota), carried as typed status details and never read back from
//! the message; details a client does not understand become a clear internal error, not a
//! guess.

use minoots_core::{
    ConfigError, DeliveryId, Missing, Quota, TimerId, TimerStatus, ValidationErrors, WriteTrouble,
};
use minoots_kernel::KernelError;
use minoots_kernel::grpc::{from_status, to_status};
use tonic::{Code, Status};

/// One of every kind of kernel error that can travel in an answer, with its gRPC code.
fn every_error() -> Vec<(KernelError, Code)> {
    let mut invalid = ValidationErrors::new();
    invalid.push("duration", "must be at least 1 ms");
    invalid.push("actionBundle.actions[0].url", "must be https");
    let mut all = vec![
        (KernelError::Invalid(invalid), Code::InvalidArgument),
        (
            KernelError::Conflict {
                message: "the timer is already fired".into(),
                status: Some(TimerStatus::Fired),
            },
            Code::FailedPrecondition,
        ),
        (
            KernelError::Conflict {
                message: "tenant acme already exists".into(),
                status: None,
            },
            Code::FailedPrecondition,
        ),
        (
            KernelError::Fenced("stale report".into()),
            Code::FailedPrecondition,
        ),
        (
            KernelError::Unavailable("the writer stopped".into()),
            Code::Unavailable,
        ),
        (
            KernelError::Unauthenticated("missing or wrong kernel token".into()),
            Code::Unauthenticated,
        ),
        (
            KernelError::Internal("stored data is corrupt".into()),
            Code::Internal,
        ),
    ];
    for missing in [
        Missing::Timer(TimerId::new_v7()),
        Missing::Delivery(DeliveryId::new_v7()),
        Missing::Tenant("acme".into()),
        Missing::ApiKey("key-1".into()),
        Missing::Schedule(minoots_core::ScheduleId::new_v7()),
    ] {
        all.push((KernelError::NotFound(missing), Code::NotFound));
    }
    for trouble in [
        WriteTrouble::DiskFull,
        WriteTrouble::ReadOnly,
        WriteTrouble::Io("disk I/O error".into()),
    ] {
        all.push((KernelError::StoreCannotWrite(trouble), Code::Unavailable));
    }
    for quota in Quota::ALL {
        all.push((
            KernelError::QuotaExceeded { quota, limit: 5 },
            Code::ResourceExhausted,
        ));
    }
    all
}

#[test]
fn every_kernel_error_comes_back_from_grpc_as_it_was_sent() {
    let all = every_error();
    assert_eq!(all.len(), 18);
    for (error, code) in all {
        let status = to_status(error.clone());
        assert_eq!(status.code(), code, "{error:?}");
        if matches!(
            error,
            KernelError::NotFound(_)
                | KernelError::StoreCannotWrite(_)
                | KernelError::QuotaExceeded { .. }
        ) {
            assert_eq!(status.message(), error.to_string(), "the sentence is kept");
        }
        assert_eq!(from_status(status), error);
    }
}

#[test]
fn the_kind_travels_in_the_details_not_in_the_sentence() {
    // The same sentences as a typed error makes, without its details: nothing is guessed
    // from them.
    let id = TimerId::new_v7();
    let e = from_status(Status::not_found(format!("timer {id} not found")));
    assert!(matches!(e, KernelError::Internal(_)), "{e:?}");
    let sentences = [
        (
            Status::resource_exhausted("the tenant's pendingTimers quota of 5 is reached"),
            "a RESOURCE_EXHAUSTED without a quota is a limit of the transport",
        ),
        (
            Status::unavailable("the store cannot write: disk full"),
            "an UNAVAILABLE without details is the kernel being unavailable",
        ),
    ];
    for (s, why) in sentences {
        let e = from_status(s.clone());
        assert_eq!(e, KernelError::Unavailable(s.message().into()), "{why}");
    }
    // And the details alone decide, whatever the sentence says.
    let with = |code, details: &str| {
        Status::with_details(code, "some sentence", details.as_bytes().to_vec().into())
    };
    assert_eq!(
        from_status(with(
            Code::NotFound,
            r#"{"notFound": {"kind": "apiKey", "id": "k"}}"#
        )),
        KernelError::NotFound(Missing::ApiKey("k".into()))
    );
    assert_eq!(
        from_status(with(
            Code::Unavailable,
            r#"{"storeCannotWrite": "readOnly"}"#
        )),
        KernelError::StoreCannotWrite(WriteTrouble::ReadOnly)
    );
}

#[test]
fn details_the_client_does_not_know_are_internal_errors_naming_them() {
    let with = |code, details: &str| {
        Status::with_details(code, "some sentence", details.as_bytes().to_vec().into())
    };
    for (status, named) in [
        (
            with(
                Code::NotFound,
                r#"{"notFound": {"kind": "schedule", "id": "s"}}"#,
            ),
            "notFound",
        ),
        (
            with(
                Code::NotFound,
                r#"{"notFound": {"kind": "timer", "id": "x"}}"#,
            ),
            "notFound",
        ),
        (
            with(
                Code::ResourceExhausted,
                r#"{"quota": "timersPerHour", "limit": 5}"#,
            ),
            "quota",
        ),
        (
            with(Code::Unavailable, r#"{"storeCannotWrite": "melted"}"#),
            "storeCannotWrite",
        ),
    ] {
        match from_status(status.clone()) {
            KernelError::Internal(m) => {
                assert!(m.contains(named) && m.contains("some sentence"), "{m}")
            }
            other => panic!("{status:?} → {other:?}"),
        }
    }
}

#[test]
fn a_setting_error_never_passes_for_an_answer() {
    // Raised only when a kernel starts; if one reached gRPC it would be a bug, said so.
    let e = KernelError::Config(ConfigError::new("window", "must be at least 1 s"));
    let status = to_status(e);
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        from_status(status),
        KernelError::Internal("kernel setting window: must be at least 1 s".into())
    );
}
