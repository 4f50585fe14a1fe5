//! Error-collecting reader over a parsed TOML document.
//!
//! Serde stops at the first problem; operators want every problem in one pass. A [`Section`] reads
//! one table key by key, records each problem with its full key path (`routes[2].origin`), and on
//! [`Section::finish`] reports every key it was never asked about as unknown.

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::names::Name;

/// Problems found while reading a config file, each `key.path: what is wrong`.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn push(&mut self, path: &str, message: impl std::fmt::Display) {
        if path.is_empty() {
            self.0.push(message.to_string());
        } else {
            self.0.push(format!("{path}: {message}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// One TOML table being read, with the key path that leads to it.
pub struct Section<'a> {
    path: String,
    table: &'a Table,
    read: Vec<&'a str>,
    /// Every key asked for, present or not: the known keys, for "did you mean".
    asked: Vec<String>,
}

impl<'a> Section<'a> {
    pub fn new(path: impl Into<String>, table: &'a Table) -> Self {
        Section {
            path: path.into(),
            table,
            read: Vec::new(),
            asked: Vec::new(),
        }
    }

    /// The key path of `key` inside this section.
    /// Where this table is in the file: `server`, `routes[2] (shop)`, `server.listen[1].tls`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn raw(&mut self, key: &str) -> Option<&'a Value> {
        if !self.asked.iter().any(|k| k == key) {
            self.asked.push(key.to_string());
        }
        let (name, value) = self.table.get_key_value(key)?;
        self.read.push(name.as_str());
        Some(value)
    }

    /// A key that must be present and of type `T`.
    pub fn required<T: DeserializeOwned>(
        &mut self,
        problems: &mut Problems,
        key: &str,
    ) -> Option<T> {
        match self.raw(key) {
            None => {
                problems.push(&self.key_path(key), "missing (required)");
                None
            }
            Some(value) => self.convert(problems, key, value),
        }
    }

    /// A key that may be absent; present values must be of type `T`.
    pub fn optional<T: DeserializeOwned>(
        &mut self,
        problems: &mut Problems,
        key: &str,
    ) -> Option<T> {
        let value = self.raw(key)?;
        self.convert(problems, key, value)
    }

    /// A key with a default used when it is absent (or, after reporting, when it is invalid).
    pub fn or<T: DeserializeOwned>(&mut self, problems: &mut Problems, key: &str, default: T) -> T {
        self.optional(problems, key).unwrap_or(default)
    }

    fn convert<T: DeserializeOwned>(
        &self,
        problems: &mut Problems,
        key: &str,
        value: &Value,
    ) -> Option<T> {
        match value.clone().try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(&self.key_path(key), e.message());
                None
            }
        }
    }

    /// An integer key with a default, within `min..=max` (out of range: reported, default used).
    pub fn ranged(
        &mut self,
        problems: &mut Problems,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        self.optional_ranged(problems, key, min, max)
            .unwrap_or(default)
    }

    /// An integer key that may be absent, within `min..=max` (out of range: reported, `None`).
    pub fn optional_ranged(
        &mut self,
        problems: &mut Problems,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let value = self.optional(problems, key)?;
        if value < min || value > max {
            problems.push(
                &self.key_path(key),
                format!("{value} is out of range {min}..={max}"),
            );
            return None;
        }
        Some(value)
    }

    /// The section's required `name`, which must follow the name rule ([`Name`]).
    pub fn name(&mut self, problems: &mut Problems) -> Option<Name> {
        self.required(problems, "name")
    }

    /// A key that names one of `choices`; absent: the first choice.
    pub fn choice<T: Copy, const N: usize>(
        &mut self,
        problems: &mut Problems,
        key: &str,
        choices: [(&str, T); N],
    ) -> T {
        let default = choices[0].1;
        let Some(value) = self.optional::<String>(problems, key) else {
            return default;
        };
        match choices.iter().find(|(name, _)| *name == value) {
            Some((_, choice)) => *choice,
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
                problems.push(
                    &self.key_path(key),
                    format!("{value:?} is not {}", names.join(" or ")),
                );
                default
            }
        }
    }

    /// A sub-table such as `health_check = { ... }`.
    pub fn table(&mut self, problems: &mut Problems, key: &str) -> Option<Section<'a>> {
        let value = self.raw(key)?;
        match value.as_table() {
            Some(table) => Some(Section::new(self.key_path(key), table)),
            None => {
                problems.push(
                    &self.key_path(key),
                    format!("expected a table, found {}", value.type_str()),
                );
                None
            }
        }
    }

    /// An array of tables such as `[[routes]]`; each element's path is `routes[i]`.
    pub fn tables(&mut self, problems: &mut Problems, key: &str) -> Vec<Section<'a>> {
        let Some(value) = self.raw(key) else {
            return Vec::new();
        };
        let path = self.key_path(key);
        let Some(items) = value.as_array() else {
            problems.push(
                &path,
                format!("expected an array of tables, found {}", value.type_str()),
            );
            return Vec::new();
        };
        let mut sections = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_table() {
                Some(table) => {
                    let name = table.get("name").and_then(Value::as_str);
                    sections.push(Section::new(item_path(&path, i, name), table));
                }
                None => problems.push(
                    &format!("{path}[{i}]"),
                    format!("expected a table, found {}", item.type_str()),
                ),
            }
        }
        sections
    }

    /// Report every key of this table that nobody read, with the known key it is closest to.
    pub fn finish(self, problems: &mut Problems) {
        for key in self.table.keys() {
            if self.read.contains(&key.as_str()) {
                continue;
            }
            match closest(key, &self.asked) {
                Some(known) => problems.push(
                    &self.key_path(key),
                    format!("unknown key (did you mean {known:?}?)"),
                ),
                None => problems.push(&self.key_path(key), "unknown key"),
            }
        }
    }
}

/// The path of element `index` of the array of tables at `array`, naming it when it has a valid
/// `name`: `routes[2] (shop)`.
pub fn item_path(array: &str, index: usize, name: Option<&str>) -> String {
    match name.filter(|n| super::Name::new(n).is_ok()) {
        Some(name) => format!("{array}[{index}] ({name})"),
        None => format!("{array}[{index}]"),
    }
}

/// The known key a misspelt `key` most likely meant: within two edits, or a third of its length.
fn closest<'k>(key: &str, known: &'k [String]) -> Option<&'k str> {
    let allowed = (key.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.as_str())
}

/// Where the file's paths lead and whether its host names are looked up: the file's directory
/// for relative paths; for `check --offline`, a root under which absolute paths are read and no
/// name resolution.
#[derive(Debug, Clone)]
pub struct Base {
    pub dir: std::path::PathBuf,
    /// Absolute paths are read under this directory (`check --root`).
    pub root: Option<std::path::PathBuf>,
    /// Look up upstream host names (off for `check --offline`).
    pub resolve_names: bool,
}

impl Base {
    /// `path` as written in the file, resolved to where it is read.
    pub fn join(&self, path: impl AsRef<std::path::Path>) -> std::path::PathBuf {
        let path = path.as_ref();
        match (&self.root, path.strip_prefix("/")) {
            (Some(root), Ok(inside)) => root.join(inside),
            _ => self.dir.join(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse::<Table>().expect("test TOML parses")
    }

    #[test]
    fn reports_every_problem_with_its_key_path() {
        let doc = table(
            "a = 1\nb = \"x\"\nextra = true\n[[items]]\nn = \"no\"\n[[items]]\nn = 2\nzzz = 1\n",
        );
        let mut problems = Problems::default();
        let mut root = Section::new("", &doc);
        let _: Option<u64> = root.required(&mut problems, "a");
        let _: Option<u64> = root.required(&mut problems, "b");
        let _: Option<u64> = root.required(&mut problems, "missing");
        for mut item in root.tables(&mut problems, "items") {
            let _: Option<u64> = item.required(&mut problems, "n");
            item.finish(&mut problems);
        }
        root.finish(&mut problems);
        let list = problems.into_vec();
        assert_eq!(list.len(), 5, "{list:#?}");
        assert!(list[0].starts_with("b: invalid type"), "{list:#?}");
        assert_eq!(list[1], "missing: missing (required)");
        assert!(list[2].starts_with("items[0].n: invalid type"), "{list:#?}");
        assert_eq!(list[3], "items[1].zzz: unknown key");
        assert_eq!(list[4], "extra: unknown key");
    }
}
