//! The one place where errors become HTTP answers: `application/problem+json` (RFC 9457)
//! with a `detail` sentence saying what to fix and, for bad input, `errors` naming each
//! field. Kernel errors, framework rejections (404, 405, 413, 415) and JSON syntax errors
//! all pass through here, so a client never sees another error format.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minoots_core::{FieldError, Quota, ValidationErrors};
use minoots_kernel_api::KernelError;
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer. Build it with the constructors; they pick the status and title.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// A short stable slug, rendered as the problem `type` (`urn:minoots:problem:<slug>`).
    pub kind: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Extra members of the problem document (e.g. the quota that was hit).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// 400 naming every bad field.
    pub fn invalid(errors: ValidationErrors) -> Self {
        let detail = match errors.errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!(
                "{} fields are invalid: {}",
                many.len(),
                many.iter()
                    .map(|e| e.field.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail);
        e.errors = errors.errors;
        e
    }

    /// 400 for one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(ValidationErrors::single(field, message))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        e.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"minoots\""),
        ));
        e
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_s: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        e.headers
            .push((header::RETRY_AFTER, HeaderValue::from(retry_after_s)));
        e
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_extra(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

/// Seconds from `now_us` to the next UTC midnight, when the daily quota starts afresh.
fn seconds_to_next_utc_day(now_us: i64) -> u64 {
    let day_us = 86_400 * 1_000_000i64;
    let left = day_us - now_us.rem_euclid(day_us);
    (left as u64).div_ceil(1_000_000)
}

impl ApiError {
    /// A kernel error as an answer. `now_us` is the control plane's clock: it dates the
    /// `Retry-After` of a daily quota (the next UTC midnight).
    pub fn from_kernel(e: KernelError, now_us: i64) -> Self {
        match e {
            KernelError::Invalid(errors) => ApiError::invalid(errors),
            // "timer <id> not found": the kind and the caller's own id, nothing more.
            e @ KernelError::NotFound(_) => ApiError::not_found(e.to_string()),
            KernelError::Conflict { message, status } => {
                let e = ApiError::conflict(message);
                match status {
                    Some(s) => e.with_extra("timerStatus", s.as_str().into()),
                    None => e,
                }
            }
            KernelError::QuotaExceeded { quota, limit } => {
                let (retry, detail) = match quota {
                    Quota::TimersPerDay => (
                        seconds_to_next_utc_day(now_us),
                        format!(
                            "the tenant created {limit} timers today (UTC), the most its tier allows; try again tomorrow or move to a higher tier"
                        ),
                    ),
                    Quota::PendingTimers => (
                        60,
                        format!(
                            "the tenant already has {limit} scheduled timers, the most its tier allows; cancel some or wait for them to fire"
                        ),
                    ),
                    Quota::Schedules => (
                        60,
                        format!(
                            "the tenant already has {limit} schedules, the most its tier allows; delete one or move to a higher tier"
                        ),
                    ),
                };
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota-exceeded", detail)
                    .with_extra("quota", quota.as_str().into())
                    .with_extra("limit", limit.into())
                    .with_header(header::RETRY_AFTER, HeaderValue::from(retry))
            }
            KernelError::Fenced(m) => ApiError::conflict(m),
            // The disk refused the write; reads still work. Says why, without "kernel".
            KernelError::StoreCannotWrite(trouble) => {
                ApiError::unavailable(format!("the store cannot write: {trouble}; retry later"), 5)
            }
            KernelError::Unavailable(m) => {
                ApiError::unavailable(format!("the kernel is unavailable: {m}; retry shortly"), 1)
            }
            KernelError::Unauthenticated(m) => {
                tracing::error!(error = %m, "the kernel refused the control plane's token");
                ApiError::unavailable(
                    "the control plane cannot reach the kernel (its token was refused); an operator must fix MINOOTS_KERNEL_TOKEN",
                    5,
                )
            }
            KernelError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                ApiError::internal("an internal error occurred; it has been logged")
            }
            // A kernel refuses bad settings when it starts, never in an answer.
            e @ KernelError::Config(_) => {
                tracing::error!(error = %e, "a kernel setting error reached a request");
                ApiError::internal("an internal error occurred; it has been logged")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = serde_json::to_vec(&Problem {
            kind: format!("urn:minoots:problem:{}", self.kind),
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            errors: &self.errors,
            extra: &self.extra,
        })
        .unwrap_or_default();
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().append(k, v);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use minoots_core::{DeliveryId, Missing, TimerId, WriteTrouble};

    #[test]
    fn next_utc_day() {
        assert_eq!(seconds_to_next_utc_day(0), 86_400);
        assert_eq!(seconds_to_next_utc_day(86_399_500_000), 1);
        assert_eq!(
            seconds_to_next_utc_day(86_400_000_000 + 3_600_000_000),
            82_800
        );
    }

    fn retry_after(e: &ApiError) -> Option<&str> {
        e.headers
            .iter()
            .find(|(k, _)| k == header::RETRY_AFTER)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn each_quota_has_its_own_answer() {
        // 01:00 UTC: the daily quota starts afresh in 23 hours.
        let now_us = 100 * 86_400_000_000 + 3_600_000_000;
        let day = ApiError::from_kernel(
            KernelError::QuotaExceeded {
                quota: Quota::TimersPerDay,
                limit: 100,
            },
            now_us,
        );
        assert_eq!(
            (day.status, day.kind),
            (StatusCode::TOO_MANY_REQUESTS, "quota-exceeded")
        );
        assert_eq!(retry_after(&day), Some("82800"));
        assert!(
            day.detail.contains("created 100 timers today"),
            "{}",
            day.detail
        );
        assert_eq!(day.extra["quota"], "timersPerDay");
        assert_eq!(day.extra["limit"], 100);
        let pending = ApiError::from_kernel(
            KernelError::QuotaExceeded {
                quota: Quota::PendingTimers,
                limit: 5,
            },
            now_us,
        );
        assert_eq!(retry_after(&pending), Some("60"));
        assert!(
            pending.detail.contains("already has 5 scheduled timers"),
            "{}",
            pending.detail
        );
        assert_eq!(pending.extra["quota"], "pendingTimers");
    }

    #[test]
    fn a_store_that_cannot_write_is_a_503_naming_why() {
        for (trouble, said) in [
            (WriteTrouble::DiskFull, "disk full"),
            (WriteTrouble::ReadOnly, "the disk is read-only"),
            (
                WriteTrouble::Io("disk I/O error".into()),
                "I/O error (disk I/O error)",
            ),
        ] {
            let e = ApiError::from_kernel(KernelError::StoreCannotWrite(trouble), 0);
            assert_eq!(
                (e.status, e.kind),
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            );
            assert_eq!(
                e.detail,
                format!("the store cannot write: {said}; retry later")
            );
            assert_eq!(retry_after(&e), Some("5"));
        }
        let kernel = ApiError::from_kernel(KernelError::Unavailable("gone".into()), 0);
        assert_eq!(
            kernel.detail,
            "the kernel is unavailable: gone; retry shortly"
        );
        assert_eq!(retry_after(&kernel), Some("1"));
    }

    #[test]
    fn a_404_names_the_object_and_its_id() {
        let timer = TimerId::new_v7();
        let delivery = DeliveryId::new_v7();
        for (missing, said) in [
            (Missing::Timer(timer), format!("timer {timer} not found")),
            (
                Missing::Delivery(delivery),
                format!("delivery {delivery} not found"),
            ),
            (
                Missing::Tenant("acme".into()),
                "tenant acme not found".into(),
            ),
            (Missing::ApiKey("k1".into()), "key k1 not found".into()),
        ] {
            let e = ApiError::from_kernel(KernelError::NotFound(missing), 0);
            assert_eq!((e.status, e.kind), (StatusCode::NOT_FOUND, "not-found"));
            assert_eq!(e.detail, said);
        }
    }
}
