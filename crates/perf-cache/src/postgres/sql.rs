//! The SQL of the PostgreSQL tier, built once per table from validated identifiers.

/// Whether `name` is a safe unquoted identifier: `[a-z_][a-z0-9_]*`, at most 63 bytes.
pub(crate) fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// Every statement the tier runs, for one `schema.table`.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) create: String,
    pub(crate) get: String,
    pub(crate) mget: String,
    pub(crate) set: String,
    pub(crate) mset: String,
    pub(crate) delete: String,
    pub(crate) delete_by_tags: String,
    pub(crate) clear: String,
    pub(crate) purge: String,
}

/// Separator of tags inside one `mset` array element (tags may not contain it).
pub(crate) const TAG_SEPARATOR: char = '\u{1f}';

impl Sql {
    /// Statements for `schema.table`; both were checked by [`valid_identifier`].
    pub(crate) fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        let live = "(expires_at IS NULL OR expires_at > now())";
        let expires = "now() + $3::int8 * interval '1 millisecond'";
        Self {
            // One simple-query message runs as one transaction, so the advisory lock serialises
            // concurrent first uses (CREATE … IF NOT EXISTS alone can race on the catalog).
            create: format!(
                "SELECT pg_advisory_xact_lock(hashtext('perfkit:{schema}.{table}'));\
                 CREATE SCHEMA IF NOT EXISTS \"{schema}\";\
                 CREATE UNLOGGED TABLE IF NOT EXISTS {t} (\
                   key bytea PRIMARY KEY,\
                   value bytea NOT NULL,\
                   expires_at timestamptz,\
                   tags text[] NOT NULL DEFAULT '{{}}');\
                 CREATE INDEX IF NOT EXISTS \"{table}_tags\" ON {t} USING GIN (tags);\
                 CREATE INDEX IF NOT EXISTS \"{table}_expires\" ON {t} (expires_at) \
                   WHERE expires_at IS NOT NULL;"
            ),
            get: format!("SELECT value FROM {t} WHERE key = $1 AND {live}"),
            mget: format!("SELECT key, value FROM {t} WHERE key = ANY($1) AND {live}"),
            set: format!(
                "INSERT INTO {t} (key, value, expires_at, tags) VALUES ($1, $2, {expires}, $4) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at, tags = excluded.tags"
            ),
            mset: format!(
                "INSERT INTO {t} (key, value, expires_at, tags) \
                 SELECT k, v, now() + ms * interval '1 millisecond', \
                   CASE WHEN tg = '' THEN '{{}}'::text[] ELSE string_to_array(tg, E'\\x1f') END \
                 FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::text[]) AS r(k, v, ms, tg) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at, tags = excluded.tags"
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_by_tags: format!("DELETE FROM {t} WHERE tags && $1::text[]"),
            clear: format!("DELETE FROM {t}"),
            purge: format!(
                "DELETE FROM {t} WHERE ctid IN (SELECT ctid FROM {t} \
                 WHERE expires_at <= now() LIMIT $1::int8)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(valid_identifier("t_cache_1"));
        assert!(valid_identifier("_x"));
        assert!(!valid_identifier(""));
        assert!(!valid_identifier("1x"));
        assert!(!valid_identifier("Upper"));
        assert!(!valid_identifier("a\"; DROP TABLE x; --"));
        assert!(!valid_identifier(&"a".repeat(64)));
    }
}
