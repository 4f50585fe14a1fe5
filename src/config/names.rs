//! The rules for names a configuration gives: routes, origins, issuers and policies ([`Name`]),
//! and plugins, which are Python packages (`is_plugin_name`). Names appear in metric labels, log
//! fields, file names and the decision trace, so they are short and plain.
//!
//! A [`Name`] can only be made by checking the rule, so code that holds one never checks again.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A configured name: 1–64 characters of `a-z`, `0-9`, `_` or `-`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Name(Arc<str>);

/// A string that breaks the name rule; its `Display` is the problem as a config error shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAName(pub String);

impl fmt::Display for NotAName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} must be 1-64 characters of a-z, 0-9, '_' or '-'",
            self.0
        )
    }
}

impl std::error::Error for NotAName {}

impl Name {
    pub fn new(name: &str) -> Result<Name, NotAName> {
        if is_name(name) {
            Ok(Name(Arc::from(name)))
        } else {
            Err(NotAName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl TryFrom<String> for Name {
    type Error = NotAName;
    fn try_from(name: String) -> Result<Name, NotAName> {
        Name::new(&name)
    }
}

impl TryFrom<&str> for Name {
    type Error = NotAName;
    fn try_from(name: &str) -> Result<Name, NotAName> {
        Name::new(name)
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
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
            assert_eq!(Name::new(good).map(|n| n.to_string()), Ok(good.to_string()));
        }
        for bad in ["", "API", "a b", "a.b", "é", &"a".repeat(65)] {
            assert_eq!(Name::new(bad), Err(NotAName(bad.to_string())), "{bad}");
        }
    }

    #[test]
    fn a_name_is_read_from_toml_only_when_it_follows_the_rule() {
        #[derive(serde::Deserialize)]
        struct Doc {
            name: Name,
        }
        let doc: Doc = toml::from_str("name = \"geo-router\"").expect("a valid name");
        assert_eq!(doc.name, "geo-router");
        let err = toml::from_str::<Doc>("name = \"Geo Router\"")
            .err()
            .expect("refused");
        assert!(
            err.message()
                .contains("\"Geo Router\" must be 1-64 characters"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn plugin_names_are_python_packages() {
        assert!(is_plugin_name("geo_router"));
        for bad in ["", "geo-router", "Geo", "a/b", "2fa"] {
            assert!(!is_plugin_name(bad), "{bad}");
        }
    }
}
