//! Policy files (`policies/<name>.toml`): which Python plugin a route runs, with which limits,
//! what its output may touch, and the settings passed to it.

use std::path::Path;

use super::names::Name;
use super::reader::{Problems, Section};
use super::{CacheInput, DecisionCacheConfig, Isolation, OnError, PolicyConfig};

/// Read `policies_dir/<name>.toml`. Problems are reported as `<file>: <key>: ...`.
pub(super) fn read_policy(
    name: &Name,
    policies_dir: &Path,
    plugins_dir: &Path,
    problems: &mut Problems,
) -> Option<PolicyConfig> {
    let file = policies_dir.join(format!("{name}.toml"));
    let shown = file.display().to_string();
    let table = read_table(&file, &shown, problems)?;
    let mut s = Section::new("", &table);
    let mut local = Problems::default();
    let plugin = read_plugin(&mut s, plugins_dir, &mut local);
    let timeout_ms = s.ranged(&mut local, "timeout_ms", 50, 1, 1000);
    let deadline_ms = s.ranged(&mut local, "deadline_ms", 1000, 1, 60_000);
    if deadline_ms < timeout_ms {
        local.push(
            "deadline_ms",
            format!("{deadline_ms} is below timeout_ms ({timeout_ms}): a call could never use its budget"),
        );
    }
    let memory_mb = s.ranged(&mut local, "memory_mb", 64, 16, 1024);
    let on_error = s.choice(
        &mut local,
        "on_error",
        [("deny", OnError::Deny), ("allow", OnError::Allow)],
    );
    let isolation = s.choice(
        &mut local,
        "isolation",
        [("warm", Isolation::Warm), ("fresh", Isolation::Fresh)],
    );
    let max_calls_per_instance =
        s.ranged(&mut local, "max_calls_per_instance", 10_000, 1, 100_000_000);
    let allow_headers = read_allow_headers(&mut s, &mut local);
    let allow_origins = s.or::<Vec<Name>>(&mut local, "allow_origins", Vec::new());
    let limits = s.or::<Vec<Name>>(&mut local, "limits", Vec::new());
    let settings = s
        .optional::<toml::Table>(&mut local, "settings")
        .unwrap_or_default();
    let settings_json = serde_json::to_string(&settings).unwrap_or_else(|_| "{}".to_string());
    let cache = s
        .table(&mut local, "cache")
        .and_then(|c| read_cache(c, &mut local));
    if cache.is_some() && !limits.is_empty() {
        local.push(
            "cache",
            "a cached policy cannot use limits: a remembered decision would not spend them",
        );
    }
    s.finish(&mut local);
    for problem in local.into_vec() {
        problems.push(&shown, problem);
    }
    Some(PolicyConfig {
        name: name.clone(),
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
        limits,
        settings_json,
        cache,
    })
}

/// `[cache]`: `inputs` (at least one, each once), `ttl_s`, `max_entries`.
fn read_cache(mut c: Section<'_>, problems: &mut Problems) -> Option<DecisionCacheConfig> {
    let names: Vec<String> = c.required(problems, "inputs")?;
    let ttl_s = c.ranged(problems, "ttl_s", 60, 1, 86_400);
    let max_entries = c.ranged(problems, "max_entries", 10_000, 1, 1_000_000);
    let path = c.key_path("inputs");
    if names.is_empty() {
        problems.push(&path, "name at least one input");
    }
    let mut inputs = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match cache_input(name) {
            Ok(input) if inputs.contains(&input) => {
                problems.push(&format!("{path}[{i}]"), format!("{name:?} is named twice"))
            }
            Ok(input) => inputs.push(input),
            Err(why) => problems.push(&format!("{path}[{i}]"), why),
        }
    }
    c.finish(problems);
    Some(DecisionCacheConfig {
        inputs,
        ttl_s,
        max_entries,
    })
}

fn cache_input(name: &str) -> Result<CacheInput, String> {
    Ok(match name {
        "method" => CacheInput::Method,
        "path" => CacheInput::Path,
        "country" => CacheInput::Country,
        "route" => CacheInput::Route,
        "client_ip" => CacheInput::ClientIp,
        "claims" => CacheInput::Claims,
        _ => {
            if let Some(claim) = name.strip_prefix("claim:") {
                let path: Vec<String> = claim.split('.').map(str::to_string).collect();
                if path.iter().any(String::is_empty) {
                    return Err(format!("{name:?}: a claim path is names joined by '.'"));
                }
                CacheInput::Claim(path)
            } else if let Some(header) = name.strip_prefix("header:") {
                match http::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()) {
                    Ok(header) => CacheInput::Header(header),
                    Err(_) => return Err(format!("{name:?}: {header:?} is not a header name")),
                }
            } else {
                return Err(format!(
                    "{name:?} is not an input: method, path, country, route, client_ip, claims, \
                     claim:PATH or header:NAME"
                ));
            }
        }
    })
}

/// The policy file as a TOML table; `None` (reported) when it cannot be read or parsed.
fn read_table(file: &Path, shown: &str, problems: &mut Problems) -> Option<toml::Table> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(shown, format!("cannot read policy file: {e}"));
            return None;
        }
    };
    match text.parse() {
        Ok(table) => Some(table),
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            problems.push(shown, format!("not valid TOML: {}", message.trim()));
            None
        }
    }
}

/// `plugin`: a plugin directory under `plugins_dir` holding a `plugin.py`.
fn read_plugin(s: &mut Section<'_>, plugins_dir: &Path, problems: &mut Problems) -> Option<String> {
    let plugin: String = s.required(problems, "plugin")?;
    let source = plugins_dir.join(&plugin).join("plugin.py");
    if !super::names::is_plugin_name(&plugin) {
        problems.push(
            "plugin",
            format!(
                "{plugin:?} must be a directory name of a-z, 0-9 and '_', not starting with a digit"
            ),
        );
    } else if !source.is_file() {
        problems.push(
            "plugin",
            format!("no plugin {plugin:?}: {} does not exist", source.display()),
        );
    }
    Some(plugin)
}

/// `allow_headers`: header names or `prefix*` patterns, stored in lower case.
fn read_allow_headers(s: &mut Section<'_>, problems: &mut Problems) -> Vec<String> {
    let allow_headers: Vec<String> = s
        .or::<Vec<String>>(problems, "allow_headers", Vec::new())
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    for (i, h) in allow_headers.iter().enumerate() {
        let bare = h.strip_suffix('*').unwrap_or(h);
        if bare.is_empty() || http::HeaderName::from_bytes(bare.as_bytes()).is_err() {
            problems.push(
                &format!("allow_headers[{i}]"),
                format!("{h:?} is not a header name"),
            );
        }
    }
    allow_headers
}
