//! The MINOOTS domain model: what a timer is, what its actions are, which status changes
//! are allowed, and how client input is parsed and validated.
//!
//! This crate owns the one place where durations, fire times, names, labels, metadata and
//! action bundles are parsed and checked, so every entry point (REST, gRPC, MCP, CLI)
//! accepts and refuses exactly the same inputs with the same sentences. It performs no
//! I/O: no files, no sockets, no threads. The only outside fact it reads is the time,
//! and only through the [`clock::Clock`] trait, so tests can move time by hand.
//!
//! It also owns the decisions of the store's writes ([`plan`]: retries, settling, rescue,
//! redrive) and the payloads of the event log ([`event::NewEvent`]), so that every
//! storage backend only reads, writes and fences. The plain records that the kernel's API
//! and the store both pass around (tenants, keys, queries, leased deliveries, attempt
//! reports) are in [`records`], so neither plane needs the other to name them.

pub mod action;
pub mod billing;
pub mod clock;
pub mod digest;
pub mod duration;
pub mod error;
pub mod event;
#[cfg(test)]
mod fixtures;
pub mod limits;
pub mod model;
pub mod patch;
pub mod plan;
pub mod records;
pub mod request;
pub mod retry;
pub mod schedule;
pub mod timefmt;
pub mod traceparent;

pub use action::{
    Action, ActionBundle, ActionPolicy, CommandAction, FileAction, FileMode, WebhookAction,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ConfigError, FieldError, Missing, Quota, ValidationErrors, WriteTrouble};
pub use event::{Event, EventType, NewEvent, RetryCause};
pub use model::{
    AttemptOutcome, AttemptRecord, DeathReason, Delivery, DeliveryId, DeliveryStatus,
    ForbiddenTransition, ScheduleId, ScheduleLink, Timer, TimerId, TimerStatus,
};
pub use patch::TimerPatch;
pub use records::{ChangeCause, TimerChange, TimerChanged};
pub use request::{DurationInput, TimerRequest, TimerSpec};
pub use retry::RetryPolicy;
