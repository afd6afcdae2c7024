//! [`Coherency`]: the publisher hooked into a `TieredCache`'s writes and the subscriber task that
//! applies other processes' invalidations to the local L1, reconnecting with backoff.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use perf_core::clock::SharedClock;
use perf_core::metrics::{Counter, HistogramSnapshot, LatencyHistogram};
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use super::message::{Change, Message};
use crate::error::Result;
use crate::redis::{Connection, RedisBackend};
use crate::tiered::{futures_lite::BoxFuture, CacheValue, InvalidationSink, L1Handle, TieredCache};

/// What L1 does while the invalidation subscription is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectPolicy {
    /// Keep serving L1 (availability first); it is cleared when the subscription is back.
    #[default]
    KeepServing,
    /// Stop reading and writing L1 until the subscription is back (freshness first).
    BypassL1,
}

/// Settings of the coherency layer.
///
/// ```
/// use perf_cache::coherency::{CoherencyConfig, DisconnectPolicy};
///
/// let cfg = CoherencyConfig::default().on_disconnect(DisconnectPolicy::BypassL1);
/// assert_eq!(cfg.reconnect_max_delay.as_millis(), 500);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CoherencyConfig {
    /// What L1 does while disconnected.
    pub disconnect_policy: DisconnectPolicy,
    /// First delay between subscription attempts.
    pub reconnect_min_delay: Duration,
    /// Longest delay between subscription attempts.
    pub reconnect_max_delay: Duration,
}

impl Default for CoherencyConfig {
    fn default() -> Self {
        Self {
            disconnect_policy: DisconnectPolicy::KeepServing,
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_millis(500),
        }
    }
}

impl CoherencyConfig {
    /// Sets [`disconnect_policy`](Self::disconnect_policy).
    pub fn on_disconnect(mut self, policy: DisconnectPolicy) -> Self {
        self.disconnect_policy = policy;
        self
    }
}

#[derive(Debug, Default)]
struct Counters {
    published: Counter,
    publish_errors: Counter,
    received: Counter,
    applied: Counter,
    own_ignored: Counter,
    undecodable: Counter,
    subscriptions: Counter,
    l1_clears: Counter,
    staleness: LatencyHistogram,
}

/// Figures of the coherency layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CoherencyStats {
    /// Invalidations this process published.
    pub published: u64,
    /// Publishes that failed (other processes may then serve stale L1 entries until their TTL
    /// or their next reconnection).
    pub publish_errors: u64,
    /// Messages received, own included.
    pub received: u64,
    /// Messages from other processes applied to the local L1.
    pub applied: u64,
    /// Own messages ignored.
    pub own_ignored: u64,
    /// Messages that did not decode (foreign publishers on the channel).
    pub undecodable: u64,
    /// Successful subscriptions (1 + reconnections).
    pub subscriptions: u64,
    /// Times the local L1 was cleared because invalidations may have been missed.
    pub l1_clears: u64,
    /// Send-to-apply delay of applied messages, in nanoseconds of wall-clock time (meaningful
    /// when the processes' clocks agree, e.g. on one host).
    pub staleness: HistogramSnapshot,
}

struct Shared {
    origin: u64,
    channel: Vec<u8>,
    counters: Counters,
    clock: SharedClock,
    timeout: Duration,
    conn: Connection,
    subscribed: AtomicBool,
    subscribed_notify: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coherency")
            .field("origin", &self.origin)
            .field("channel", &String::from_utf8_lossy(&self.channel))
            .field("subscribed", &self.subscribed.load(Ordering::Relaxed))
            .finish()
    }
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Shared {
    async fn publish(&self, change: Change) {
        let message = Message {
            origin: self.origin,
            sent_at_us: micros_since_epoch(self.clock.system_now()),
            change,
        };
        let bytes = match perf_core::codec::encode(&message) {
            Ok(b) => b,
            Err(_) => {
                self.counters.publish_errors.inc();
                return;
            }
        };
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(bytes);
        // On a cluster, PUBLISH goes to any node and the cluster bus carries it to every other.
        let sent = self.conn.query::<i64>(self.timeout, "publish", &cmd).await;
        match sent {
            Ok(_) => self.counters.published.inc(),
            _ => {
                self.counters.publish_errors.inc();
                tracing::debug!(
                    "coherency publish failed; other L1s may stay stale until reconnect or TTL"
                );
            }
        }
    }

    fn apply(&self, payload: &[u8], l1: &dyn L1Handle) {
        self.counters.received.inc();
        let Ok(message) = perf_core::codec::decode::<Message>(payload) else {
            self.counters.undecodable.inc();
            return;
        };
        if message.origin == self.origin {
            self.counters.own_ignored.inc();
            return;
        }
        match &message.change {
            Change::Keys(keys) => keys.iter().for_each(|k| l1.remove(k)),
            Change::Tags(tags) => tags.iter().for_each(|t| l1.invalidate_tag(t)),
            Change::Clear => l1.clear(),
        }
        self.counters.applied.inc();
        let now = micros_since_epoch(self.clock.system_now());
        let delay_us = now.saturating_sub(message.sent_at_us);
        self.counters
            .staleness
            .record(Duration::from_micros(delay_us));
    }
}

impl InvalidationSink for Shared {
    fn keys<'a>(&'a self, keys: &'a [&'a [u8]]) -> BoxFuture<'a> {
        Box::pin(self.publish(Change::Keys(keys.iter().map(|k| k.to_vec()).collect())))
    }

    fn tags<'a>(&'a self, tags: &'a [&'a str]) -> BoxFuture<'a> {
        Box::pin(self.publish(Change::Tags(tags.iter().map(|t| (*t).to_owned()).collect())))
    }

    fn clear(&self) -> BoxFuture<'_> {
        Box::pin(self.publish(Change::Clear))
    }
}

/// Cross-process L1 coherency for one [`TieredCache`]; see the [module docs](super).
///
/// Dropping it stops the subscriber (the cache keeps publishing through its hook until it is
/// dropped too, which is harmless).
///
/// ```no_run
/// # async fn demo(cache: perf_cache::tiered::TieredCache<String>, l2: &perf_cache::redis::RedisTier) -> perf_cache::Result<()> {
/// // `l2`: the cache's `RedisTier`, or a `RedisClusterTier` (feature `redis-cluster`).
/// use perf_cache::coherency::{Coherency, CoherencyConfig};
///
/// let coherency = Coherency::attach(&cache, l2, CoherencyConfig::default())?;
/// coherency.wait_subscribed(std::time::Duration::from_secs(2)).await;
/// // Writes through `cache` now invalidate other processes' L1 entries.
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Coherency {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Coherency {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Coherency {
    /// Publishes `cache`'s writes on `{prefix}:invalidate` of `redis` (the L2 tier's server or
    /// cluster, and prefix) and subscribes to it, applying other processes' invalidations to
    /// `cache`'s L1. Must be called inside a tokio runtime.
    ///
    /// On a cluster, the subscriber connects to one node, the first of the URL's seeds that
    /// answers, since a classic `PUBLISH` reaches every node of a cluster. A failed connection
    /// or subscription moves on to the next seed after a backoff delay (doubling from
    /// `reconnect_min_delay` to `reconnect_max_delay`, slept on the cache's clock); a lost
    /// subscription moves on to the next seed at once, and the delay restarts from the minimum
    /// after each successful subscription.
    pub fn attach<V: CacheValue, B: RedisBackend + ?Sized>(
        cache: &TieredCache<V>,
        redis: &B,
        config: CoherencyConfig,
    ) -> Result<Self> {
        let origin = RandomState::new().hash_one(std::process::id());
        let channel = format!("{}:invalidate", redis.config().prefix).into_bytes();
        let shared = Arc::new(Shared {
            origin,
            channel,
            counters: Counters::default(),
            clock: cache.inner.clock.clone(),
            timeout: redis.config().timeout,
            conn: redis.connection(),
            subscribed: AtomicBool::new(false),
            subscribed_notify: Notify::new(),
        });
        let clients = redis
            .node_urls()?
            .iter()
            .map(|url| {
                crate::redis::open_client(redis.config(), url, |info: redis::ConnectionInfo| {
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_protocol(ProtocolVersion::RESP3);
                    info.set_redis_settings(settings)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        cache.set_sink(shared.clone());
        let l1 = cache.l1_handle();
        let bypass = {
            let cache = cache.clone();
            move |on: bool| cache.set_l1_bypass(on)
        };
        let task = tokio::spawn(subscribe_loop(
            shared.clone(),
            clients,
            config,
            l1,
            Box::new(bypass),
        ));
        Ok(Self { shared, task })
    }

    /// This process's origin id.
    pub fn origin(&self) -> u64 {
        self.shared.origin
    }

    /// Whether the subscription is live now.
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::Acquire)
    }

    /// Waits until the subscription is live, at most `timeout`; returns whether it is.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.shared.subscribed_notify.notified();
                if self.is_subscribed() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Current figures.
    pub fn stats(&self) -> CoherencyStats {
        let c = &self.shared.counters;
        CoherencyStats {
            published: c.published.get(),
            publish_errors: c.publish_errors.get(),
            received: c.received.get(),
            applied: c.applied.get(),
            own_ignored: c.own_ignored.get(),
            undecodable: c.undecodable.get(),
            subscriptions: c.subscriptions.get(),
            l1_clears: c.l1_clears.get(),
            staleness: c.staleness.snapshot(),
        }
    }
}

/// Subscribes, applies messages until the connection drops, and starts over with backoff, on
/// the next of `clients` (the nodes of a cluster; one server's client otherwise).
async fn subscribe_loop(
    shared: Arc<Shared>,
    clients: Vec<redis::Client>,
    config: CoherencyConfig,
    l1: Option<Arc<dyn L1Handle>>,
    bypass: Box<dyn Fn(bool) + Send + Sync>,
) {
    let mut delay = config.reconnect_min_delay;
    for client in clients.iter().cycle() {
        let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
        let conn_config = AsyncConnectionConfig::new()
            .set_push_sender(tx)
            .set_connection_timeout(Some(shared.timeout))
            .set_response_timeout(Some(shared.timeout));
        let connected = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&conn_config)
                .await?;
            conn.subscribe(shared.channel.as_slice()).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let conn = match tokio::time::timeout(shared.timeout * 2, connected).await {
            Ok(Ok(conn)) => conn,
            _ => {
                shared.clock.sleep(delay).await;
                delay = (delay * 2).min(config.reconnect_max_delay);
                continue;
            }
        };
        delay = config.reconnect_min_delay;
        // Invalidations may have been missed before this subscription existed.
        if let Some(l1) = &l1 {
            l1.clear();
            shared.counters.l1_clears.inc();
        }
        bypass(false);
        shared.counters.subscriptions.inc();
        shared.subscribed.store(true, Ordering::Release);
        shared.subscribed_notify.notify_waiters();

        while let Some(push) = rx.recv().await {
            match push.kind {
                PushKind::Message => {
                    if let (Some(l1), Some(Value::BulkString(payload))) = (&l1, push.data.last()) {
                        shared.apply(payload, l1.as_ref());
                    }
                }
                PushKind::Disconnection => break,
                _ => {}
            }
        }
        shared.subscribed.store(false, Ordering::Release);
        if config.disconnect_policy == DisconnectPolicy::BypassL1 {
            bypass(true);
        }
        drop(conn);
        tracing::debug!("coherency subscription lost; reconnecting");
    }
}
