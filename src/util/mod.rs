//! Utilities every layer may use: logging ([`log`]), the secret registry and redaction
//! ([`secrets`]), workflow commands ([`workflow`]), progress reporting ([`progress`]), private
//! scratch files ([`scratch`]), the heap between stages ([`heap`]), and the two ways a stage
//! stops without being the cause.

pub(crate) mod heap;
pub(crate) mod log;
pub mod progress;
pub(crate) mod scratch;
pub(crate) mod secrets;
pub(crate) mod workflow;

/// A stage stopped because another stage stopped first (never the root cause).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("pipeline closed")]
pub struct PipelineClosed;

/// The run was cancelled (SIGINT/SIGTERM).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;
