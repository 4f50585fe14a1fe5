//! Header-name patterns as a configuration writes them: an exact name (`x-user-id`) or a prefix
//! ending in `*` (`x-internal-*`). One rule for the reserved headers, the headers the gateway
//! owns and the headers a policy may set. This module imports nothing of the crate.

/// A set of header-name patterns, compared without regard to ASCII case.
#[derive(Debug, Clone, Default)]
pub struct HeaderPatterns {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl HeaderPatterns {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> HeaderPatterns {
        let mut set = HeaderPatterns::default();
        for pattern in patterns {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_suffix('*') {
                Some(prefix) => set.prefixes.push(prefix.to_string()),
                None => set.exact.push(pattern),
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// Whether `name` (lower case, as `http::HeaderName` stores it) matches a pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.exact.iter().any(|e| e == name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_prefixes_match_in_lower_case() {
        let set = HeaderPatterns::new(["X-User-Id", "x-internal-*"]);
        assert!(set.matches("x-user-id"));
        assert!(set.matches("x-internal-tier"));
        assert!(set.matches("x-internal-"));
        assert!(!set.matches("x-user-idx"));
        assert!(!set.matches("x-internal"));
        assert!(!HeaderPatterns::default().matches("x-user-id"));
    }
}
