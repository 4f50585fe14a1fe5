//! `edgewarden plugins new NAME`: a new plugin directory with a forwarding `plugin.py` and its
//! pytest file, and a policy file that runs it.

use crate::error::{Error, ErrorKind, OrErr};

/// Create `plugins_dir/<name>/` with a forwarding `plugin.py` and a pytest file, and
/// `policies_dir/<name>.toml` running it. Returns the files written. Nothing is written when
/// either already exists.
pub fn scaffold(
    plugins_dir: &std::path::Path,
    policies_dir: &std::path::Path,
    name: &str,
) -> Result<Vec<std::path::PathBuf>, Error> {
    const KIND: ErrorKind = ErrorKind::PluginBuild;
    if !crate::config::names::is_plugin_name(name) {
        return Err(Error::new(
            KIND,
            format!("{name:?}: a plugin name is a Python identifier of a-z, 0-9 and '_'"),
        ));
    }
    let dir = plugins_dir.join(name);
    let policy_file = policies_dir.join(format!("{name}.toml"));
    for existing in [&dir, &policy_file] {
        if existing.exists() {
            return Err(Error::new(
                KIND,
                format!("{} already exists", existing.display()),
            ));
        }
    }
    std::fs::create_dir_all(&dir).or_err_with(KIND, || dir.display().to_string())?;
    let plugin = format!(
        "\"\"\"{name}: what this policy does.\"\"\"\n\nfrom edgewarden import Response, send_to_origin, settings\n\n\n\
         def handle_request(request):\n    if request.headers.get(\"x-blocked\"):\n        \
         return Response(403, {{\"content-type\": \"text/plain\"}}, \"blocked\\n\")\n    \
         return send_to_origin(request)\n"
    );
    let test = r#"from edgewarden_pytest import load_plugin
from edgewarden import Forward, Request, Response

plugin = load_plugin(__file__)


def test_plain_requests_are_forwarded():
    assert isinstance(plugin.handle_request(Request()), Forward)


def test_blocked_requests_get_403():
    answer = plugin.handle_request(Request(headers={"x-blocked": "1"}))
    assert isinstance(answer, Response) and answer.status == 403
"#
    .to_string();
    let policy = format!(
        r#"# The policy {name}: the plugin it runs and what that plugin may do. A route runs it with
# policies = ["{name}"].
plugin = "{name}"
# Request headers the plugin may set, append or remove ("prefix*" allowed). Setting any other
# header fails the call (503 with on_error = "deny"). On a route running this policy, client
# copies of these headers are removed before the plugin runs.
# allow_headers = ["x-tier"]
# Origins the plugin may send the request to (names of [[origins]]).
# allow_origins = []
# Processor time per call in milliseconds. Default 50.
# timeout_ms = 50
# When the plugin fails: "deny" answers 503, "allow" skips this policy. Default "deny".
# on_error = "deny"
# When the decision depends only on a few inputs: the plugin sees only these, and its decision is
# remembered per value (python-plugins/README.md, "Remembered decisions"). No clocks, randomness
# or limits in a cached policy.
# cache = {{ inputs = ["header:x-tier"], ttl_s = 60, max_entries = 10000 }}

# Passed to the plugin as `settings`.
[settings]
"#
    );
    let written = [
        (dir.join("plugin.py"), plugin),
        (dir.join("test_plugin.py"), test),
        (policy_file, policy),
    ];
    for (path, text) in &written {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).or_err_with(KIND, || parent.display().to_string())?;
        }
        std::fs::write(path, text).or_err_with(KIND, || path.display().to_string())?;
    }
    Ok(written.into_iter().map(|(path, _)| path).collect())
}
