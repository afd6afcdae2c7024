//! The one error type of perf-core.

use std::path::PathBuf;

/// Everything that can go wrong in perf-core.
///
/// Each variant says what failed and with what input, so a caller can log it or show it to a
/// user without extra context. The enum is `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes handed to [`codec::decode`](crate::codec::decode) were empty or shorter than the
    /// codec header and checksum.
    #[error("encoded value is truncated: {len} bytes, at least {min} needed")]
    CodecTruncated {
        /// Length of the input.
        len: usize,
        /// The smallest length a valid encoding can have.
        min: usize,
    },
    /// The first byte is not perfkit's codec marker: the bytes were written by something else.
    #[error("bytes are not a perfkit encoding (first byte {first_byte:#04x})")]
    CodecForeign {
        /// The first byte found.
        first_byte: u8,
    },
    /// The bytes were written by a codec version this build cannot read.
    #[error("unsupported codec format version {found} (this build reads version {supported})")]
    CodecUnsupportedVersion {
        /// The version byte found.
        found: u8,
        /// The version this build writes and reads.
        supported: u8,
    },
    /// The checksum does not match the payload: the bytes were corrupted in storage or transit.
    #[error("encoded value is corrupted: checksum mismatch")]
    CodecChecksum,
    /// The payload passed its checksum but does not decode as the requested type (a type changed
    /// between writer and reader, or the caller asked for the wrong type).
    #[error("encoded value does not decode as the requested type: {reason}")]
    CodecDecode {
        /// What postcard reported.
        reason: String,
    },
    /// The value could not be serialized (for example a map with non-serializable keys).
    #[error("value cannot be encoded: {reason}")]
    CodecEncode {
        /// What postcard reported.
        reason: String,
    },
    /// Key arguments could not be serialized into a stable key.
    #[error("arguments for key namespace {namespace:?} cannot be serialized: {reason}")]
    KeyArguments {
        /// The key namespace.
        namespace: String,
        /// What the serializer reported.
        reason: String,
    },
    /// A config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file is not valid TOML or has a field of the wrong type or an unknown field.
    #[error("invalid config in {origin}: {message}")]
    ConfigParse {
        /// Where the config came from (a path, or `<string>`).
        origin: String,
        /// The parser's message; it names the field and position.
        message: String,
    },
    /// A config value is of the right type but not allowed.
    #[error("invalid config value {field} = {value}: {reason}")]
    ConfigInvalid {
        /// The dotted field name, such as `cache.l1_max_bytes`.
        field: String,
        /// The offending value as written.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An environment override names no known field or carries a value that does not parse.
    #[error("invalid environment override {var}={value}: {reason}")]
    ConfigEnv {
        /// The environment variable.
        var: String,
        /// Its value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The operating system did not give a resource reading.
    #[error("resource monitor unavailable: {reason}")]
    Resource {
        /// What failed.
        reason: String,
    },
}

/// `Result` with perf-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
