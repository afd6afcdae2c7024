//! The Redis Cluster tier against a private three-primary cluster started for the test: the
//! tier's semantics, the fleet lock and L1 coherency on a cluster, and a TLS-only cluster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::coherency::{in_l1, until_gone, write_then_read_elsewhere, Process};
use crate::tiered::{fleet_refresh_cache, refresh_loader, until};
use perf_cache::coherency::{Coherency, CoherencyConfig};
use perf_cache::l1::Cache;
use perf_cache::redis::{RedisClusterTier, RedisTierConfig};
use perf_cache::tier::{RemoteTier, SharedTier, TierEntry};
use perf_cache::tiered::{FleetLockConfig, TieredCache, WriteOptions};
use perf_core::clock::ManualClock;
use perf_testkit::support::{find_binary, free_port, scratch_dir};
use perf_testkit::{TestCertificates, TestkitError};

/// Three `redis-server --cluster-enabled yes` primaries on free ports, joined into a cluster;
/// with [`start_tls`](Self::start_tls), TLS only (clients, cluster bus), with certificates of a
/// private CA.
struct TempCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Child>,
    tls: Option<TestCertificates>,
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
        let dir = scratch_dir("cluster").unwrap();
        let require_client_cert = tls.as_ref().is_some_and(|(_, required)| *required);
        let mut cluster = TempCluster {
            dir,
            ports: Vec::new(),
            children: Vec::new(),
            tls: tls.map(|(certs, _)| certs),
        };
        for _ in 0..3 {
            let port = free_port().unwrap();
            let bus = free_port().unwrap();
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

    /// Polls (bounded) until `args` sent to the node on `port` answer with `expected`.
    fn wait_for(&self, port: u16, args: &[&str], expected: &str) {
        for _ in 0..1_000 {
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
        let seeds: Vec<String> = std::iter::once(first)
            .chain(self.ports.iter().copied().filter(|&p| p != first))
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        format!("{scheme}://{}", seeds.join(","))
    }

    /// The port of the primary that owns `key`'s slot (from `CLUSTER NODES`).
    fn owner_of(&self, key: &str) -> u16 {
        let port = self.ports[0];
        let slot: u16 = self
            .cli(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap();
        for line in self.cli(port, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let owns = fields.iter().skip(8).any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                    _ => false,
                }
            });
            if owns {
                let addr = fields[1].split('@').next().unwrap();
                return addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("no node owns slot {slot}");
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
        let t = cluster_tier(&cluster.url(), &prefix);
        TieredCache::<u64>::builder()
            .l1(Cache::new(1 << 20))
            .l2(t.clone() as SharedTier)
            .fleet_lock(
                t,
                FleetLockConfig::new(Duration::from_secs(30))
                    .waiting(Duration::from_secs(20), Duration::from_millis(5)),
            )
            .build()
    };
    let (a, b) = (make(), make());
    let probe = cluster_tier(&cluster.url(), &prefix);
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let callers = |cache: &TieredCache<u64>| {
        (0..8)
            .map(|_| {
                let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
                tokio::spawn(async move {
                    let loader = move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok::<_, std::io::Error>(7)
                    };
                    cache
                        .get_or_compute(b"report", WriteOptions::new(), loader)
                        .await
                })
            })
            .collect::<Vec<_>>()
    };
    // A's callers: one of them takes the lock and runs the loader, which waits at the gate.
    let in_a = callers(&a);
    until("A's loader to start", async || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // B's callers find the lock taken and wait for the value in L2.
    let in_b = callers(&b);
    until("B to poll L2 while A holds the lock", async || {
        probe.is_locked(b"report").await.unwrap() && b.stats().l2.unwrap().misses >= 2
    })
    .await;
    gate.notify_one();
    for caller in in_a.into_iter().chain(in_b) {
        assert_eq!(*caller.await.unwrap().unwrap(), 7);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader run for the fleet"
    );
    assert!(!probe.is_locked(b"report").await.unwrap(), "lock released");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coherency_on_a_cluster_invalidates_the_other_l1() {
    let Some(cluster) = start_cluster().await else {
        return;
    };
    let prefix = perf_testkit::unique_name("cl_coherency");
    let channel = format!("{prefix}:invalidate");
    // Both subscribers listen on nodes that do not own the channel's slot, where A's PUBLISH
    // is routed: its messages reach B only through the cluster's broadcast.
    let owner = cluster.owner_of(&channel);
    let others: Vec<u16> = cluster
        .ports
        .iter()
        .copied()
        .filter(|&p| p != owner)
        .collect();
    let process = async |first: u16| {
        let tier = cluster_tier(&cluster.url_from(first), &prefix);
        let cache = TieredCache::builder()
            .l1(Cache::new(1 << 20))
            .l2(tier.clone() as SharedTier)
            .build();
        let coherency = Coherency::attach(&cache, &tier, CoherencyConfig::default()).unwrap();
        assert!(coherency.wait_subscribed(Duration::from_secs(5)).await);
        Process { cache, coherency }
    };
    let a = process(others[0]).await;
    let b = process(others[1]).await;
    for (port, subscribers) in [(owner, "0"), (others[0], "1"), (others[1], "1")] {
        let numsub = cluster.cli(port, &["PUBSUB", "NUMSUB", &channel]);
        assert_eq!(numsub.lines().nth(1), Some(subscribers), "node {port}");
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

    let (sa, sb) = (a.coherency.stats(), b.coherency.stats());
    assert!(sb.applied >= 4, "{sb:?}");
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
    assert!(coherency.wait_subscribed(Duration::from_secs(5)).await);
    cache.set(b"doc", "v".into(), WriteOptions::new()).await;
    assert_eq!(coherency.stats().publish_errors, 0);
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
