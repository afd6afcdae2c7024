//! The error type of perf-testkit: what went wrong while starting, stopping or probing a server.

use std::time::Duration;

/// What went wrong while starting, stopping or probing a throwaway server.
///
/// ```
/// let err = perf_testkit::TestkitError::BinaryNotFound {
///     name: "redis-server".into(),
///     hint: "install redis-server",
/// };
/// assert!(err.to_string().contains("redis-server"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// A server binary was found neither on `PATH` nor in the usual installation directories.
    #[error("`{name}` was not found on PATH ({hint})")]
    BinaryNotFound {
        /// The binary that was looked for, e.g. `redis-server`.
        name: String,
        /// What to install to get it.
        hint: &'static str,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path or command involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command line, for the reader.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its combined output or log.
        output: String,
    },
    /// A server was started but did not answer in time, or exited while starting.
    #[error("{what} on port {port} did not become ready within {waited:?}: {detail}")]
    NotReady {
        /// Which server, e.g. `redis-server`.
        what: &'static str,
        /// The port it was told to listen on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// Why we gave up, with the tail of the server log when there is one.
        detail: String,
    },
}

impl TestkitError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
