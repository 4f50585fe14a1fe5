//! A Python exception that escaped a plugin's `handle_request`, as the guest glue reports it
//! (an `E` answer, see `wire`): cleaned, bounded and logged at most once a second per
//! policy, with how many were left out in between. Counting and the decision trace go through
//! [`super::Failure::Exception`] like every other failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::wire::{Answer, Malformed, Raised};

/// Longest text kept of each field the plugin sent.
const MAX_FIELD: usize = 300;

/// One policy's exception log: when it last wrote a line, and how many it has not written since.
#[derive(Default)]
pub struct ExceptionLog {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl ExceptionLog {
    /// Log the exception `answer` reports for `policy`, unless a line was written in this same
    /// second.
    pub fn report(&self, policy: &str, answer: Result<Answer<'_>, Malformed>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.load(Ordering::Relaxed);
        if last == now
            || self
                .last_second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let error = match answer {
            Ok(Answer::Raised(raised)) => raised,
            _ => Raised {
                kind: "(unreadable)",
                message: "the plugin's exception report was not readable",
                location: None,
            },
        };
        let location = error.location.map(clean);
        tracing::warn!(
            policy,
            failure = "exception",
            exception = %clean(error.kind),
            detail = %clean(error.message),
            location = %location.as_deref().unwrap_or("(outside the plugin's files)"),
            suppressed,
            "plugin raised an exception"
        );
    }
}

/// At most [`MAX_FIELD`] characters, control characters shown as `?`: the plugin's text never
/// breaks a log line.
pub fn clean(text: &str) -> String {
    text.chars()
        .take(MAX_FIELD)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_is_bounded_and_kept_on_one_line() {
        assert_eq!(clean("KeyError"), "KeyError");
        assert_eq!(clean("a\nb\r\u{1b}[31m"), "a?b??[31m");
        assert_eq!(clean(&"x".repeat(1000)).len(), MAX_FIELD);
    }

    #[test]
    fn a_second_exception_in_the_same_second_is_counted_not_logged() {
        let log = ExceptionLog::default();
        let error = || super::super::wire::answer(b"EKeyError\0'tier'\0plugin.py:3");
        log.report("p", error());
        log.report("p", error());
        log.report("p", error());
        let logged_this_second = log.last_second.load(Ordering::Relaxed);
        assert!(logged_this_second > 0);
        assert!(log.suppressed.load(Ordering::Relaxed) >= 1);
    }
}
