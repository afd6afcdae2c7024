//! The Redis L2 tier (feature `redis`): [`RedisTier`], its [`RedisTierConfig`], URL handling,
//! the fleet-wide compute lock and [`RedisBackend`], the deployment the lock and the coherency
//! layer run on.
//!
//! Supported URLs: `redis://[user:password@]host:port[/db]` (AUTH from the URL), `unix://…`,
//! and `rediss://…` with the `redis-tls` feature (rustls with the `ring` provider, installed as
//! the process default unless the application installed one; no cmake or aws-lc build). A
//! server certificate is checked against the system's trust store, or against a private CA
//! ([`RedisTierConfig::tls_root_cert`]); servers that authenticate clients get the
//! certificate of [`RedisTierConfig::tls_client_cert`]. `rediss://host/#insecure` skips the
//! check (the `redis` crate's convention), for tests only.
//!
//! Redis Cluster URLs (`redis+cluster://[:password@]host:port,host:port`, and
//! `rediss+cluster://…` over TLS with the `redis-tls` feature and the same certificate
//! settings) are served by `RedisClusterTier` (feature `redis-cluster`): same key layout and
//! semantics, single-slot commands only, so keys spread over every shard; `clear` scans every
//! primary. [`RedisTier::new`] rejects them with a typed error. Every node's certificate is
//! checked: `#insecure` on a cluster URL is a configuration error.
//!
//! Both tiers are a [`RedisBackend`], so the fleet lock
//! ([`TieredCacheBuilder::fleet_lock`](crate::tiered::TieredCacheBuilder::fleet_lock), one key
//! and so one slot) and the coherency layer ([`Coherency::attach`](crate::coherency::Coherency::attach))
//! work on a cluster as on one server. On a cluster the coherency subscriber listens on one
//! node (the first seed that answers, the next one after a failure): classic `PUBLISH` reaches
//! every node of a cluster.
//!
//! After a server restart, the first call on the broken connection fails (it is counted, and
//! the tiered manager falls back) and triggers the reconnection; the backoff (50 → 200 ms)
//! bounds the time until calls succeed again.

mod backend;
#[cfg(feature = "redis-cluster")]
mod cluster;
mod config;
mod lock;
mod scripts;
mod tier;
#[cfg(feature = "redis-tls")]
mod tls;
mod url;

pub(crate) use backend::Connection;
pub use backend::RedisBackend;
#[cfg(feature = "redis-cluster")]
pub use cluster::RedisClusterTier;
pub use config::RedisTierConfig;
pub use lock::LockGuard;
pub(crate) use tier::open_client;
pub use tier::RedisTier;
pub use url::{cluster_seeds, redact_url, url_kind, UrlKind};
