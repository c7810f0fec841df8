//! Operations endpoints, all without a key: `/healthz` (the process answers), `/readyz`
//! (the kernel and its store answer, and an in-process kernel still fires timers), `/metrics` (Prometheus text), `/openapi.json` and
//! the Swagger UI at `/docs`, served from the binary. Unknown routes and methods answer
//! problem+json here too.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::problem::{ApiError, ApiResult};
use crate::timers::json_response;

/// How long `/readyz` waits for the kernel.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz(State(st): State<AppState>) -> Response {
    let mut body = json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")});
    if st.config.demo {
        body["mode"] = "demo".into();
    }
    json_response(StatusCode::OK, &body)
}

pub async fn readyz(State(st): State<AppState>) -> ApiResult<Response> {
    if let Some(kernel) = &st.local_kernel
        && !kernel.is_ready()
    {
        return Err(match kernel.failure() {
            // The process is stopping with an error so that its supervisor restarts it.
            // Problem type `kernel-failed`, with the reason as its own member.
            Some(reason) => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "kernel-failed",
                    format!("not ready: timers no longer fire ({reason}); MINOOTS is stopping"),
                );
                e.extra.insert("reason".into(), reason.into());
                e
            }
            None => ApiError::unavailable("not ready: the kernel is loading its timers", 1),
        });
    }
    let probe = st.kernel.tenant_usage(crate::admin::SYSTEM_TENANT);
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(json_response(StatusCode::OK, &json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::unavailable(format!("not ready: {e}"), 1)),
        Err(_) => Err(ApiError::unavailable(
            "not ready: the kernel did not answer within 2 s",
            1,
        )),
    }
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(minoots_kernel_api::metrics::EXPOSITION_CONTENT_TYPE),
        )],
        crate::metrics::render(&st).await,
    )
        .into_response()
}

pub async fn openapi(State(st): State<AppState>) -> Response {
    let tiers: Vec<String> = st.config.tiers.keys().cloned().collect();
    json_response(StatusCode::OK, &crate::routes::openapi_document_for(&tiers))
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "there is no endpoint {}; see /openapi.json or /docs for the API",
        uri.path()
    ))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "{} is not allowed on {}; see /openapi.json for the methods it takes",
            method,
            uri.path()
        ),
    )
}
