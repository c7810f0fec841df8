//! What a plane sees of a kernel that runs in its own process, beyond [`crate::KernelApi`]:
//! whether it still fires timers (for `/readyz`) and its counters as Prometheus text (for
//! `/metrics`). The kernel implements [`LocalKernel`]; the control plane holds it as a
//! trait object, so it links neither the kernel nor its store. A kernel reached over gRPC
//! has none: it serves its own `/readyz` and `/metrics`.

use async_trait::async_trait;

/// The in-process kernel's health and metrics.
#[async_trait]
pub trait LocalKernel: Send + Sync + 'static {
    /// True once overdue timers from before a restart are queued for firing, and as long
    /// as the scheduler runs: false for good once a part of it died ([`Self::failure`]).
    fn is_ready(&self) -> bool;

    /// Why timers no longer fire, once a part of the scheduler died; `None` until then.
    fn failure(&self) -> Option<String>;

    /// The kernel's counters, firing-lateness histogram and store gauges as a part of an
    /// exposition ([`crate::metrics::encode_part`]: no `# EOF`).
    async fn render_metrics(&self) -> String;
}
