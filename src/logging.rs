//! Where the process logs: diagnostics to stderr as text (filtered by `EDGEWARDEN_LOG`), and the
//! access log (target `edgewarden::access`, written only when `[access_log]` is on) to stdout as
//! JSON lines, from a writer thread so a slow reader of stdout never stalls a request.
//! Diagnostics carry colour codes only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>): a file or a container log gets plain text.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Targets, filter_fn};
use tracing_subscriber::prelude::*;

/// The target of the access log's events.
pub const ACCESS_LOG: &str = "edgewarden::access";

/// Install the process-wide subscriber. Keep the guard until the process exits: dropping it
/// flushes the access log.
pub fn init() -> WorkerGuard {
    let filter = EnvFilter::try_from_env("EDGEWARDEN_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn")
    });
    let (stdout, flush_on_exit) = tracing_appender::non_blocking(std::io::stdout());
    let access = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_target(false)
        .with_level(false)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(stdout)
        .with_filter(Targets::new().with_target(ACCESS_LOG, tracing::Level::INFO));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|meta| meta.target() != ACCESS_LOG))
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(access)
        .with(diagnostics)
        .init();
    flush_on_exit
}

/// Whether diagnostics are coloured: on a terminal, unless `NO_COLOR` holds a value.
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None), "a file or a pipe gets plain text");
    }
}
