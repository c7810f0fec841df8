//! Request bodies: JSON only, bounded in size, parsed so that every syntax or type error
//! names the field where it happened. Framework rejections never reach the client in
//! their plain-text form.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::ApiError;

/// A JSON body of type `T`. An empty body is `None` (for endpoints where it is optional).
pub struct Json<T>(pub Option<T>);

/// Reads the body up to the configured limit: 413 beyond it.
pub async fn read_limited(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the request body is larger than {limit} bytes; send a smaller body"),
            )
        })
}

/// Parses JSON through the core's one parser (errors name the JSON path).
/// Refuses an empty body (or one of only whitespace) with a sentence that shows `example`,
/// a body this endpoint takes.
pub fn require_body(bytes: &[u8], example: &str) -> Result<(), ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field(
            "body",
            format!("is empty; send a JSON object like {example}"),
        ));
    }
    Ok(())
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    minoots_core::request::parse_json(bytes).map_err(ApiError::invalid)
}

fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        format!("the body must be JSON; send Content-Type: application/json (got \"{mime}\")"),
    ))
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        check_content_type(&req)?;
        let bytes = read_limited(req, state.config.body_limit_bytes).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Json(None));
        }
        parse_json(&bytes).map(|v| Json(Some(v)))
    }
}

/// The raw body of a timer create, checked for type and size; parsed by the core crate.
pub struct RawJson(pub Bytes);

impl FromRequest<AppState> for RawJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        check_content_type(&req)?;
        Ok(RawJson(
            read_limited(req, state.config.body_limit_bytes).await?,
        ))
    }
}
