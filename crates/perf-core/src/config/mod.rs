//! Configuration: one `perf.toml` with `[cache]`, `[batch]`, `[cost]` and `[query]` sections,
//! environment overrides, a rollback switch per component, and validation errors that name the
//! bad field and value.
//!
//! Precedence, lowest first: built-in defaults, the file, environment variables. An environment
//! variable `PERFKIT_<SECTION>_<FIELD>` overrides one field, for example
//! `PERFKIT_CACHE_L1_MAX_BYTES=1048576`, `PERFKIT_CACHE_ENABLED=false` or
//! `PERFKIT_COST_ALERT_THRESHOLDS_PERCENT=[50,100]`. The value is read as a TOML value, and as a
//! string when it is not one; an empty value resets the field to its default. Variables whose
//! section is not one of the four are ignored (so `PERFKIT_CONFIG`, the config path, and other
//! tools' variables do not clash); a known section with an unknown field is an error, so a typo
//! does not silently do nothing.
//!
//! ```
//! use perf_core::config::PerfConfig;
//!
//! let config = PerfConfig::from_toml_str(r#"
//!     [cache]
//!     l1_max_bytes = 67108864
//!     l1_policy = "lru"
//!
//!     [cost]
//!     daily_budget_usd = 100.0
//! "#).unwrap()
//! .with_env([("PERFKIT_CACHE_ENABLED", "false")])
//! .unwrap();
//! assert_eq!(config.cache.l1_max_bytes, 64 << 20);
//! assert!(!config.cache.enabled);
//! assert_eq!(config.cost.daily_budget_usd, Some(100.0));
//! assert_eq!(config.batch.chunk_size, 100); // default
//!
//! let err = PerfConfig::from_toml_str("[batch]\nchunk_size = 0").unwrap_err();
//! assert_eq!(err.to_string(), "invalid config value batch.chunk_size = 0: must be greater than 0");
//! ```

mod sections;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use sections::{BatchConfig, CacheConfig, CachePolicy, ChunkStrategy, CostConfig, QueryConfig};

use crate::error::{Error, Result};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "PERFKIT_";
/// Environment variable naming the config file.
pub const ENV_CONFIG_PATH: &str = "PERFKIT_CONFIG";
/// The file looked for in the working directory when no path is given.
pub const DEFAULT_FILE: &str = "perf.toml";

const SECTIONS: [&str; 4] = ["cache", "batch", "cost", "query"];

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PerfConfig {
    /// `[cache]`
    pub cache: CacheConfig,
    /// `[batch]`
    pub batch: BatchConfig,
    /// `[cost]`
    pub cost: CostConfig,
    /// `[query]`
    pub query: QueryConfig,
}

impl PerfConfig {
    /// Parses and validates TOML text. Environment variables are not applied.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse(text, "<string>")
    }

    /// Reads, parses and validates a file. Environment variables are not applied.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The configuration a service starts with: the file at `path`, or else the one named by
    /// `PERFKIT_CONFIG`, or else `./perf.toml` when it exists, or else the defaults; then the
    /// process's `PERFKIT_*` environment overrides; then validation.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let path: Option<PathBuf> = match path {
            Some(p) => Some(p.to_owned()),
            None => match std::env::var_os(ENV_CONFIG_PATH) {
                Some(p) => Some(PathBuf::from(p)),
                None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
            },
        };
        let base = match path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        base.with_env(std::env::vars())
    }

    /// Applies `PERFKIT_<SECTION>_<FIELD>` overrides from `vars` and validates the result.
    /// Takes the variables as pairs so that tests need not change the process environment.
    pub fn with_env<I, K, V>(self, vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = self;
        for (var, value) in vars {
            let (var, value) = (var.as_ref(), value.as_ref());
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some((section, field)) = rest.split_once('_') else {
                continue;
            };
            if !SECTIONS.contains(&section) {
                continue;
            }
            config = config.override_field(var, section, field, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every section; the error names the first bad field.
    pub fn validate(&self) -> Result<()> {
        self.cache.validate()?;
        self.batch.validate()?;
        self.cost.validate()?;
        self.query.validate()
    }

    /// The configuration as TOML text (for printing the effective configuration).
    pub fn to_toml_string(&self) -> String {
        // Serializing plain structs of numbers, strings and options cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    fn parse(text: &str, origin: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::ConfigParse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn override_field(self, var: &str, section: &str, field: &str, raw: &str) -> Result<Self> {
        let env_error = |reason: String| Error::ConfigEnv {
            var: var.to_owned(),
            value: raw.to_owned(),
            reason,
        };
        let whole = toml::Value::try_from(&self).map_err(|e| env_error(e.to_string()))?;
        let candidates: Vec<Option<toml::Value>> = if raw.is_empty() {
            vec![None]
        } else {
            let parsed = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"));
            let as_string = Some(toml::Value::String(raw.to_owned()));
            match parsed {
                Some(v) if !v.is_str() => vec![Some(v), as_string],
                _ => vec![as_string],
            }
        };
        let mut first_error = None;
        for candidate in candidates {
            let mut table = whole.clone();
            let Some(section_table) = table.get_mut(section).and_then(|s| s.as_table_mut()) else {
                return Err(env_error(format!("no section [{section}]")));
            };
            match candidate {
                Some(v) => section_table.insert(field.to_owned(), v),
                None => section_table.remove(field),
            };
            match table.try_into::<PerfConfig>() {
                Ok(config) => return Ok(config),
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("field {section}.{field}: {e}"));
                }
            }
        }
        Err(env_error(first_error.unwrap_or_default()))
    }
}
