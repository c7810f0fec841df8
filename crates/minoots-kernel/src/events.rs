//! Event streams: replay from the log, then follow live events, without gaps or repeats.
//!
//! A stream subscribes to live events first, then reads the log after the requested
//! sequence number page by page until it has caught up, then forwards live events whose
//! sequence number is higher than the last one sent. (The log read returns only matching
//! events and scans to the end of the log, so every matching event committed before the
//! subscription was sent by the replay, and every later one is in the live buffer.) If it falls behind the live buffer it
//! goes back to reading the log. So the client sees every matching event exactly once, in
//! sequence order, whether it connects early, late, or reconnects after a break.

use std::sync::Arc;

use minoots_core::Event;
use minoots_kernel_api::{BoxStream, KernelError, KernelResult};
use minoots_store::{EventQuery, Store};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::from_store;

/// Events read from the log per query while catching up.
const REPLAY_PAGE: usize = 1_000;

/// Starts a stream. The first live subscription is taken before this returns, so with
/// `after_seq` = [`minoots_kernel_api::api::EVENTS_FROM_NOW`] every event committed after the call
/// returns is delivered (a caller may subscribe, then read state, and miss nothing).
pub(crate) async fn start_stream(
    store: Arc<dyn Store>,
    mut query: EventQuery,
    buffer: usize,
) -> KernelResult<BoxStream<Event>> {
    let mut first_live = Some(store.subscribe_events());
    if query.after_seq == minoots_kernel_api::api::EVENTS_FROM_NOW {
        query.after_seq = store.latest_event_seq().await.map_err(from_store)?;
    } else if query.after_seq < 0 {
        return Err(KernelError::invalid(
            "afterSeq",
            "must be 0, a sequence number from an earlier event, or -1 for events from now on",
        ));
    }
    let (tx, rx) = mpsc::channel::<KernelResult<Event>>(buffer.max(1));
    tokio::spawn(async move {
        let mut last = query.after_seq;
        'replay: loop {
            let mut live = first_live
                .take()
                .unwrap_or_else(|| store.subscribe_events());
            // Catch up from the log.
            loop {
                let page = match store
                    .read_events(EventQuery {
                        after_seq: last,
                        limit: REPLAY_PAGE,
                        ..query.clone()
                    })
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(from_store(e))).await;
                        return;
                    }
                };
                let caught_up = page.len() < REPLAY_PAGE;
                for e in page {
                    last = e.seq;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                if caught_up {
                    break;
                }
            }
            loop {
                tokio::select! {
                    msg = live.recv() => match msg {
                        Ok(e) => {
                            if e.seq <= last {
                                continue;
                            }
                            last = e.seq;
                            // Copied only when this stream keeps it.
                            if query.matches(&e)
                                && tx.send(Ok(Arc::unwrap_or_clone(e))).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'replay,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
