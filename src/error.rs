//! Errors of building and starting the gateway (a generation, its keys, plugins, geo database and
//! TLS certificates, the listeners), in the manner of `pingora-error`: each [`Error`] has a
//! [`ErrorKind`] (the part that failed), a context (what was being built, or what is wrong:
//! `issuers[0] (corp)`, `policy geo`, a file path) and an optional source (the error that caused
//! it, often another `Error`). It reads as `context: source`, down the chain:
//!
//! ```text
//! issuers[0] (corp): /etc/edgewarden/keys.json: not JSON: expected value at line 1 column 1
//! ```
//!
//! [`Errors`] is every problem found at once (a build reports them all, not only the first), one
//! per line. This module imports nothing of the crate, so every layer may use it.

use std::fmt;
use std::process::ExitCode;

/// A command's outcome as the process's exit status; an error is printed to stderr first, ending
/// with a newline (an [`Errors`] report already has one per problem).
pub fn exit_code<E: fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.to_string();
            if text.ends_with('\n') {
                eprint!("{text}");
            } else {
                eprintln!("{text}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The error that caused another one.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// The part of the gateway that could not be built or started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The configuration: a reference between its parts (a route's origin, issuer or policy), a
    /// setting only a restart can change, or the file itself on reload.
    Config,
    /// An origin's pool of upstreams.
    Origins,
    /// An issuer's keys: a JWKS document or file, a PEM key, the refused demo key.
    Keys,
    /// Fetching an issuer's JWKS URL.
    Jwks,
    /// Building a plugin: componentize-py, its cache, compiling it for the engine.
    PluginBuild,
    /// Running a plugin: the engine, its instances and their memories.
    Plugin,
    /// The `[geo]` settings: header names, the country database.
    Geo,
    /// TLS certificates and keys, of listeners or of an origin's CA.
    Tls,
    /// A listening address.
    Listen,
    /// Trace export: the OTLP exporter, its HTTP client and thread.
    Tracing,
    /// The process itself: a thread, an async runtime, a task.
    Runtime,
}

/// One problem: its kind, what was being built or what is wrong, and what caused it.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: Option<Source>,
}

impl Error {
    /// A problem with no underlying error: `context` says what is wrong.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// A problem with `context` caused by `source` (shown as `context: source`).
    pub fn because(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl Into<Source>,
    ) -> Error {
        Error {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// This error seen from where it happened: `context: self`, of the same kind.
    pub fn within(self, context: impl Into<String>) -> Error {
        Error::because(self.kind, context, self)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) if self.context.is_empty() => write!(f, "{source}"),
            Some(source) => write!(f, "{}: {source}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Turning another error into an [`Error`] that names what was being done.
pub trait OrErr<T> {
    /// On error, a `kind` error about `context` caused by it.
    fn or_err(self, kind: ErrorKind, context: impl Into<String>) -> Result<T, Error>;

    /// As [`OrErr::or_err`], the context made only on error.
    fn or_err_with<C: Into<String>>(
        self,
        kind: ErrorKind,
        context: impl FnOnce() -> C,
    ) -> Result<T, Error>;
}

impl<T, E: Into<Source>> OrErr<T> for Result<T, E> {
    fn or_err(self, kind: ErrorKind, context: impl Into<String>) -> Result<T, Error> {
        self.map_err(|e| Error::because(kind, context, e))
    }

    fn or_err_with<C: Into<String>>(
        self,
        kind: ErrorKind,
        context: impl FnOnce() -> C,
    ) -> Result<T, Error> {
        self.map_err(|e| Error::because(kind, context(), e))
    }
}

/// Every problem found at once, in the order found; shown one per line.
#[derive(Debug, Default)]
pub struct Errors(Vec<Error>);

impl Errors {
    pub fn new() -> Errors {
        Errors::default()
    }

    pub fn push(&mut self, error: Error) {
        self.0.push(error);
    }

    /// The value of `result`, or `None` with its problems added to these.
    pub fn ok<T>(&mut self, result: Result<T, impl Into<Errors>>) -> Option<T> {
        result.map_err(|e| self.extend(e.into())).ok()
    }

    /// `Ok(value)` when no problem was found, else the problems.
    pub fn or_ok<T>(self, value: T) -> Result<T, Errors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Error> {
        self.0.iter()
    }
}

impl From<Error> for Errors {
    fn from(error: Error) -> Errors {
        Errors(vec![error])
    }
}

impl FromIterator<Error> for Errors {
    fn from_iter<I: IntoIterator<Item = Error>>(iter: I) -> Errors {
        Errors(iter.into_iter().collect())
    }
}

impl Extend<Error> for Errors {
    fn extend<I: IntoIterator<Item = Error>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for Errors {
    type Item = Error;
    type IntoIter = std::vec::IntoIter<Error>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Errors {
    type Item = &'a Error;
    type IntoIter = std::slice::Iter<'a, Error>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_as_its_contexts_down_to_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = Err::<(), _>(io)
            .or_err(ErrorKind::Keys, "/etc/keys.json")
            .map_err(|e| e.within("issuers[0] (corp)"))
            .expect_err("an error");
        assert_eq!(
            e.to_string(),
            "issuers[0] (corp): /etc/keys.json: No such file"
        );
        assert_eq!(e.kind(), ErrorKind::Keys, "the kind is kept");
        assert_eq!(e.context(), "issuers[0] (corp)");
        let chain: Vec<String> =
            std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect();
        assert_eq!(chain.len(), 3, "{chain:?}");
        assert_eq!(chain[2], "No such file");
        assert_eq!(
            Error::new(ErrorKind::Config, "routes.r: unknown origin \"o\"").to_string(),
            "routes.r: unknown origin \"o\""
        );
    }

    #[test]
    fn problems_are_listed_one_per_line_in_the_order_found() {
        let mut errors = Errors::new();
        assert_eq!(errors.ok(Ok::<_, Error>(1)), Some(1));
        assert!(errors.is_empty());
        assert_eq!(
            errors.ok(Err::<(), _>(Error::new(ErrorKind::Origins, "a"))),
            None
        );
        let two: Errors = [ErrorKind::Geo, ErrorKind::Tls]
            .into_iter()
            .zip(["b", "c"])
            .map(|(kind, what)| Error::new(kind, what))
            .collect();
        assert_eq!(errors.ok(Err::<(), _>(two)), None);
        assert_eq!(errors.len(), 3);
        assert_eq!(errors.to_string(), "a\nb\nc");
        let kinds: Vec<ErrorKind> = errors.iter().map(Error::kind).collect();
        assert_eq!(kinds, [ErrorKind::Origins, ErrorKind::Geo, ErrorKind::Tls]);
        assert!(errors.or_ok(()).is_err());
        assert!(Errors::new().or_ok(()).is_ok());
    }
}
