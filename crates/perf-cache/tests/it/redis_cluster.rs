//! The Redis Cluster tier against a private three-primary cluster started for the test: the
//! tier's semantics, the fleet lock and L1 coherency on a cluster, and a TLS-only cluster.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coherency::{in_l1, until_gone, write_then_read_elsewhere, Process};
use crate::tiered::{
    fleet_cache, fleet_refresh_cache, one_loader_run_for_the_fleet, refresh_loader, until,
    WAIT_BOUND,
};
use perf_cache::coherency::{Coherency, CoherencyConfig};
use perf_cache::l1::Cache;
use perf_cache::redis::{RedisBackend, RedisClusterTier, RedisTier, RedisTierConfig};
use perf_cache::tier::{RemoteTier, SharedTier, TierEntry};
use perf_cache::tiered::{TieredCache, WriteOptions};
use perf_core::clock::ManualClock;
use perf_testkit::support::{find_binary, free_port, scratch_dir};
use perf_testkit::TestCertificates;
#[cfg(feature = "redis-tls")]
use perf_testkit::TestkitError;

/// One test cluster at a time: three redis-servers each, created with `redis-cli --cluster
/// create`, are too much to run side by side on a small machine (and their ports are picked
/// by `free_port`, which only avoids collisions among servers already listening).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three `redis-server --cluster-enabled yes` primaries on free ports, joined into a cluster;
/// with [`start_tls`](Self::start_tls), TLS only (clients, cluster bus), with certificates of a
/// private CA.
struct TempCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Child>,
    tls: Option<TestCertificates>,
    /// Released after `drop` stopped the servers (fields drop after `Drop::drop`).
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TempCluster {
    fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// TLS on every port (`--port 0`), the cluster bus over TLS too; `require_client_cert`:
    /// the nodes refuse clients without a certificate of the private CA.
    #[cfg(feature = "redis-tls")]
    fn start_tls(require_client_cert: bool) -> Option<Self> {
        let certs = match TestCertificates::make() {
            Ok(certs) => certs,
            Err(e @ TestkitError::BinaryNotFound { .. }) if !perf_testkit::require_services() => {
                eprintln!("skipped: needs openssl ({e})");
                return None;
            }
            Err(e) => panic!("could not make test certificates: {e}"),
        };
        Self::start_with(Some((certs, require_client_cert)))
    }

    fn start_with(tls: Option<(TestCertificates, bool)>) -> Option<Self> {
        let (Some(server), Some(_)) = (find_binary("redis-server"), find_binary("redis-cli"))
        else {
            assert!(
                !perf_testkit::require_services(),
                "redis-server and redis-cli are required"
            );
            eprintln!("skipped: needs redis-server and redis-cli");
            return None;
        };
        // Blocking: this runs on a `spawn_blocking` thread.
        let one_at_a_time = ONE_CLUSTER_AT_A_TIME.blocking_lock();
        let dir = scratch_dir("cluster").unwrap();
        let require_client_cert = tls.as_ref().is_some_and(|(_, required)| *required);
        let mut cluster = TempCluster {
            dir,
            ports: Vec::new(),
            children: Vec::new(),
            tls: tls.map(|(certs, _)| certs),
            _one_at_a_time: one_at_a_time,
        };
        // Six distinct ports: `free_port` may hand out a port twice once it was released.
        let mut taken = HashSet::new();
        let mut distinct_port = || loop {
            let port = free_port().unwrap();
            if taken.insert(port) {
                return port;
            }
        };
        for _ in 0..3 {
            let port = distinct_port();
            let bus = distinct_port();
            let mut cmd = Command::new(&server);
            match &cluster.tls {
                None => cmd.args(["--port", &port.to_string()]),
                Some(certs) => cmd
                    .args(["--port", "0", "--tls-port", &port.to_string()])
                    .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                    .args(certs.server_args())
                    .args([
                        "--tls-auth-clients",
                        if require_client_cert {
                            "yes"
                        } else {
                            "optional"
                        },
                    ]),
            };
            let child = cmd
                .args(["--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .arg("--cluster-config-file")
                .arg(cluster.dir.join(format!("nodes-{port}.conf")))
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&cluster.dir)
                .arg("--logfile")
                .arg(cluster.dir.join(format!("{port}.log")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            cluster.wait_for(port, &["INFO", "cluster"], "cluster_enabled:1");
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let status = cluster
            .cli_command()
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "redis-cli --cluster create failed");
        for &port in &cluster.ports {
            cluster.wait_for(port, &["CLUSTER", "INFO"], "cluster_state:ok");
        }
        Some(cluster)
    }

    /// Polls (bounded by [`WAIT_BOUND`]) until `args` sent to the node on `port` answer with
    /// `expected`.
    fn wait_for(&self, port: u16, args: &[&str], expected: &str) {
        let deadline = Instant::now() + WAIT_BOUND;
        while Instant::now() < deadline {
            if self.cli(port, args).contains(expected) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("node {port} never answered {args:?} with {expected}");
    }

    /// `redis-cli`, with the CA and the client certificate on a TLS cluster.
    fn cli_command(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        if let Some(certs) = &self.tls {
            cmd.args(certs.cli_args());
        }
        cmd
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = self
            .cli_command()
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn url(&self) -> String {
        self.url_from(self.ports[0])
    }

    /// A cluster URL whose seed list starts with the node on `first`, then the others.
    fn url_from(&self, first: u16) -> String {
        self.url_of(
            std::iter::once(first).chain(self.ports.iter().copied().filter(|&p| p != first)),
        )
    }

    /// A cluster URL of the seeds on `ports`, in that order.
    fn url_of(&self, ports: impl Iterator<Item = u16>) -> String {
        let seeds: Vec<String> = ports.map(|p| format!("127.0.0.1:{p}")).collect();
        let scheme = if self.tls.is_some() {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        format!("{scheme}://{}", seeds.join(","))
    }

    /// How many clients of the node on `port` subscribe to `channel`.
    fn numsub(&self, port: u16, channel: &str) -> String {
        let reply = self.cli(port, &["PUBSUB", "NUMSUB", channel]);
        reply.lines().nth(1).unwrap_or_default().to_owned()
    }

    fn keys_on(&self, port: u16) -> usize {
        self.cli(port, &["--scan", "--pattern", "*"])
            .lines()
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_tier_spreads_keys_and_keeps_the_semantics() {
    let Some(cluster) = tokio::task::spawn_blocking(TempCluster::start)
        .await
        .unwrap()
    else {
        return;
    };
    let tier = RedisClusterTier::new(RedisTierConfig::new(cluster.url()).prefix("cl")).unwrap();
    let keys: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("key{i}").into_bytes())
        .collect();
    let values: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let tags: [&[&str]; 2] = [&["even"], &["odd"]];
    let entries: Vec<TierEntry<'_>> = keys
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, (k, v))| {
            TierEntry::new(k, v, Some(Duration::from_secs(60))).with_tags(tags[i % 2])
        })
        .collect();
    tier.mset(&entries).await.unwrap();
    // Keys really are spread over the three primaries.
    for &port in &cluster.ports {
        assert!(
            cluster.keys_on(port) > 20,
            "node {port} holds almost nothing"
        );
    }
    let refs: Vec<&[u8]> = keys
        .iter()
        .map(Vec::as_slice)
        .chain([&b"missing"[..]])
        .collect();
    let got = tier.mget(&refs).await.unwrap();
    for (i, v) in got.iter().enumerate().take(300) {
        assert_eq!(v.as_deref(), Some(values[i].as_slice()));
    }
    assert_eq!(got[300], None);

    assert!(tier.delete(b"key1").await.unwrap());
    assert_eq!(tier.get(b"key1").await.unwrap(), None);
    assert_eq!(tier.delete_by_tags(&["odd"]).await.unwrap(), 149);
    assert_eq!(tier.get(b"key3").await.unwrap(), None);
    assert!(tier.get(b"key2").await.unwrap().is_some());

    // Through the manager, from a second "process".
    let shared: SharedTier = Arc::new(tier);
    let a: TieredCache<String> = TieredCache::builder().l2(shared.clone()).build();
    a.set(b"doc", "v".into(), WriteOptions::new()).await;
    let b: TieredCache<String> = TieredCache::builder().l2(shared.clone()).build();
    assert_eq!(
        b.get(b"doc").await.as_deref().map(String::as_str),
        Some("v")
    );

    // clear scans every primary and leaves nothing of the prefix.
    assert_eq!(shared.clear().await.unwrap(), 151);
    for &port in &cluster.ports {
        assert_eq!(cluster.keys_on(port), 0, "node {port} still holds keys");
    }
    let s = shared.stats().snapshot();
    assert_eq!(s.errors, 0);
}

async fn start_cluster() -> Option<TempCluster> {
    tokio::task::spawn_blocking(TempCluster::start)
        .await
        .unwrap()
}

fn cluster_tier(url: &str, prefix: &str) -> Arc<RedisClusterTier> {
    Arc::new(
        RedisClusterTier::new(
            RedisTierConfig::new(url)
                .prefix(prefix)
                .timeout(Duration::from_secs(2)),
        )
        .unwrap(),
    )
}

/// Takes the free lock `name` and releases it.
async fn take_and_release(tier: &RedisClusterTier, name: &[u8]) {
    let guard = tier
        .try_lock(name, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the lock is free");
    assert!(guard.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_lock_on_a_cluster_lets_one_process_compute() {
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let prefix = perf_testkit::unique_name("cl_fleet");
    // Two "processes": separate L1s and cluster connections, one cluster.
    let make = || {
        fleet_cache(
            cluster_tier(&cluster.url(), &prefix),
            Duration::from_secs(20),
        )
    };
    let (a, b) = (make(), make());
    let probe = cluster_tier(&cluster.url(), &prefix);
    one_loader_run_for_the_fleet(&a, &b, 8, probe.as_ref()).await;

    // The lock is free for the next computation: B takes it for another key at once, and
    // anyone can take the first key's lock again.
    let v = b
        .get_or_compute(b"other", WriteOptions::new(), || async {
            Ok::<_, std::io::Error>(8)
        })
        .await
        .unwrap();
    assert_eq!(*v, 8);
    assert_eq!(b.stats().loads, 1);
    take_and_release(&probe, b"report").await;
    assert_eq!(probe.stats().snapshot().errors, 0);
    a.clear().await;
    for &port in &cluster.ports {
        assert_eq!(cluster.keys_on(port), 0, "node {port} still holds keys");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fleet_lock_on_a_cluster_one_process_refreshes() {
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let prefix = perf_testkit::unique_name("cl_swr_fleet");
    let clock = ManualClock::new();
    let make = || fleet_refresh_cache(cluster_tier(&cluster.url(), &prefix), &clock);
    let (a, b) = (make(), make());
    let opts = WriteOptions::new().ttl(Duration::from_secs(60));
    let age = Duration::from_secs(30);
    let (calls_a, calls_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let v1 = refresh_loader(&calls_a, None, Some("v1"));
    assert_eq!(*a.get_or_refresh(b"k", opts, age, v1).await.unwrap(), "v1");
    assert_eq!(*b.get(b"k").await.unwrap(), "v1");
    clock.advance(Duration::from_secs(31));
    // A's refresh takes the lock on the cluster and waits at the gate.
    let gate = Arc::new(tokio::sync::Notify::new());
    let v2 = refresh_loader(&calls_a, Some(&gate), Some("v2"));
    assert_eq!(*a.get_or_refresh(b"k", opts, age, v2).await.unwrap(), "v1");
    until("A's refresh to start", async || {
        calls_a.load(Ordering::SeqCst) == 2
    })
    .await;
    // B's stale hit serves v1 at once and leaves the refresh to the lock's holder.
    let from_b = refresh_loader(&calls_b, None, Some("from b"));
    assert_eq!(
        *b.get_or_refresh(b"k", opts, age, from_b).await.unwrap(),
        "v1"
    );
    until("B to leave the refresh to A", async || {
        b.stats().refreshes_elsewhere == 1
    })
    .await;
    gate.notify_one();
    until("A's refresh", async || a.stats().refreshes == 1).await;
    assert_eq!(calls_b.load(Ordering::SeqCst), 0, "B never ran its loader");
    assert_eq!(b.stats().refreshes, 0);
    a.clear().await;
    for &port in &cluster.ports {
        assert_eq!(cluster.keys_on(port), 0, "node {port} still holds keys");
    }
}

/// One "process" on the cluster: its own L1 with `tier` as L2, and its coherency layer on
/// `coherency_on` (the tier itself, or one node of the cluster), subscribed.
async fn cluster_process(tier: Arc<RedisClusterTier>, coherency_on: &dyn RedisBackend) -> Process {
    let cache = TieredCache::builder()
        .l1(Cache::new(1 << 20))
        .l2(tier as SharedTier)
        .build();
    let coherency = Coherency::attach(&cache, coherency_on, CoherencyConfig::default()).unwrap();
    assert!(coherency.wait_subscribed(WAIT_BOUND).await);
    Process { cache, coherency }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coherency_on_a_cluster_invalidates_the_other_l1() {
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let prefix = perf_testkit::unique_name("cl_coherency");
    let channel = format!("{prefix}:invalidate");
    let (x, y, z) = (cluster.ports[0], cluster.ports[1], cluster.ports[2]);
    // B subscribes on node X, the first of its seeds. A's L2 is the cluster too, but its
    // coherency layer runs on a one-server connection to node Y: every PUBLISH of A is sent
    // to Y, so B receives it only if the cluster bus carries it from Y to X.
    let b_tier = cluster_tier(&cluster.url_from(x), &prefix);
    let b = cluster_process(b_tier.clone(), &b_tier).await;
    let on_y = RedisTier::new(
        RedisTierConfig::new(format!("redis://127.0.0.1:{y}"))
            .prefix(prefix.as_str())
            .timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let a = cluster_process(cluster_tier(&cluster.url_from(y), &prefix), &on_y).await;
    for (port, subscribers) in [(x, "1"), (y, "1"), (z, "0")] {
        assert_eq!(cluster.numsub(port, &channel), subscribers, "node {port}");
    }

    // Set: B holds v1 in L1; A overwrites; B's copy goes and B reads v2 from the cluster.
    write_then_read_elsewhere(&a, &b, b"k", "v1", &["t"]).await;
    a.cache
        .set(b"k", "v2".into(), WriteOptions::new().tags(&["t"]))
        .await;
    until_gone(&b, b"k").await;
    assert_eq!(
        b.cache.get(b"k").await.as_deref().map(String::as_str),
        Some("v2")
    );
    // Delete.
    assert!(in_l1(&b, b"k"));
    a.cache.delete(b"k").await;
    until_gone(&b, b"k").await;
    assert_eq!(b.cache.get(b"k").await, None);
    // Tag invalidation.
    write_then_read_elsewhere(&a, &b, b"x", "1", &["grp"]).await;
    a.cache.delete_by_tags(&["grp"]).await;
    until_gone(&b, b"x").await;
    assert_eq!(b.cache.get(b"x").await, None);

    // Every one of A's messages (two sets, a delete, a set, a tag invalidation) went to Y
    // and was applied on X.
    let (sa, sb) = (a.coherency.stats(), b.coherency.stats());
    assert_eq!((sa.published, sb.applied), (5, 5), "{sa:?} {sb:?}");
    assert_eq!((sa.publish_errors, sa.undecodable), (0, 0), "{sa:?}");
    assert_eq!(
        (sb.undecodable, sb.publish_errors, sb.subscriptions),
        (0, 0, 1),
        "{sb:?}"
    );
    a.cache.clear().await;
    for &port in &cluster.ports {
        assert_eq!(cluster.keys_on(port), 0, "node {port} still holds keys");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coherency_subscriber_moves_past_a_seed_that_does_not_answer() {
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let prefix = perf_testkit::unique_name("cl_seed_failover");
    let channel = format!("{prefix}:invalidate");
    let (x, y, z) = (cluster.ports[0], cluster.ports[1], cluster.ports[2]);
    // B's first seed is a port nothing listens on; X comes next. Its cache keeps the real
    // clock, on which the subscriber's backoff after the refused connection is slept.
    let nobody = free_port().unwrap();
    let b_tier = cluster_tier(&cluster.url_of([nobody, x, y, z].into_iter()), &prefix);
    let b = cluster_process(b_tier.clone(), &b_tier).await;
    assert_eq!(cluster.numsub(x, &channel), "1", "B subscribed on X");
    // A publishes through its cluster connection, from its own subscriber on Y.
    let a_tier = cluster_tier(&cluster.url_from(y), &prefix);
    let a = cluster_process(a_tier.clone(), &a_tier).await;
    for (port, subscribers) in [(x, "1"), (y, "1"), (z, "0")] {
        assert_eq!(cluster.numsub(port, &channel), subscribers, "node {port}");
    }
    write_then_read_elsewhere(&a, &b, b"k", "v1", &[]).await;
    a.cache.set(b"k", "v2".into(), WriteOptions::new()).await;
    until_gone(&b, b"k").await;
    assert_eq!(
        b.cache.get(b"k").await.as_deref().map(String::as_str),
        Some("v2")
    );
    let sb = b.coherency.stats();
    assert_eq!((sb.subscriptions, sb.applied), (1, 2), "{sb:?}");
    a.cache.clear().await;
    for &port in &cluster.ports {
        assert_eq!(cluster.keys_on(port), 0, "node {port} still holds keys");
    }
}

#[cfg(feature = "redis-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_a_private_ca_and_a_client_certificate() {
    let Some(cluster) = tokio::task::spawn_blocking(|| TempCluster::start_tls(true))
        .await
        .unwrap()
    else {
        return;
    };
    let certs = cluster.tls.as_ref().unwrap();
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"));
    let prefix = perf_testkit::unique_name("cl_tls");
    let config = || {
        RedisTierConfig::new(url.as_str())
            .prefix(prefix.as_str())
            .timeout(Duration::from_secs(2))
    };
    let tier = Arc::new(
        RedisClusterTier::new(
            config()
                .tls_root_cert(certs.ca_cert())
                .tls_client_cert(certs.client_cert(), certs.client_key()),
        )
        .unwrap(),
    );
    // A round trip over TLS, with keys on every node.
    let keys: Vec<Vec<u8>> = (0..60u32).map(|i| format!("k{i}").into_bytes()).collect();
    let entries: Vec<TierEntry<'_>> = keys
        .iter()
        .map(|k| TierEntry::new(k, b"over tls", None).with_tags(&["t"]))
        .collect();
    tier.mset(&entries).await.unwrap();
    for &port in &cluster.ports {
        assert!(cluster.keys_on(port) > 0, "node {port} holds nothing");
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let got = tier.mget(&refs).await.unwrap();
    assert!(got.iter().all(|v| v.as_deref() == Some(&b"over tls"[..])));
    // The fleet lock and the coherency subscriber (a node of its own) use TLS too.
    take_and_release(&tier, b"job").await;
    let cache: TieredCache<String> = TieredCache::builder()
        .l1(Cache::new(1 << 20))
        .l2(tier.clone() as SharedTier)
        .build();
    let coherency = Coherency::attach(&cache, &tier, CoherencyConfig::default()).unwrap();
    assert!(coherency.wait_subscribed(WAIT_BOUND).await);
    cache.set(b"doc", "v".into(), WriteOptions::new()).await;
    let published = coherency.stats();
    assert_eq!(
        (published.published, published.publish_errors),
        (1, 0),
        "{published:?}"
    );
    assert_eq!(tier.stats().snapshot().errors, 0);

    // Without the client certificate the nodes refuse the connection; without the private CA
    // the nodes' certificates are not trusted. Both are counted errors, not panics.
    for (what, config) in [
        (
            "no client certificate",
            config().tls_root_cert(certs.ca_cert()),
        ),
        (
            "no private CA",
            config().tls_client_cert(certs.client_cert(), certs.client_key()),
        ),
    ] {
        let refused = RedisClusterTier::new(config).unwrap();
        let err = refused.set(b"k", b"v", None, &[]).await.unwrap_err();
        assert!(
            matches!(
                err,
                perf_cache::Error::Remote { .. } | perf_cache::Error::Timeout { .. }
            ),
            "{what}: {err}"
        );
        assert_eq!(refused.stats().snapshot().errors, 1, "{what}");
    }

    assert_eq!(tier.clear().await.unwrap(), 61);
    for &port in &cluster.ports {
        assert_eq!(cluster.keys_on(port), 0, "node {port} still holds keys");
    }
}
