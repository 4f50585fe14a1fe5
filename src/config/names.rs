//! The rules for names a configuration gives: routes, origins, issuers and policies (`is_name`),
//! and plugins, which are Python packages (`is_plugin_name`). Names appear in metric labels, log
//! fields, file names and the decision trace, so they are short and plain.

/// 1–64 characters of `a-z`, `0-9`, `_` or `-`.
pub fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A plugin directory, imported by Python as a package: `a-z`, `0-9` and `_`, not empty and not
/// starting with a digit.
pub fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lower_case_identifiers() {
        for good in ["api", "geo-router", "v2_users", &"a".repeat(64)] {
            assert!(is_name(good), "{good}");
        }
        for bad in ["", "API", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[test]
    fn plugin_names_are_python_packages() {
        assert!(is_plugin_name("geo_router"));
        for bad in ["", "geo-router", "Geo", "a/b", "2fa"] {
            assert!(!is_plugin_name(bad), "{bad}");
        }
    }
}
