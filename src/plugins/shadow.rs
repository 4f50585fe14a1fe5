//! Shadow policies: a new policy version runs beside the enforced chain, on a copy of the request,
//! in the background. What it would have decided is counted
//! (`edgewarden_plugin_shadow_decisions_total{policy,decision}`) and logged, never applied, so
//! it can neither change a response nor add latency. Calls in flight are bounded; past the bound a
//! shadow call is skipped and counted as `decision="skipped"`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Policy;
use super::decision::{self, Allowed, Checked};

/// Shadow calls running at once, across every shadow policy of a configuration.
const MAX_IN_FLIGHT: usize = 64;

#[derive(Default)]
pub(super) struct Shadows {
    in_flight: Arc<AtomicUsize>,
}

/// Releases a shadow call's slot, however the call ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shadows {
    pub(super) fn run(&self, policy: Arc<Policy>, input: String) {
        let counter = &crate::metrics::get().plugin_shadow_decisions;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            counter
                .with_label_values(&[policy.config.name.as_str(), "skipped"])
                .inc();
            return;
        }
        let slot = Slot(self.in_flight.clone());
        runtime.spawn(async move {
            let _slot = slot;
            let config = &policy.config;
            let called = policy.host.call(input, None).await;
            let allowed = Allowed {
                headers: &policy.allow_headers,
                origins: &policy.origins,
            };
            let (label, detail) = match called.map(|answer| decision::check(&answer, &allowed)) {
                Ok(Ok(Checked::Forward(changes))) => {
                    let name = |id| policy.origins.iter().find(|(_, o)| *o == id);
                    let chosen = changes.origin.and_then(name);
                    ("forward", chosen.map(|(n, _)| format!("origin {n}")))
                }
                Ok(Ok(Checked::Respond(answer))) => {
                    ("respond", Some(format!("status {}", answer.status)))
                }
                Ok(Err(why)) => ("error", Some(why.to_string())),
                Err(failure) => ("error", Some(failure.label().to_string())),
            };
            counter
                .with_label_values(&[config.name.as_str(), label])
                .inc();
            tracing::info!(
                policy = %config.name,
                decision = label,
                detail = detail.as_deref().unwrap_or(""),
                "shadow policy decision (not enforced)"
            );
        });
    }
}
