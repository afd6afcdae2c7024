//! Redis Streams distribution: workers in several processes, a killed worker's chunks reclaimed
//! by another, a restarted worker recovering its own, dead letters, and a Redis restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perf_batch::distributed::{RedisQueue, RedisWorker, WorkerOptions};
use perf_batch::CancellationToken;

const URL_VAR: &str = "PERF_BATCH_WORKER_URL";
const PREFIX_VAR: &str = "PERF_BATCH_WORKER_PREFIX";
const NAME_VAR: &str = "PERF_BATCH_WORKER_NAME";
const DIR_VAR: &str = "PERF_BATCH_WORKER_DIR";

fn double(items: Vec<u64>) -> std::future::Ready<Result<Vec<u64>, String>> {
    std::future::ready(Ok(items.into_iter().map(|x| x * 2).collect()))
}

fn fast() -> WorkerOptions {
    WorkerOptions::default().block(Duration::from_millis(100))
}

/// Child-process entry: a worker that takes three chunks and hangs on the first, so the parent
/// can kill it while it holds them.
#[tokio::test]
#[ignore = "entry point of the worker child process of the distributed tests"]
async fn worker_child() {
    let (Ok(url), Ok(prefix), Ok(name), Ok(dir)) = (
        std::env::var(URL_VAR),
        std::env::var(PREFIX_VAR),
        std::env::var(NAME_VAR),
        std::env::var(DIR_VAR),
    ) else {
        return;
    };
    let worker = RedisWorker::connect(&url, prefix, name, fast().count(3))
        .await
        .unwrap();
    let marker = PathBuf::from(dir).join("holding");
    worker
        .run(
            move |_items: Vec<u64>| {
                std::fs::write(&marker, b"1").unwrap();
                async move {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<Vec<u64>, String>(Vec::new())
                }
            },
            None,
        )
        .await
        .unwrap();
}

fn spawn_holder(url: &str, prefix: &str, name: &str, dir: &Path) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args([
            "--exact",
            "distributed::worker_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env(URL_VAR, url)
        .env(PREFIX_VAR, prefix)
        .env(NAME_VAR, name)
        .env(DIR_VAR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Enqueues 10 chunks of 5 items, starts a holder child, kills it (SIGKILL) once it holds its
/// chunks.
async fn kill_a_worker_holding_chunks(url: &str, prefix: &str, name: &str) -> RedisQueue {
    let queue = RedisQueue::connect(url, prefix).await.unwrap();
    assert_eq!(
        queue
            .enqueue(&(0..50u64).collect::<Vec<_>>(), 5)
            .await
            .unwrap(),
        10
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_holder(url, prefix, name, dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("holding").exists() {
        assert!(child.try_wait().unwrap().is_none(), "worker child exited");
        assert!(Instant::now() < deadline, "worker child took no chunk");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(queue.status().await.unwrap().done, 0);
    queue
}

#[tokio::test]
async fn a_killed_workers_chunks_are_reclaimed_by_another_worker() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("dist_reclaim");
    let queue = kill_a_worker_holding_chunks(&url, &prefix, "doomed").await;
    let rescuer = RedisWorker::connect(
        &url,
        prefix.as_str(),
        "rescuer",
        fast().visibility_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let stats = rescuer.run(double, None).await.unwrap();
    assert_eq!(stats.claimed, 3, "{stats:?}");
    assert_eq!(stats.processed, 10);
    let results: Vec<u64> = queue.collect().await.unwrap();
    assert_eq!(results, (0..50u64).map(|x| x * 2).collect::<Vec<_>>());
    queue.clear().await.unwrap();
}

#[tokio::test]
async fn a_worker_restarted_under_its_name_gets_its_orphaned_chunks() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("dist_orphan");
    let queue = kill_a_worker_holding_chunks(&url, &prefix, "w1").await;
    // A visibility timeout far away: only reading its own pending list can return the chunks.
    let again = RedisWorker::connect(
        &url,
        prefix.as_str(),
        "w1",
        fast().visibility_timeout(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let stats = again.run(double, None).await.unwrap();
    assert_eq!(
        (stats.recovered, stats.claimed, stats.processed),
        (3, 0, 10),
        "{stats:?}"
    );
    let results: Vec<u64> = queue.collect().await.unwrap();
    assert_eq!(results.len(), 50);
    queue.clear().await.unwrap();
}

#[tokio::test]
async fn several_workers_share_a_job_and_each_chunk_has_one_result() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("dist_share");
    let queue = RedisQueue::connect(&url, prefix.as_str()).await.unwrap();
    queue
        .enqueue(&(0..200u64).collect::<Vec<_>>(), 10)
        .await
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for w in 0..3 {
        let (url, prefix, runs) = (url.clone(), prefix.clone(), runs.clone());
        handles.push(tokio::spawn(async move {
            let worker = RedisWorker::connect(&url, prefix, format!("w{w}"), fast())
                .await
                .unwrap();
            worker
                .run(
                    move |items: Vec<u64>| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        double(items)
                    },
                    None,
                )
                .await
                .unwrap()
        }));
    }
    let mut processed = 0;
    for h in handles {
        processed += h.await.unwrap().processed;
    }
    assert_eq!(processed, 20);
    assert_eq!(runs.load(Ordering::SeqCst), 20);
    let results: Vec<u64> = queue.collect().await.unwrap();
    assert_eq!(results, (0..200u64).map(|x| x * 2).collect::<Vec<_>>());
    queue.clear().await.unwrap();
}

#[tokio::test]
async fn a_chunk_that_keeps_failing_goes_to_the_dead_letter_stream() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("dist_dead");
    let queue = RedisQueue::connect(&url, prefix.as_str()).await.unwrap();
    queue
        .enqueue(&(0..20u64).collect::<Vec<_>>(), 5)
        .await
        .unwrap();
    let attempts_on_bad = Arc::new(AtomicUsize::new(0));
    let a = attempts_on_bad.clone();
    let worker = RedisWorker::connect(
        &url,
        prefix.as_str(),
        "w",
        fast()
            .visibility_timeout(Duration::from_millis(50))
            .max_deliveries(3),
    )
    .await
    .unwrap();
    let stats = worker
        .run(
            move |items: Vec<u64>| {
                let bad = items.contains(&12);
                if bad {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                async move {
                    if bad {
                        Err("item 12 is poison".to_owned())
                    } else {
                        Ok(items)
                    }
                }
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(attempts_on_bad.load(Ordering::SeqCst), 3);
    assert_eq!(
        (stats.processed, stats.failed, stats.dead_lettered),
        (3, 3, 1)
    );
    let status = queue.status().await.unwrap();
    assert_eq!((status.total, status.done, status.dead), (4, 3, 1));
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].chunk, dead[0].deliveries), (2, 3));
    assert!(dead[0].reason.contains("poison"));
    queue.clear().await.unwrap();
}

#[tokio::test]
async fn workers_survive_a_redis_restart() {
    let Some(mut redis) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let token = CancellationToken::new();
    let worker = RedisWorker::connect(&url, "job", "w", fast().exit_when_done(false))
        .await
        .unwrap();
    let t = token.clone();
    let handle = tokio::spawn(async move { worker.run(double, Some(&t)).await });
    let queue = RedisQueue::connect(&url, "job").await.unwrap();
    queue.enqueue(&[1u64, 2, 3], 1).await.unwrap();
    let clock = perf_core::clock::system_clock();
    queue
        .wait_complete(Duration::from_millis(20), &clock)
        .await
        .unwrap();

    // A crash of Redis (the throwaway server keeps no data) while the worker blocks on a read.
    redis.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.start_again().unwrap();
    let mut enqueued = queue.enqueue(&[10u64, 20], 1).await;
    for _ in 0..50 {
        if enqueued.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        enqueued = queue.enqueue(&[10u64, 20], 1).await;
    }
    assert_eq!(enqueued.unwrap(), 2);
    let status = queue
        .wait_complete(Duration::from_millis(20), &clock)
        .await
        .unwrap();
    assert_eq!((status.total, status.done), (2, 2));
    let results: Vec<u64> = queue.collect().await.unwrap();
    assert_eq!(results, vec![20, 40]);
    token.cancel();
    let stats = handle.await.unwrap().unwrap();
    assert_eq!(stats.processed, 5);
    assert!(stats.redis_errors >= 1);
}
