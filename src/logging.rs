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

/// The diagnostics filter: `EDGEWARDEN_LOG` (or the default when unset or invalid), with the `h2`
/// crate at `error` unless it names `h2` itself. `h2` warns when a client misbehaves (a rapid-reset
/// flood's connection is closed with one line each): the client's doing, and a flood's worth of
/// lines.
fn filter(spec: Option<&str>) -> EnvFilter {
    const DEFAULT: &str = "info,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn";
    let (spec, filter) = spec
        .and_then(|spec| Some((spec, EnvFilter::try_new(spec).ok()?)))
        .unwrap_or_else(|| (DEFAULT, EnvFilter::new(DEFAULT)));
    let names_h2 = spec.split(',').any(|directive| {
        let target = directive.split(['=', '[']).next().unwrap_or("").trim();
        target == "h2" || target.starts_with("h2::")
    });
    if names_h2 {
        return filter;
    }
    match "h2=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Install the process-wide subscriber. Keep the guard until the process exits: dropping it
/// flushes the access log.
pub fn init() -> WorkerGuard {
    let filter = filter(std::env::var("EDGEWARDEN_LOG").ok().as_deref());
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
    use super::{colour, filter};

    #[test]
    fn h2_is_held_to_errors_unless_the_filter_names_it() {
        let default = filter(None).to_string();
        assert!(default.contains("h2=error"), "{default}");
        assert!(default.contains("pingora_core=warn"), "{default}");
        let debug = filter(Some("debug")).to_string();
        assert!(debug.contains("h2=error"), "{debug}");
        let named = filter(Some("info,h2=debug")).to_string();
        assert!(
            named.contains("h2=debug") && !named.contains("h2=error"),
            "{named}"
        );
        let invalid = filter(Some("info,=[")).to_string();
        assert!(
            invalid.contains("pingora_core=warn"),
            "the default: {invalid}"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR is unset");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None), "a file or a pipe gets plain text");
    }
}
