//! Configuration and policy files as TOML documents, built and edited by key, never as text.
//!
//! Editing something that is not there (a route or origin by name, a key to change or remove)
//! panics and names what is there, so a test cannot silently stop configuring what it tests. Keys
//! a test adds are checked by the gateway itself, which refuses unknown keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

use super::tokens::{AUDIENCE, ISSUER, RSA_A_PUBLIC};

/// Anything serde can serialise as a TOML value: `&str`, numbers, `bool`, slices, and
/// `serde_json::json!` objects for inline tables.
pub fn value(v: impl Serialize) -> Value {
    Value::try_from(v).unwrap_or_else(|e| panic!("not a TOML value: {e}"))
}

/// A whole `edgewarden.toml`.
#[derive(Clone, Debug)]
pub struct Config(Table);

impl Default for Config {
    /// An empty `[server]` section and nothing else.
    fn default() -> Config {
        let mut table = Table::new();
        table.insert("server".into(), Value::Table(Table::new()));
        Config(table)
    }
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Set `key` in `[server]`.
    pub fn server(mut self, key: &str, v: impl Serialize) -> Config {
        self.server_mut().set(key, v);
        self
    }

    /// Add an entry (`[[origins]]`, `[[routes]]`, `[[issuers]]`) or a section (`[geo]`).
    pub fn with(mut self, entry: Entry) -> Config {
        self.push(entry);
        self
    }

    /// As [`Config::with`], on a configuration being changed.
    pub fn push(&mut self, entry: Entry) {
        match entry.place {
            Place::Array(key) => {
                let list = self
                    .0
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else {
                    panic!("{key} is not an array of tables");
                };
                list.push(Value::Table(entry.table));
            }
            Place::Section(key) => {
                let previous = self.0.insert(key.into(), Value::Table(entry.table));
                assert!(
                    previous.is_none(),
                    "[{key}] is already in the configuration"
                );
            }
            Place::File => panic!("a policy file is not part of a configuration"),
        }
    }

    pub fn server_mut(&mut self) -> Section<'_> {
        self.section_mut("server")
    }

    /// A section such as `[geo]`; it must be there.
    pub fn section_mut(&mut self, name: &str) -> Section<'_> {
        let present: Vec<String> = self.0.keys().cloned().collect();
        match self.0.get_mut(name) {
            Some(Value::Table(table)) => Section {
                path: name.to_string(),
                table,
            },
            _ => panic!("no [{name}] section; the configuration has {present:?}"),
        }
    }

    /// The `[[routes]]` entry named `name`.
    pub fn route_mut(&mut self, name: &str) -> Section<'_> {
        self.entry_mut("routes", name)
    }

    fn entry_index(&self, key: &str, name: &str) -> usize {
        let names: Vec<&str> = match self.0.get(key) {
            Some(Value::Array(list)) => list
                .iter()
                .map(|e| e.get("name").and_then(Value::as_str).unwrap_or("?"))
                .collect(),
            _ => Vec::new(),
        };
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no {key} entry named {name:?}; there are {names:?}"))
    }

    /// The entry of `[[key]]` (`origins`, `routes`, `issuers`) named `name`.
    pub fn entry_mut(&mut self, key: &str, name: &str) -> Section<'_> {
        let index = self.entry_index(key, name);
        match self.0.get_mut(key) {
            Some(Value::Array(list)) => match &mut list[index] {
                Value::Table(table) => Section {
                    path: format!("{key}[{index}]"),
                    table,
                },
                other => panic!("{key}[{index}] is not a table: {other}"),
            },
            _ => unreachable!("entry_index found {key}"),
        }
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        toml::to_string(&self.0).expect("a configuration serialises")
    }

    /// Write the file as `dir/edgewarden.toml` and return its path.
    pub fn write_in(&self, dir: &Path) -> PathBuf {
        let path = dir.join("edgewarden.toml");
        std::fs::write(&path, self.to_text()).expect("write the configuration");
        path
    }
}

/// A table of a configuration being changed, reached by name; its key path shows in panics.
pub struct Section<'a> {
    path: String,
    table: &'a mut Table,
}

impl Section<'_> {
    /// Add `key` or give it a new value.
    pub fn set(&mut self, key: &str, v: impl Serialize) -> &mut Self {
        self.table.insert(key.into(), value(v));
        self
    }

    /// Give an existing `key` a new value.
    pub fn update(&mut self, key: &str, v: impl Serialize) -> &mut Self {
        self.get(key);
        self.set(key, v)
    }

    /// Remove an existing `key`.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.get(key);
        self.table.remove(key);
        self
    }

    /// The value of an existing `key`.
    pub fn get(&self, key: &str) -> &Value {
        self.table.get(key).unwrap_or_else(|| {
            let keys: Vec<&String> = self.table.keys().collect();
            panic!("{}.{key} is not set; the keys are {keys:?}", self.path)
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }
}

/// Where an [`Entry`] goes.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// One more element of `[[key]]`.
    Array(&'static str),
    /// `[key]`.
    Section(&'static str),
    /// A file of its own (a policy).
    File,
}

/// One table under construction: an `[[origins]]`, `[[routes]]` or `[[issuers]]` entry, a section
/// such as `[geo]`, or a whole policy file.
#[derive(Clone, Debug)]
pub struct Entry {
    place: Place,
    table: Table,
}

impl Entry {
    fn new(place: Place) -> Entry {
        Entry {
            place,
            table: Table::new(),
        }
    }

    /// Add `key` or give it a new value.
    pub fn set(mut self, key: &str, v: impl Serialize) -> Entry {
        self.table.insert(key.into(), value(v));
        self
    }

    /// Remove `key`, which must be there.
    pub fn without(mut self, key: &str) -> Entry {
        assert!(
            self.table.remove(key).is_some(),
            "{key} is not in {:?}",
            self.table.keys().collect::<Vec<_>>()
        );
        self
    }

    /// The string value of `key`, if it has one.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.table.get(key).and_then(Value::as_str)
    }

    /// The table's text (a policy file's content).
    pub fn to_text(&self) -> String {
        toml::to_string(&self.table).expect("a table serialises")
    }
}

/// `[[origins]]` with these upstreams.
pub fn origin(name: &str, upstreams: &[SocketAddr]) -> Entry {
    let upstreams: Vec<String> = upstreams.iter().map(SocketAddr::to_string).collect();
    Entry::new(Place::Array("origins"))
        .set("name", name)
        .set("upstreams", upstreams)
}

/// `[[limits]]`: `rate` requests per minute with `burst` at once, counted by `key`.
pub fn limit(name: &str, key: &str, rate: u64, burst: u64) -> Entry {
    Entry::new(Place::Array("limits"))
        .set("name", name)
        .set("key", key)
        .set("rate", rate)
        .set("per_s", 60)
        .set("burst", burst)
}

/// `[[routes]]` for `path_prefix` to `origin`, with `auth = "off"`.
pub fn route(name: &str, path_prefix: &str, origin: &str) -> Entry {
    Entry::new(Place::Array("routes"))
        .set("name", name)
        .set("path_prefix", path_prefix)
        .set("origin", origin)
        .set("auth", "off")
}

/// `[[issuers]]` named `main` for the test issuer and audience (RS256 and ES256, 30 s leeway,
/// `sub` required, `sub` and `org.id` to identity headers); its keys are for the caller to set
/// (`jwks_url`, `jwks_file` or `public_key_pem`).
pub fn issuer() -> Entry {
    Entry::new(Place::Array("issuers"))
        .set("name", "main")
        .set("issuer", ISSUER)
        .set("audiences", [AUDIENCE])
        .set("algorithms", ["RS256", "ES256"])
        .set("leeway_s", 30)
        .set("required_claims", ["sub"])
        .set(
            "claims_to_headers",
            serde_json::json!({"sub": "x-internal-user-id", "org.id": "x-org-id"}),
        )
}

/// [`issuer`] with the public half of `RSA_A` as its key.
pub fn pem_issuer() -> Entry {
    issuer().set("public_key_pem", RSA_A_PUBLIC.trim())
}

/// A section such as `[geo]` or `[access_log]`.
pub fn section(name: &'static str) -> Entry {
    Entry::new(Place::Section(name))
}

/// A policy file running `plugin`.
pub fn policy(plugin: &str) -> Entry {
    Entry::new(Place::File).set("plugin", plugin)
}

/// A policy file as shipped in the repository's `policies/`.
pub fn shipped_policy(name: &str) -> Entry {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("policies/{name}.toml"));
    let text = std::fs::read_to_string(&path).expect("shipped policy");
    Entry {
        place: Place::File,
        table: text.parse().expect("a shipped policy is TOML"),
    }
}
