//! A fleet-wide compute lock on Redis: `SET key token NX PX ttl`, released by a Lua
//! compare-and-delete so a process never frees a lock that expired and was taken by another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

use super::scripts;
use super::tier::{bounded, RedisTier};
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
    conn: Option<ConnectionManager>,
    key: Vec<u8>,
    token: String,
    timeout: Duration,
}

impl LockGuard {
    /// Releases the lock if it is still ours; `true` when it was.
    pub async fn release(mut self) -> Result<bool> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(false);
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::UNLOCK)
            .arg(1)
            .arg(&self.key)
            .arg(&self.token);
        let released: i64 = bounded(self.timeout, "unlock", cmd.query_async(&mut conn)).await?;
        Ok(released == 1)
    }

    /// The random token that identifies this holder.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::UNLOCK)
            .arg(1)
            .arg(&self.key)
            .arg(&self.token);
        let timeout = self.timeout;
        handle.spawn(async move {
            let _ = bounded(timeout, "unlock", cmd.query_async::<i64>(&mut conn)).await;
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

impl RedisTier {
    /// Tries once to take the fleet-wide lock `name` (stored at `{prefix}:lock:{name}`) for
    /// `ttl`; `None` when another holder has it.
    pub async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockGuard>> {
        let key = self.lock_key(name);
        let token = new_token();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.connection();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(&token).arg("NX").arg("PX").arg(ms);
        let reply: Option<String> = self
            .stats_track(bounded(
                self.config().timeout,
                "lock",
                cmd.query_async(&mut conn),
            ))
            .await?;
        Ok(reply.map(|_| LockGuard {
            conn: Some(conn),
            key,
            token,
            timeout: self.config().timeout,
        }))
    }

    /// Whether the lock `name` is currently held by anyone.
    pub async fn is_locked(&self, name: &[u8]) -> Result<bool> {
        let mut conn = self.connection();
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.lock_key(name));
        let n: u64 = bounded(self.config().timeout, "lock", cmd.query_async(&mut conn)).await?;
        Ok(n > 0)
    }
}
