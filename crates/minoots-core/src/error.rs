//! The error vocabulary every crate shares: validation errors that name the field and
//! say how to fix it, what was not found ([`Missing`]), why the disk refused a write
//! ([`WriteTrouble`]), which quota was reached ([`Quota`]), and a setting that cannot be
//! used ([`ConfigError`]).
//!
//! These are values, not sentences: the store produces them, the kernel passes them on,
//! gRPC carries them in status details and the control plane turns them into answers, so
//! no layer ever has to read another layer's message to learn what happened. This module
//! holds data only; it must never decide a status code or an HTTP answer.

use serde::{Deserialize, Serialize};

use crate::model::{DeliveryId, ScheduleId, TimerId};

/// One problem with one input field. `field` is a JSON path in camelCase
/// (`actionBundle.actions[0].url`), `message` a sentence saying what to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Everything wrong with a request, reported together so a client fixes it in one go.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, thiserror::Error)]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.push(field, message);
        e
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Ok when nothing was found wrong.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// True when some error concerns `field` exactly.
    pub fn has_field(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// What a request named that does not exist, with the id it was asked by. Another
/// tenant's object is reported the same way as one that never existed, and the id is the
/// caller's own, so the answer tells nothing about other tenants.
///
/// On the wire (gRPC status details) it is `{"kind": "timer", "id": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "camelCase")]
pub enum Missing {
    Timer(TimerId),
    Delivery(DeliveryId),
    Tenant(String),
    ApiKey(String),
    Schedule(ScheduleId),
}

impl std::fmt::Display for Missing {
    /// `timer <id>`, `delivery <id>`, `tenant <id>`, `key <id>`: the subject of "… not found".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Timer(id) => write!(f, "timer {id}"),
            Missing::Delivery(id) => write!(f, "delivery {id}"),
            Missing::Tenant(id) => write!(f, "tenant {id}"),
            Missing::ApiKey(id) => write!(f, "key {id}"),
            Missing::Schedule(id) => write!(f, "schedule {id}"),
        }
    }
}

/// Why the disk refused a write. On the wire: `"diskFull"`, `"readOnly"`, `{"io": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
pub enum WriteTrouble {
    /// No room left: the file system is full, or the database reached its page cap.
    #[error("disk full")]
    DiskFull,
    /// The database or its file system is read-only.
    #[error("the disk is read-only")]
    ReadOnly,
    /// The operating system reported an I/O error while writing.
    #[error("I/O error ({0})")]
    Io(String),
}

/// The tenant quotas a create is checked against inside its transaction. Its name in API
/// answers, configuration and on the wire is the camelCase one ([`Quota::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Quota {
    /// Timers created per UTC day.
    TimersPerDay,
    /// Timers scheduled and not yet fired or cancelled.
    PendingTimers,
    /// Schedules that are not completed.
    Schedules,
}

impl Quota {
    pub const ALL: [Quota; 3] = [Quota::TimersPerDay, Quota::PendingTimers, Quota::Schedules];

    /// The name used in API answers and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::TimersPerDay => "timersPerDay",
            Quota::PendingTimers => "pendingTimers",
            Quota::Schedules => "schedules",
        }
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A setting that cannot be used: which one, and what to change. Libraries refuse bad
/// settings with it when they start; the binary prints it and exits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {fix}")]
pub struct ConfigError {
    /// The setting as the operator or the caller spells it (`MINOOTS_KERNEL_TOKEN`,
    /// `window`, `tiers.free (MINOOTS_TIERS)`).
    pub setting: String,
    /// What is wrong with it and how to fix it, as a sentence.
    pub fix: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            fix: fix.into(),
        }
    }
}
