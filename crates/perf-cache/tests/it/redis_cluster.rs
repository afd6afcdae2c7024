//! The Redis Cluster tier against a private three-primary cluster started for the test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use perf_cache::redis::{RedisClusterTier, RedisTierConfig};
use perf_cache::tier::{RemoteTier, SharedTier, TierEntry};
use perf_cache::tiered::{TieredCache, WriteOptions};
use perf_testkit::support::{find_binary, free_port, redis_info_field, scratch_dir};

/// Three `redis-server --cluster-enabled yes` primaries on free ports, joined into a cluster.
struct TempCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Child>,
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

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TempCluster {
    fn start() -> Option<Self> {
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
        let mut cluster = TempCluster {
            dir,
            ports: Vec::new(),
            children: Vec::new(),
        };
        for _ in 0..3 {
            let port = free_port().unwrap();
            let bus = free_port().unwrap();
            let child = Command::new(&server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
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
            let mut up = false;
            for _ in 0..500 {
                if redis_info_field(
                    "127.0.0.1",
                    port,
                    "cluster",
                    "cluster_enabled",
                    Duration::from_millis(100),
                )
                .as_deref()
                    == Some("1")
                {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(up, "cluster node {port} did not start");
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let status = Command::new("redis-cli")
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
            let mut ok = false;
            for _ in 0..1_000 {
                if cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(ok, "cluster never reached cluster_state:ok");
        }
        Some(cluster)
    }

    fn url(&self) -> String {
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            self.ports[0], self.ports[1]
        )
    }

    fn keys_on(&self, port: u16) -> usize {
        cli(port, &["--scan", "--pattern", "*"]).lines().count()
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
