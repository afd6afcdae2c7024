//! Redis URL handling: which connection kind a URL asks for, and a redacted form for errors.

use crate::error::{Error, Result};

/// The kind of deployment a Redis URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlKind {
    /// `redis://`, `redis+unix://` or `unix://`: one server, plain TCP or a Unix socket.
    Standalone,
    /// `rediss://`: one server over TLS.
    Tls,
    /// `redis+cluster://` or `rediss+cluster://` (TLS): a Redis Cluster seed list.
    Cluster,
}

/// Classifies `url` by its scheme.
///
/// ```
/// use perf_cache::redis::{url_kind, UrlKind};
///
/// assert_eq!(url_kind("redis://:secret@10.0.0.1:6379/2").unwrap(), UrlKind::Standalone);
/// assert_eq!(url_kind("rediss://cache.example:6380").unwrap(), UrlKind::Tls);
/// assert_eq!(url_kind("redis+cluster://a:7000,b:7001").unwrap(), UrlKind::Cluster);
/// assert_eq!(url_kind("rediss+cluster://a:7000,b:7001").unwrap(), UrlKind::Cluster);
/// assert!(url_kind("http://nope").is_err());
/// ```
pub fn url_kind(url: &str) -> Result<UrlKind> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    match scheme.to_ascii_lowercase().as_str() {
        "redis" | "redis+unix" | "unix" => Ok(UrlKind::Standalone),
        "rediss" => Ok(UrlKind::Tls),
        "redis+cluster" | "rediss+cluster" => Ok(UrlKind::Cluster),
        _ => Err(Error::InvalidConfig {
            field: "l2_url",
            reason: format!(
                "{} must start with redis://, rediss://, redis+cluster://, rediss+cluster:// or unix://",
                redact_url(url)
            ),
        }),
    }
}

/// Whether `url` asks for TLS (`rediss://` or `rediss+cluster://`).
pub(crate) fn is_tls(url: &str) -> bool {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "rediss" | "rediss+cluster"
    )
}

/// Without the `redis-tls` feature, a TLS URL is a configuration error that names the feature.
#[cfg(not(feature = "redis-tls"))]
pub(crate) fn reject_tls_without_feature(url: &str) -> Result<()> {
    if !is_tls(url) {
        return Ok(());
    }
    Err(Error::InvalidConfig {
        field: "l2_url",
        reason: format!(
            "{}: TLS (rediss://, rediss+cluster://) needs perf-cache's `redis-tls` feature",
            redact_url(url)
        ),
    })
}

/// `url` with any password replaced by `***`, safe to log or put in an error.
///
/// ```
/// use perf_cache::redis::redact_url;
///
/// assert_eq!(redact_url("redis://user:hunter2@host:6379/0"), "redis://user:***@host:6379/0");
/// assert_eq!(redact_url("rediss://:hunter2@host"), "rediss://:***@host");
/// assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The userinfo ends at the last '@' before the path.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{}", &rest[at + 1..])
}

/// For a cluster URL, the seed node URLs it lists, each as a plain `redis://` or `rediss://` URL
/// carrying the same credentials.
///
/// ```
/// use perf_cache::redis::cluster_seeds;
///
/// let seeds = cluster_seeds("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001").unwrap();
/// assert_eq!(seeds, ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7001"]);
/// // TLS to every node.
/// let seeds = cluster_seeds("rediss+cluster://10.0.0.1:7000,10.0.0.2:7001").unwrap();
/// assert_eq!(seeds, ["rediss://10.0.0.1:7000", "rediss://10.0.0.2:7001"]);
/// // Certificates are always checked on a cluster: `#insecure` is refused.
/// assert!(cluster_seeds("rediss+cluster://10.0.0.1:7000,10.0.0.2:7001#insecure").is_err());
/// ```
pub fn cluster_seeds(url: &str) -> Result<Vec<String>> {
    let bad = |reason: &str| Error::InvalidConfig {
        field: "l2_url",
        reason: format!("{}: {reason}", redact_url(url)),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let node_scheme = match scheme.to_ascii_lowercase().as_str() {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return Err(bad("not a cluster URL")),
    };
    // A fragment would stick to the last seed only, and the cluster client verifies every
    // node's certificate anyway (`#insecure` is for one `rediss://` server in tests).
    if rest.contains('#') {
        return Err(bad(
            "a #fragment such as #insecure is not supported on cluster URLs (certificates are \
             always verified; use tls_root_cert for a private CA)",
        ));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let seeds: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|host| match userinfo {
            Some(u) => format!("{node_scheme}://{u}@{host}{tail}"),
            None => format!("{node_scheme}://{host}{tail}"),
        })
        .collect();
    if seeds.is_empty() {
        return Err(bad("no seed nodes"));
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_with_insecure_is_a_config_error() {
        for url in [
            "rediss+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001#insecure",
            "rediss+cluster://10.0.0.1:7000/#insecure",
            "redis+cluster://10.0.0.1:7000#insecure",
        ] {
            match cluster_seeds(url) {
                Err(Error::InvalidConfig { field, reason }) => {
                    assert_eq!(field, "l2_url");
                    assert!(reason.contains("#insecure"), "{reason}");
                    assert!(!reason.contains(":pw@"), "password leaked: {reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(
            cluster_seeds("rediss+cluster://a:7000,b:7001/").ok(),
            Some(vec![
                "rediss://a:7000/".to_owned(),
                "rediss://b:7001/".to_owned()
            ])
        );
    }
}
