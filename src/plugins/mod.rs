//! Python policy plugins, compiled to WebAssembly components and run in-process: building
//! (`build`), hosting (`host`), checking what they decide (`decision`), and running a route's
//! chain of policies in order (here). The first policy that answers ends the chain.

mod bindings;
pub mod build;
mod clock;
pub mod decision;
pub mod host;
mod ticker;

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::config::{Config, OnError, PolicyConfig};
use bindings::edgewarden::policy::types::Request;
use decision::{Allowed, Checked};
use host::{PolicyHost, Runtime};

/// What a route's policies decided.
pub enum Outcome {
    /// Go on to the origin, possibly another one.
    Forward { origin: Option<String> },
    /// Answer with this response.
    Respond {
        status: u16,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        body: Vec<u8>,
    },
    /// A policy with `on_error = "deny"` failed: answer 503.
    Failed,
}

/// Facts about the request that plugins see besides its header.
pub struct Context<'a> {
    pub client_ip: String,
    pub route: &'a str,
    pub claims_json: Option<String>,
    pub country: Option<String>,
}

struct Loaded {
    config: PolicyConfig,
    host: Arc<PolicyHost>,
}

/// Every policy of one configuration, built and warmed.
pub struct Plugins {
    policies: Vec<Loaded>,
    /// For each route, indexes into `policies`, in order.
    routes: Vec<Vec<usize>>,
    _runtime: Option<Runtime>,
}

impl Plugins {
    /// Build, compile and warm every policy some route uses (blocking; start-up only).
    /// `warm` is the number of initialised instances to keep per policy; at most twice as many
    /// are in use at once.
    pub fn build(
        config: &Config,
        cache_dir: std::path::PathBuf,
        warm: usize,
    ) -> Result<Plugins, String> {
        let routes_use_policies = config.routes.iter().any(|r| !r.policies.is_empty());
        if !routes_use_policies {
            return Ok(Plugins {
                policies: Vec::new(),
                routes: vec![Vec::new(); config.routes.len()],
                _runtime: None,
            });
        }
        let runtime = Runtime::new()?;
        let builder = build::Builder::new(cache_dir, &config.server.plugins_dir);
        let warmer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("plugin warm-up runtime: {e}"))?;
        let mut policies = Vec::with_capacity(config.policies.len());
        let mut errors = Vec::new();
        for policy in &config.policies {
            let dir = config.server.plugins_dir.join(&policy.plugin);
            let built = match builder.build(&runtime.engine, &policy.plugin, &dir) {
                Ok(built) => built,
                Err(e) => {
                    errors.push(format!("{}: {e}", policy.file.display()));
                    continue;
                }
            };
            tracing::info!(policy = %policy.name, plugin = %policy.plugin, how = %built.note, "plugin ready");
            let host = match runtime.prepare(policy, &built.component, warm * 2) {
                Ok(host) => host,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let Err(e) = warmer.block_on(host.warm_up(warm)) {
                errors.push(format!("{}: {e}", policy.file.display()));
                continue;
            }
            policies.push(Loaded {
                config: policy.clone(),
                host,
            });
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let routes = config
            .routes
            .iter()
            .map(|r| {
                r.policies
                    .iter()
                    .filter_map(|name| policies.iter().position(|p| &p.config.name == name))
                    .collect()
            })
            .collect();
        Ok(Plugins {
            policies,
            routes,
            _runtime: Some(runtime),
        })
    }

    pub fn route_has_policies(&self, route: usize) -> bool {
        self.routes.get(route).is_some_and(|p| !p.is_empty())
    }

    /// Policies whose plugin has no initialised instance (readiness).
    pub fn not_ready(&self) -> Vec<String> {
        self.policies
            .iter()
            .filter(|p| {
                p.config.isolation == crate::config::Isolation::Warm && p.host.instances() == 0
            })
            .map(|p| format!("policy {}: no initialised instance", p.config.name))
            .collect()
    }

    /// Run the route's policies in order on `req`, applying each forward decision before the next.
    pub async fn run(&self, route: usize, req: &mut RequestHeader, ctx: &Context<'_>) -> Outcome {
        let Some(chain) = self.routes.get(route) else {
            return Outcome::Forward { origin: None };
        };
        let mut origin = None;
        for &index in chain {
            let Some(policy) = self.policies.get(index) else {
                continue;
            };
            let input = request_for(req, ctx);
            let checked = match policy.host.call(&input).await {
                Ok(decision) => {
                    let allowed = Allowed {
                        headers: &policy.config.allow_headers,
                        origins: &policy.config.allow_origins,
                    };
                    decision::check(decision, &allowed).map_err(|why| {
                        tracing::warn!(policy = %policy.config.name, %why, "plugin output refused");
                    })
                }
                Err(_) => Err(()),
            };
            match checked {
                Ok(Checked::Respond {
                    status,
                    headers,
                    body,
                }) => {
                    return Outcome::Respond {
                        status,
                        headers,
                        body,
                    };
                }
                Ok(Checked::Forward {
                    set,
                    append,
                    remove,
                    origin: chosen,
                    path,
                }) => {
                    if let Err(why) = decision::apply(req, set, append, remove, path) {
                        tracing::warn!(policy = %policy.config.name, %why, "plugin decision not applied");
                        if policy.config.on_error == OnError::Deny {
                            return Outcome::Failed;
                        }
                    }
                    if chosen.is_some() {
                        origin = chosen;
                    }
                }
                Err(()) if policy.config.on_error == OnError::Deny => return Outcome::Failed,
                Err(()) => {}
            }
        }
        Outcome::Forward { origin }
    }
}

/// Build every plugin directory under `plugins_dir` (those with a `plugin.py`). One line per plugin.
pub fn build_all(config: &Config) -> Result<Vec<String>, String> {
    let runtime = Runtime::new()?;
    let builder = build::Builder::new(
        config.server.plugin_cache_dir.clone(),
        &config.server.plugins_dir,
    );
    let dir = &config.server.plugins_dir;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("plugin.py").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match builder.build(&runtime.engine, &name, &dir.join(&name)) {
            Ok(built) => lines.push(format!("{name}: {}", built.note)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors.join("\n"))
    }
}

/// Create `plugins_dir/<name>/` with a forwarding `plugin.py` and a pytest file.
pub fn scaffold(plugins_dir: &std::path::Path, name: &str) -> Result<std::path::PathBuf, String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!(
            "{name:?}: a plugin name is a Python identifier of a-z, 0-9 and '_'"
        ));
    }
    let dir = plugins_dir.join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let plugin = format!(
        "\"\"\"{name}: what this policy does.\"\"\"\n\nfrom edgewarden import Response, send_to_origin, settings\n\n\n\
         def handle_request(request):\n    if request.headers.get(\"x-blocked\"):\n        \
         return Response(403, {{\"content-type\": \"text/plain\"}}, \"blocked\\n\")\n    \
         return send_to_origin(request)\n"
    );
    let test = r#"from conftest import load_plugin
from edgewarden import Forward, Request, Response

plugin = load_plugin(__file__)


def test_plain_requests_are_forwarded():
    assert isinstance(plugin.handle_request(Request()), Forward)


def test_blocked_requests_get_403():
    answer = plugin.handle_request(Request(headers={"x-blocked": "1"}))
    assert isinstance(answer, Response) and answer.status == 403
"#
    .to_string();
    for (file, text) in [("plugin.py", plugin), ("test_plugin.py", test)] {
        std::fs::write(dir.join(file), text)
            .map_err(|e| format!("{}: {e}", dir.join(file).display()))?;
    }
    Ok(dir)
}

fn request_for(req: &RequestHeader, ctx: &Context<'_>) -> Request {
    Request {
        method: req.method.to_string(),
        path: req.uri.path().to_string(),
        query: req.uri.query().map(str::to_string),
        headers: header_block(req),
        client_ip: ctx.client_ip.clone(),
        route: ctx.route.to_string(),
        claims_json: ctx.claims_json.clone(),
        country: ctx.country.clone(),
    }
}

/// The request's headers as `name: value` lines (see `wit/policy.wit`). Values that are not
/// visible ASCII are left out, as plugins could not set them back either.
fn header_block(req: &RequestHeader) -> String {
    let size: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 3)
        .sum();
    let mut block = String::with_capacity(size);
    for (name, value) in &req.headers {
        if let Ok(value) = value.to_str() {
            block.push_str(name.as_str());
            block.push_str(": ");
            block.push_str(value);
            block.push('\n');
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_reach_plugins_as_lines_in_order_without_unreadable_values() {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        req.append_header("Host", "a.example").expect("header");
        req.append_header("x-multi", "1").expect("header");
        req.append_header("x-multi", "two: 2").expect("header");
        req.append_header("x-empty", "").expect("header");
        req.append_header(
            "x-latin",
            http::HeaderValue::from_bytes(b"caf\xe9").expect("value"),
        )
        .expect("header");
        assert_eq!(
            header_block(&req),
            "host: a.example\nx-multi: 1\nx-multi: two: 2\nx-empty: \n"
        );
    }
}
