//! `[server] admin_token_file`: the credential the admin listener's state-changing endpoints
//! (`POST /drain`, `POST /drain/cancel`) require, read from its file when the configuration is
//! built (so a reload picks up a rotated token), and the few keys `edgewarden drain` needs
//! without validating the rest of the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ring::hmac;

use super::ConfigError;
use super::reader::{Problems, Section};

/// Shortest accepted admin token: it is the only thing between a client on the admin port and
/// taking the replica out of service.
pub const MIN_ADMIN_TOKEN: usize = 32;

/// The admin token: what a client must present as `Authorization: Bearer <token>`.
///
/// Presented values are compared through HMAC-SHA256 tags under a key made when the token is
/// read, in constant time, so neither the token's content nor its length shows in the timing.
#[derive(Clone)]
pub struct AdminToken {
    /// The file it was read from.
    pub file: PathBuf,
    text: String,
    key: hmac::Key,
    tag: hmac::Tag,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Why an admin token file was not accepted.
#[derive(Debug)]
pub enum AdminTokenError {
    Unreadable(PathBuf, std::io::Error),
    /// Shorter than [`MIN_ADMIN_TOKEN`] or holding characters other than visible ASCII (after
    /// trimming surrounding whitespace).
    Weak(PathBuf),
    /// The system's random number generator failed.
    Random,
}

impl std::fmt::Display for AdminTokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminTokenError::Unreadable(path, e) => {
                write!(f, "{}: cannot read the admin token: {e}", path.display())
            }
            AdminTokenError::Weak(path) => write!(
                f,
                "{}: the admin token must be at least {MIN_ADMIN_TOKEN} visible ASCII characters \
                 (surrounding whitespace is ignored), e.g. the output of `openssl rand -hex 32`",
                path.display()
            ),
            AdminTokenError::Random => f.write_str("no random bytes for the admin token's key"),
        }
    }
}

impl std::error::Error for AdminTokenError {}

impl AdminToken {
    /// Read the token in `file` (one token; surrounding whitespace trimmed).
    pub fn read(file: &Path) -> Result<AdminToken, AdminTokenError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| AdminTokenError::Unreadable(file.to_path_buf(), e))?;
        let text = text.trim();
        if text.len() < MIN_ADMIN_TOKEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdminTokenError::Weak(file.to_path_buf()));
        }
        let rng = ring::rand::SystemRandom::new();
        let key =
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| AdminTokenError::Random)?;
        let tag = hmac::sign(&key, text.as_bytes());
        Ok(AdminToken {
            file: file.to_path_buf(),
            text: text.to_string(),
            key,
            tag,
        })
    }

    /// Whether `presented` is the token (constant time).
    pub fn matches(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }

    /// The token itself, for a client of the admin listener (`edgewarden drain`).
    pub fn expose(&self) -> &str {
        &self.text
    }
}

/// `[server] admin_token_file`, resolved against `base` and read.
pub(super) fn read_admin_token(
    s: &mut Section<'_>,
    base: &super::reader::Base,
    problems: &mut Problems,
) -> Option<AdminToken> {
    let file: String = s.optional(problems, "admin_token_file")?;
    match AdminToken::read(&base.join(file)) {
        Ok(token) => Some(token),
        Err(e) => {
            problems.push(&s.key_path("admin_token_file"), e);
            None
        }
    }
}

/// What a client of the admin listener needs from a configuration file: where the listener is
/// and the token. Only these keys are read, so a drain still works while some other part of the
/// file (an upstream name that no longer resolves, a policy) has a problem.
#[derive(Debug)]
pub struct AdminAccess {
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<AdminToken>,
}

impl AdminAccess {
    pub fn load(path: &Path) -> Result<AdminAccess, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(vec![format!("cannot read file: {e}")]))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let message = e.to_string().replace('\n', " ").trim().to_string();
            fail(vec![format!("not valid TOML: {message}")])
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut problems = Problems::default();
        let mut root = Section::new("", &table);
        let Some(mut server) = root.table(&mut problems, "server") else {
            problems.push("server", "missing (required)");
            return Err(fail(problems.into_vec()));
        };
        let admin_listen = read_admin_listen(&mut server, &mut problems);
        let base = super::reader::Base {
            dir: base,
            root: None,
            resolve_names: true,
        };
        let admin_token = read_admin_token(&mut server, &base, &mut problems);
        if problems.is_empty() {
            Ok(AdminAccess {
                admin_listen,
                admin_token,
            })
        } else {
            Err(fail(problems.into_vec()))
        }
    }
}

/// `[server] admin_listen`, an IP:port address.
pub(super) fn read_admin_listen(
    s: &mut Section<'_>,
    problems: &mut Problems,
) -> Option<SocketAddr> {
    let text = s.optional::<String>(problems, "admin_listen")?;
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(
                &s.key_path("admin_listen"),
                format!("{text:?} is not an IP:port address"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_itself_only_and_never_shows_in_debug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let secret = "0123456789abcdef0123456789abcdef";
        std::fs::write(&path, format!("  {secret}\n")).expect("write");
        let token = AdminToken::read(&path).expect("token");
        assert!(token.matches(secret.as_bytes()));
        assert!(!token.matches(&secret.as_bytes()[1..]));
        assert!(!token.matches(format!("{secret}x").as_bytes()));
        assert!(!token.matches(b""));
        assert_eq!(token.expose(), secret);
        assert!(!format!("{token:?}").contains(secret));
    }

    #[test]
    fn short_or_invisible_tokens_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        for weak in [
            "short",
            "0123456789abcdef 0123456789abcdef",
            "0123456789abcdef\u{e9}0123456789abcdef",
        ] {
            std::fs::write(&path, weak).expect("write");
            assert!(
                matches!(AdminToken::read(&path), Err(AdminTokenError::Weak(_))),
                "{weak:?}"
            );
        }
        assert!(matches!(
            AdminToken::read(&dir.path().join("missing")),
            Err(AdminTokenError::Unreadable(..))
        ));
    }
}
