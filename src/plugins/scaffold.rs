//! `edgewarden plugins new NAME`: a new plugin directory with a forwarding `plugin.py` and its
//! pytest file.

use crate::error::{Error, ErrorKind, OrErr};

/// Create `plugins_dir/<name>/` with a forwarding `plugin.py` and a pytest file.
pub fn scaffold(plugins_dir: &std::path::Path, name: &str) -> Result<std::path::PathBuf, Error> {
    const KIND: ErrorKind = ErrorKind::PluginBuild;
    if !crate::config::names::is_plugin_name(name) {
        return Err(Error::new(
            KIND,
            format!("{name:?}: a plugin name is a Python identifier of a-z, 0-9 and '_'"),
        ));
    }
    let dir = plugins_dir.join(name);
    if dir.exists() {
        return Err(Error::new(
            KIND,
            format!("{} already exists", dir.display()),
        ));
    }
    std::fs::create_dir_all(&dir).or_err_with(KIND, || dir.display().to_string())?;
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
            .or_err_with(KIND, || dir.join(file).display().to_string())?;
    }
    Ok(dir)
}
