//! The MINOOTS action orchestrator: it executes the deliveries the kernel leases to it —
//! webhooks, commands and file writes — and reports every attempt back.
//!
//! This crate is being built up piece by piece. Present so far: the SSRF guard that decides
//! which network addresses a webhook may reach, and Standard Webhooks signing. It must
//! never let a tenant's webhook reach loopback, private, link-local or metadata addresses
//! unless the operator allowed it, and never send a webhook unsigned.

pub mod signing;
pub mod ssrf;
