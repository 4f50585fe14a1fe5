//! Policy plugins in a gateway's directory: plugin sources linked from the repository, policy
//! files written from [`Entry`] tables, and the build cache every test shares.

use std::path::Path;

use super::config::{Entry, policy};

/// Built and precompiled plugins, shared by every test of a run (the first build is slow).
pub const PLUGIN_CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/plugin-cache");

/// The plugin build tool, from the project's virtualenv (`scripts/setup`).
pub const COMPONENTIZE_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/componentize-py");

/// Link `dir/plugins/name` to `source`, a plugin directory relative to the repository root.
pub fn link_plugin(dir: &Path, name: &str, source: &str) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    std::os::unix::fs::symlink(target, plugins.join(name)).expect("link plugin");
}

/// Write `dir/policies/name.toml`.
pub fn write_policy(dir: &Path, name: &str, policy: &Entry) {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policies dir");
    std::fs::write(policies.join(format!("{name}.toml")), policy.to_text()).expect("policy file");
}

/// The shipped `require_claim` plugin as a policy: 403 unless the token's `role` is `admin`.
pub fn admins_only() -> Entry {
    policy("require_claim").set(
        "settings",
        serde_json::json!({"claim": "role", "allowed": ["admin"]}),
    )
}
