//! Policy files (`policies/<name>.toml`): which Python plugin a route runs, with which limits,
//! what its output may touch, and the settings passed to it.

use std::path::Path;

use super::reader::{Problems, Section};
use super::{Isolation, OnError, PolicyConfig};

/// Read `policies_dir/<name>.toml`. Problems are reported as `<file>: <key>: ...`.
pub(super) fn read_policy(
    name: &str,
    policies_dir: &Path,
    plugins_dir: &Path,
    problems: &mut Problems,
) -> Option<PolicyConfig> {
    let file = policies_dir.join(format!("{name}.toml"));
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(&shown, format!("cannot read policy file: {e}"));
            return None;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            problems.push(&shown, format!("not valid TOML: {}", message.trim()));
            return None;
        }
    };
    let mut s = Section::new("", &table);
    let mut local = Problems::default();
    let plugin: Option<String> = s.required(&mut local, "plugin");
    if let Some(plugin) = &plugin {
        if !super::names::is_plugin_name(plugin) {
            local.push(
                "plugin",
                format!("{plugin:?} must be a directory name of a-z, 0-9 and '_', not starting with a digit"),
            );
        } else if !plugins_dir.join(plugin).join("plugin.py").is_file() {
            local.push(
                "plugin",
                format!(
                    "no plugin {plugin:?}: {} does not exist",
                    plugins_dir.join(plugin).join("plugin.py").display()
                ),
            );
        }
    }
    let timeout_ms = s.ranged(&mut local, "timeout_ms", 50, 1, 1000);
    let deadline_ms = s.ranged(&mut local, "deadline_ms", 1000, 1, 60_000);
    if deadline_ms < timeout_ms {
        local.push(
            "deadline_ms",
            format!("{deadline_ms} is below timeout_ms ({timeout_ms}): a call could never use its budget"),
        );
    }
    let memory_mb = s.ranged(&mut local, "memory_mb", 64, 16, 1024);
    let on_error = match s.optional::<String>(&mut local, "on_error").as_deref() {
        None | Some("deny") => OnError::Deny,
        Some("allow") => OnError::Allow,
        Some(other) => {
            local.push(
                "on_error",
                format!("{other:?} is not \"deny\" or \"allow\""),
            );
            OnError::Deny
        }
    };
    let isolation = match s.optional::<String>(&mut local, "isolation").as_deref() {
        None | Some("warm") => Isolation::Warm,
        Some("fresh") => Isolation::Fresh,
        Some(other) => {
            local.push(
                "isolation",
                format!("{other:?} is not \"warm\" or \"fresh\""),
            );
            Isolation::Warm
        }
    };
    let max_calls_per_instance =
        s.ranged(&mut local, "max_calls_per_instance", 10_000, 1, 100_000_000);
    let allow_headers: Vec<String> = s
        .or::<Vec<String>>(&mut local, "allow_headers", Vec::new())
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    for (i, h) in allow_headers.iter().enumerate() {
        let bare = h.strip_suffix('*').unwrap_or(h);
        if bare.is_empty() || http::HeaderName::from_bytes(bare.as_bytes()).is_err() {
            local.push(
                &format!("allow_headers[{i}]"),
                format!("{h:?} is not a header name"),
            );
        }
    }
    let allow_origins = s.or::<Vec<String>>(&mut local, "allow_origins", Vec::new());
    let settings = s
        .optional::<toml::Table>(&mut local, "settings")
        .unwrap_or_default();
    let settings_json = serde_json::to_string(&settings).unwrap_or_else(|_| "{}".to_string());
    s.finish(&mut local);
    for problem in local.into_vec() {
        problems.push(&shown, problem);
    }
    Some(PolicyConfig {
        name: name.to_string(),
        file,
        plugin: plugin?,
        timeout_ms,
        deadline_ms,
        memory_mb,
        on_error,
        isolation,
        max_calls_per_instance,
        allow_headers,
        allow_origins,
        settings_json,
    })
}
