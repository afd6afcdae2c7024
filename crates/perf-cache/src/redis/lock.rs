//! A fleet-wide compute lock on Redis: `SET key token NX PX ttl`, released by a Lua
//! compare-and-delete so a process never frees a lock that expired and was taken by another.
//! One key per lock, so it works on one server and on a cluster alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backend::{Connection, RedisBackend};
use super::scripts;
use super::tier::RedisTier;
use crate::error::Result;

/// A held lock. Release it with [`release`](Self::release); if dropped unreleased, a release
/// is attempted in the background and the lock expires after its TTL in any case.
///
/// ```no_run
/// # async fn demo(tier: &perf_cache::redis::RedisTier) -> perf_cache::Result<()> {
/// use std::time::Duration;
///
/// if let Some(guard) = tier.try_lock(b"report:42", Duration::from_secs(10)).await? {
///     // ... compute once for the whole fleet ...
///     guard.release().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LockGuard {
    conn: Option<Connection>,
    key: Vec<u8>,
    token: String,
    timeout: Duration,
}

impl LockGuard {
    /// Releases the lock if it is still ours; `true` when it was.
    pub async fn release(mut self) -> Result<bool> {
        let Some(conn) = self.conn.take() else {
            return Ok(false);
        };
        let released: i64 = conn
            .query(self.timeout, "unlock", &self.unlock_cmd())
            .await?;
        Ok(released == 1)
    }

    /// The random token that identifies this holder.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn unlock_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::UNLOCK)
            .arg(1)
            .arg(&self.key)
            .arg(&self.token);
        cmd
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cmd = self.unlock_cmd();
        let timeout = self.timeout;
        handle.spawn(async move {
            let _ = conn.query::<i64>(timeout, "unlock", &cmd).await;
        });
    }
}

fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    perf_core::keys::bytes_key(
        "lock",
        format!("{}:{nanos}:{n}", std::process::id()).as_bytes(),
    )
}

/// [`RedisBackend::try_lock`] on either deployment kind.
pub(crate) async fn try_lock<B: RedisBackend + ?Sized>(
    backend: &B,
    name: &[u8],
    ttl: Duration,
) -> Result<Option<LockGuard>> {
    let key = backend.lock_key(name);
    let token = new_token();
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let timeout = backend.config().timeout;
    let conn = backend.connection();
    let mut cmd = redis::cmd("SET");
    cmd.arg(&key).arg(&token).arg("NX").arg("PX").arg(ms);
    let reply: Option<String> = backend
        .tier_stats()
        .track(conn.query(timeout, "lock", &cmd))
        .await?;
    Ok(reply.map(|_| LockGuard {
        conn: Some(conn),
        key,
        token,
        timeout,
    }))
}

/// [`RedisBackend::is_locked`] on either deployment kind.
pub(crate) async fn is_locked<B: RedisBackend + ?Sized>(backend: &B, name: &[u8]) -> Result<bool> {
    let mut cmd = redis::cmd("EXISTS");
    cmd.arg(backend.lock_key(name));
    let n: u64 = backend
        .connection()
        .query(backend.config().timeout, "lock", &cmd)
        .await?;
    Ok(n > 0)
}

impl RedisTier {
    /// Tries once to take the fleet-wide lock `name` (stored at `{prefix}:lock:{name}`) for
    /// `ttl`; `None` when another holder has it. The same as [`RedisBackend::try_lock`].
    pub async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockGuard>> {
        try_lock(self, name, ttl).await
    }

    /// Whether the lock `name` is currently held by anyone.
    pub async fn is_locked(&self, name: &[u8]) -> Result<bool> {
        is_locked(self, name).await
    }
}

#[cfg(feature = "redis-cluster")]
impl super::RedisClusterTier {
    /// Tries once to take the fleet-wide lock `name` (stored at `{prefix}:lock:{name}`, one
    /// slot) for `ttl`; `None` when another holder has it. The same as
    /// [`RedisBackend::try_lock`].
    ///
    /// ```no_run
    /// # async fn demo(tier: &perf_cache::redis::RedisClusterTier) -> perf_cache::Result<()> {
    /// use std::time::Duration;
    ///
    /// if let Some(guard) = tier.try_lock(b"report:42", Duration::from_secs(10)).await? {
    ///     assert!(tier.is_locked(b"report:42").await?);
    ///     guard.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockGuard>> {
        try_lock(self, name, ttl).await
    }

    /// Whether the lock `name` is currently held by anyone.
    ///
    /// ```no_run
    /// # async fn demo(tier: &perf_cache::redis::RedisClusterTier) -> perf_cache::Result<()> {
    /// if tier.is_locked(b"report:42").await? {
    ///     // another process of the fleet computes the report; read it from L2 later
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn is_locked(&self, name: &[u8]) -> Result<bool> {
        is_locked(self, name).await
    }
}
