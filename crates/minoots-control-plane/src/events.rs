//! `GET /events` (and `/timers/stream`): the tenant's events as Server-Sent Events.
//!
//! `id:` is the event's sequence number, so a client that reconnects with `Last-Event-ID`
//! (browsers do it by themselves) or `?after=` resumes exactly after the last event it
//! saw: the kernel's stream replays the log and then follows live events without gaps or
//! repeats. A comment is sent every `sse_keep_alive` so proxies keep the connection open.
//! Streams are bounded by `max_event_streams`; beyond it, 503 with `Retry-After`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use minoots_core::records::EventQuery;
use minoots_core::timefmt::format_us;
use minoots_core::{Event, EventType};
use minoots_kernel_api::api::EVENTS_FROM_NOW;
use serde_json::json;
use tokio_stream::{Stream, StreamExt};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, ApiResult};
use crate::timers::{query_params, timeout_param, timer_id};

/// Events read per replay page by the kernel for one stream.
const REPLAY_PAGE: usize = 1_000;

/// `?after=latest`: only events committed from the request on, none of the log before it
/// (a new dashboard tab). `Last-Event-ID` still wins, so the browser's own reconnection
/// resumes after the last event it received instead of skipping what happened meanwhile.
pub const AFTER_LATEST: &str = "latest";

/// Where a stream starts: after the `Last-Event-ID` header, else after `?after=` (a
/// sequence number, or [`AFTER_LATEST`]), else at the start of the tenant's log.
fn after_seq(headers: &HeaderMap, param: Option<&str>) -> ApiResult<i64> {
    let header = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v.trim().to_string()),
        Some(Err(_)) => {
            return Err(ApiError::field(
                "Last-Event-ID",
                "must be the sequence number (id) of an event already received, in ASCII digits",
            ));
        }
    };
    let (field, text) = match (&header, param) {
        (Some(h), _) if !h.is_empty() => ("Last-Event-ID", h.as_str()),
        (_, Some(AFTER_LATEST)) => return Ok(EVENTS_FROM_NOW),
        (_, Some(p)) => ("after", p),
        _ => return Ok(0),
    };
    text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        ApiError::field(
            field,
            "must be the sequence number (id) of an event already received, 0 for the start, or latest for new events only",
        )
    })
}

/// The JSON sent as `data:`: the event, and the timer as it is now.
fn event_json(e: &Event, timer: Option<serde_json::Value>) -> String {
    json!({
        "seq": e.seq,
        "type": e.event_type.as_str(),
        "tenantId": e.tenant_id,
        "timerId": e.timer_id.to_string(),
        "deliveryId": e.delivery_id.map(|d| d.to_string()),
        "occurredAt": format_us(e.occurred_at_us),
        "data": e.data,
        "timer": timer,
    })
    .to_string()
}

pub async fn stream(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = query_params(raw.as_deref(), &["after", "timerId", "types", "timeout"])?;
    let get = |name: &str| params.get(name);
    let after = after_seq(&headers, get("after"))?;
    let timer = match get("timerId") {
        None | Some("") => None,
        Some(t) => Some(timer_id(t).map_err(|_| {
            ApiError::field("timerId", format!("\"{t}\" is not a timer id (a UUID)"))
        })?),
    };
    let until = timeout_param(get("timeout"))?.map(|d| tokio::time::Instant::now() + d);
    let mut types = Vec::new();
    for t in get("types")
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
    {
        types.push(
            t.trim()
                .parse::<EventType>()
                .map_err(|m| ApiError::field("types", m))?,
        );
    }
    let Ok(permit) = st.streams.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(
            "too many event streams are open on this server; retry shortly",
            5,
        ));
    };
    let tenant = caller.tenant_id().to_string();
    let events = st
        .kernel_call(st.kernel.stream_events(EventQuery {
            after_seq: after,
            limit: REPLAY_PAGE,
            tenant_id: Some(tenant.clone()),
            timer_id: timer,
            types,
        }))
        .await?;
    let kernel = st.kernel.clone();
    // `timeout`: the stream ends then, as if the client had left.
    let events = Until {
        inner: events,
        end: until.map(|at| Box::pin(tokio::time::sleep_until(at))),
    };
    let out = events
        .take_while(|r| r.is_ok())
        .filter_map(|r| r.ok())
        .then(move |e| {
            let kernel = kernel.clone();
            let tenant = tenant.clone();
            // The permit lives as long as the stream.
            let _permit = &permit;
            async move {
                let timer = kernel
                    .get_timer(&tenant, e.timer_id)
                    .await
                    .ok()
                    .map(|t| t.to_json());
                Ok::<_, Infallible>(
                    SseEvent::default()
                        .id(e.seq.to_string())
                        .event(e.event_type.as_str())
                        .data(event_json(&e, timer)),
                )
            }
        });
    Ok(Sse::new(out)
        .keep_alive(KeepAlive::new().interval(st.config.sse_keep_alive))
        .into_response())
}

/// A stream that ends at a deadline (or never, without one).
struct Until<S> {
    inner: S,
    end: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: Stream + Unpin> Stream for Until<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if let Some(end) = self.end.as_mut()
            && end.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h_12() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("last-event-id", "12".parse().unwrap());
        h
    }

    #[test]
    fn resume_point_prefers_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(after_seq(&h, None).unwrap(), 0);
        assert_eq!(after_seq(&h, Some("7")).unwrap(), 7);
        h.insert("last-event-id", "12".parse().unwrap());
        assert_eq!(after_seq(&h, Some("7")).unwrap(), 12);
        h.insert("last-event-id", "x".parse().unwrap());
        assert_eq!(
            after_seq(&h, None).unwrap_err().errors[0].field,
            "Last-Event-ID"
        );
        assert!(after_seq(&HeaderMap::new(), Some("-3")).is_err());
        // An empty `after` is not a number (the document says integer).
        assert!(after_seq(&HeaderMap::new(), Some("")).is_err());
        // `latest`: from now on, unless the browser resumes with its header.
        assert_eq!(
            after_seq(&HeaderMap::new(), Some("latest")).unwrap(),
            EVENTS_FROM_NOW
        );
        assert_eq!(after_seq(&h_12(), Some("latest")).unwrap(), 12);
        assert!(after_seq(&HeaderMap::new(), Some("Latest")).is_err());
    }
}
