//! Why the host stops a plugin, as a typed error: the epoch callback returns
//! [`Stopped::Budget`] when a call has used its processor time, and [`Limiter`] returns
//! [`Stopped::Memory`] when a memory would grow past the policy's `memory_mb`. wasmtime hands the
//! error back from the call, and `classify` downcasts it to a [`Failure`], so no failure is told
//! apart by its text.

use std::fmt;
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, Trap};

/// Why a policy produced no decision the gateway could use: its `outcome` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    MemoryLimit,
    Trap,
    /// A decision that broke the policy's rules or could not be applied.
    InvalidOutput,
    /// An exception escaped the plugin's `handle_request`.
    Exception,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::MemoryLimit => "memory_limit",
            Failure::Trap => "trap",
            Failure::InvalidOutput => "invalid_output",
            Failure::Exception => "exception",
        }
    }
}

/// The host stopped a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The call used this much processor time, its budget.
    Budget(Duration),
    /// A memory asked to grow to `desired` bytes, over the limit.
    Memory { desired: usize, limit: usize },
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::Budget(budget) => write!(f, "deadline: plugin exceeded {budget:?}"),
            Stopped::Memory { desired, limit } => write!(
                f,
                "memory limit: plugin asked for {desired} bytes, the limit is {limit}"
            ),
        }
    }
}

impl std::error::Error for Stopped {}

/// What a failed call's error says about the failure.
pub fn classify(e: &wasmtime::Error) -> Failure {
    match e.downcast_ref::<Stopped>() {
        Some(Stopped::Budget(_)) => Failure::Timeout,
        Some(Stopped::Memory { .. }) => Failure::MemoryLimit,
        // A component that could not allocate (wasmtime's own refusal without our limiter's
        // error, e.g. a table) is still a memory failure.
        None if matches!(e.downcast_ref::<Trap>(), Some(Trap::AllocationTooLarge)) => {
            Failure::MemoryLimit
        }
        None => Failure::Trap,
    }
}

/// wasmtime's `StoreLimits`, with memory growth past the limit refused as [`Stopped::Memory`]
/// (a trap in the plugin, never a silent `memory.grow` failure).
pub struct Limiter {
    inner: StoreLimits,
    memory_bytes: usize,
}

impl Limiter {
    pub fn new(memory_bytes: usize) -> Limiter {
        Limiter {
            inner: wasmtime::StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .build(),
            memory_bytes,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(Stopped::Memory {
                desired,
                limit: self.memory_bytes,
            }
            .into());
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_own_stops_are_read_back_by_type() {
        let budget = wasmtime::Error::new(Stopped::Budget(Duration::from_millis(50)));
        assert_eq!(classify(&budget), Failure::Timeout);
        let memory = wasmtime::Error::new(Stopped::Memory {
            desired: 2 << 20,
            limit: 1 << 20,
        });
        assert_eq!(classify(&memory), Failure::MemoryLimit);
        // Context added on the way out does not hide the cause.
        assert_eq!(
            classify(&memory.context("handle-request")),
            Failure::MemoryLimit
        );
        let text_only = wasmtime::format_err!("deadline: plugin exceeded 50ms (memory limit)");
        assert_eq!(classify(&text_only), Failure::Trap, "text is never read");
    }

    #[test]
    fn growth_past_the_limit_is_refused_with_a_typed_error() {
        let mut limiter = Limiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 19, None).expect("within"));
        let refused = limiter
            .memory_growing(1 << 19, 2 << 20, None)
            .expect_err("over the limit");
        assert!(matches!(
            refused.downcast_ref::<Stopped>(),
            Some(Stopped::Memory { .. })
        ));
    }
}
