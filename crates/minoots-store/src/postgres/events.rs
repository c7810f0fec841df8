//! TEMPORARY: the `data` of the events the PostgreSQL backend appends so far, copied from
//! the payloads built inline in `sqlite/ops.rs`. They are being moved into shared, pure
//! constructors; when those land, this file is deleted and its callers use them, so both
//! backends write byte-for-byte the same events. Keep every payload of this backend here
//! and nowhere else, so that the swap touches one file.

use minoots_core::timefmt::format_us;
use serde_json::{Value, json};

/// `timer.scheduled`: when it is due.
pub(super) fn timer_scheduled(fire_at_us: i64) -> Value {
    json!({"fireAt": format_us(fire_at_us)})
}

/// `timer.cancelled`: the reason given, if any (already truncated).
pub(super) fn timer_cancelled(reason: Option<&str>) -> Value {
    json!({"reason": reason})
}
