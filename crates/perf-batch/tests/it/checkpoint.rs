//! Durable checkpoints: resume returns the complete ordered result without re-running finished
//! items; a child process killed with SIGKILL at several points loses nothing; stores on file,
//! Redis and PostgreSQL.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perf_batch::checkpoint::{CheckpointStore, FileCheckpointStore};
use perf_batch::{BatchError, BatchProcessor, BatchStatus, RetryPolicy};

const CRASH_DIR_VAR: &str = "PERF_BATCH_CRASH_CHILD_DIR";
const CRASH_ITEMS: u64 = 3000;

fn value(i: u64) -> u64 {
    i * 3 + 1
}

/// Runs the job once with a failing range, then again: only the failed items run the second
/// time and the result is complete and ordered.
async fn resume_reruns_only_unfinished(store: &dyn CheckpointStore, job: &str) {
    let p = BatchProcessor::new()
        .max_concurrency(4)
        .chunk_size(8)
        .checkpoint_interval(10)
        .checkpoint_min_gap(Duration::ZERO)
        .retry(RetryPolicy::none());
    let first_runs = Arc::new(AtomicUsize::new(0));
    let f = first_runs.clone();
    let first = p
        .run_checkpointed(store, job, 0..100u64, move |i| {
            f.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                if (40..50).contains(&i) {
                    Err(format!("item {i} failed"))
                } else {
                    Ok(value(i))
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(first.status, BatchStatus::Partial);
    assert_eq!((first.succeeded, first.failed), (90, 10));
    assert_eq!(first_runs.load(Ordering::SeqCst), 100);
    assert!(first.checkpoints >= 1 && first.checkpoint_errors.is_empty());

    let second_runs: Arc<Mutex<Vec<u64>>> = Arc::default();
    let s = second_runs.clone();
    let second = p
        .run_checkpointed(store, job, 0..100u64, move |i| {
            s.lock().unwrap().push(i);
            async move { Ok::<_, String>(value(i)) }
        })
        .await
        .unwrap();
    assert_eq!(second.status, BatchStatus::Completed);
    assert_eq!(second.resumed, 90);
    let mut rerun = second_runs.lock().unwrap().clone();
    rerun.sort_unstable();
    assert_eq!(rerun, (40..50).collect::<Vec<_>>());
    let expected: Vec<_> = (0..100).map(|i| (i as usize, value(i))).collect();
    assert_eq!(second.results, expected);
    store.clear(job).await.unwrap();
    assert!(store.load(job).await.unwrap().is_empty());
}

#[tokio::test]
async fn file_store_resume_reruns_only_unfinished_items() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileCheckpointStore::new(dir.path());
    resume_reruns_only_unfinished(&store, "resume").await;
}

#[tokio::test]
async fn a_corrupted_segment_is_a_typed_error_not_a_wrong_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileCheckpointStore::new(dir.path());
    let p = BatchProcessor::new().checkpoint_interval(5);
    p.run_checkpointed(
        &store,
        "corrupt",
        0..20u64,
        |i| async move { Ok::<_, ()>(i) },
    )
    .await
    .unwrap();
    let seg = std::fs::read_dir(store.job_dir("corrupt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let err = p
        .run_checkpointed(
            &store,
            "corrupt",
            0..20u64,
            |i| async move { Ok::<_, ()>(i) },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BatchError::CheckpointCorrupt { .. }), "{err}");
    let err = p
        .run_checkpointed(
            &store,
            "../escape",
            0..1u64,
            |i| async move { Ok::<_, ()>(i) },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BatchError::InvalidJobId { .. }), "{err}");
}

#[tokio::test]
async fn blocking_runs_are_checkpointed_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileCheckpointStore::new(dir.path());
    let p = BatchProcessor::new().checkpoint_interval(3);
    let r = p
        .run_blocking_checkpointed(&store, "blocking", 0..10u64, |i| Ok::<_, ()>(i * i))
        .await
        .unwrap();
    assert_eq!(r.status, BatchStatus::Completed);
    let again = p
        .run_blocking_checkpointed(&store, "blocking", 0..10u64, |_| Err::<u64, _>(()))
        .await
        .unwrap();
    assert_eq!(again.resumed, 10);
    assert_eq!(
        again.into_values(),
        (0..10u64).map(|i| i * i).collect::<Vec<_>>()
    );
}

fn append_line(path: &Path, i: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // One write call per line: appends from concurrent items never interleave.
    f.write_all(format!("{i}\n").as_bytes()).unwrap();
}

fn read_lines(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn crash_processor() -> BatchProcessor<String> {
    BatchProcessor::new()
        .max_concurrency(8)
        .chunk_size(50)
        .checkpoint_interval(25)
        .checkpoint_min_gap(Duration::ZERO)
}

/// Child-process entry of the crash test: runs the job until the parent kills it.
#[tokio::test]
#[ignore = "entry point of the child process of checkpoint_survives_sigkill_at_several_points"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_VAR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = FileCheckpointStore::new(dir.join("store"));
    let log = dir.join("child_executions");
    let r = crash_processor()
        .run_checkpointed(&store, "crash", 0..CRASH_ITEMS, move |i| {
            append_line(&log, i);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, String>(value(i))
            }
        })
        .await
        .unwrap();
    assert_eq!(r.status, BatchStatus::Completed);
    std::fs::write(dir.join("child_finished"), b"yes").unwrap();
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("store").join("crash")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ckpt"))
            .count()
    })
}

#[tokio::test]
async fn checkpoint_survives_sigkill_at_several_points() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // Kill the child three times, each once it has written more segments.
    for kill_at in [2usize, 6, 12] {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "checkpoint::crash_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_VAR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while segment_count(dir.path()) < kill_at {
            assert!(
                child.try_wait().unwrap().is_none(),
                "child exited before it was killed"
            );
            assert!(Instant::now() < deadline, "child wrote no checkpoints");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(!dir.path().join("child_finished").exists());
    }

    let store = FileCheckpointStore::new(dir.path().join("store"));
    let log = dir.path().join("parent_executions");
    let l = log.clone();
    let r = crash_processor()
        .run_checkpointed(&store, "crash", 0..CRASH_ITEMS, move |i| {
            append_line(&l, i);
            async move { Ok::<_, String>(value(i)) }
        })
        .await
        .unwrap();
    assert_eq!(r.status, BatchStatus::Completed);
    assert!(
        r.resumed >= 12 * 25 && r.resumed < CRASH_ITEMS as usize,
        "{}",
        r.resumed
    );
    // Complete and ordered.
    let expected: Vec<_> = (0..CRASH_ITEMS).map(|i| (i as usize, value(i))).collect();
    assert_eq!(r.results, expected);
    // Items recorded as done were not run again: the parent ran exactly the others, once each.
    let parent: Vec<u64> = read_lines(&log);
    let parent_set: BTreeSet<u64> = parent.iter().copied().collect();
    assert_eq!(parent.len(), parent_set.len());
    assert_eq!(parent.len(), CRASH_ITEMS as usize - r.resumed);
    // Nothing lost: every item ran somewhere, and every restored item ran in a child.
    let child: BTreeSet<u64> = read_lines(&dir.path().join("child_executions"))
        .into_iter()
        .collect();
    assert!((0..CRASH_ITEMS).all(|i| parent_set.contains(&i) || child.contains(&i)));
    assert!(child.len() >= r.resumed);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_resumes() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("batch_ckpt");
    let store = perf_batch::checkpoint::RedisCheckpointStore::connect(&url, prefix)
        .await
        .unwrap();
    resume_reruns_only_unfinished(&store, "resume").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_resumes() {
    let url = perf_testkit::require_postgres!();
    let schema = perf_testkit::unique_name("batch_ckpt");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let store =
        perf_batch::checkpoint::PostgresCheckpointStore::connect(&url, &format!("{schema}.ckpt"))
            .await
            .unwrap();
    resume_reruns_only_unfinished(&store, "resume").await;
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_restart_fails_checkpoint_writes_not_the_batch() {
    let Some(redis) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let redis = Arc::new(Mutex::new(redis));
    let store = perf_batch::checkpoint::RedisCheckpointStore::connect(&url, "restart")
        .await
        .unwrap();
    let p = BatchProcessor::new()
        .max_concurrency(2)
        .checkpoint_interval(10)
        .retry(RetryPolicy::none());
    let r2 = redis.clone();
    let r = p
        .run_checkpointed(&store, "job", 0..100u64, move |i| {
            if i == 50 {
                r2.lock().unwrap().stop().unwrap();
            }
            async move {
                tokio::task::yield_now().await;
                Ok::<_, String>(value(i))
            }
        })
        .await
        .unwrap();
    // Every item finished; the writes while Redis was down are reported, not swallowed.
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(r.results.len(), 100);
    assert!(!r.checkpoint_errors.is_empty());

    // Redis comes back (empty: the throwaway server does not persist); the store reconnects and
    // the job runs again from scratch without error.
    redis.lock().unwrap().start_again().unwrap();
    let mut loaded = store.load("job").await;
    for _ in 0..50 {
        if loaded.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        loaded = store.load("job").await;
    }
    assert!(loaded.unwrap().is_empty());
    let again = p
        .run_checkpointed(&store, "job", 0..100u64, |i| async move {
            Ok::<_, String>(value(i))
        })
        .await
        .unwrap();
    assert_eq!((again.status, again.resumed), (BatchStatus::Completed, 0));
    assert!(again.checkpoint_errors.is_empty() && again.checkpoints >= 1);
    assert_eq!(store.load("job").await.unwrap().len(), again.checkpoints);
}

#[tokio::test]
async fn the_minimum_gap_merges_segments_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileCheckpointStore::new(dir.path());
    let clock = perf_core::clock::ManualClock::new();
    let p = BatchProcessor::new()
        .max_concurrency(1)
        .checkpoint_interval(5)
        .checkpoint_min_gap(Duration::from_secs(3600))
        .clock(clock.shared());
    let r = p
        .run_checkpointed(&store, "gap", 0..200u64, |i| async move {
            tokio::time::sleep(Duration::from_micros(200)).await;
            Ok::<_, ()>(value(i))
        })
        .await
        .unwrap();
    // One segment during the run at most (the clock never reaches the gap), plus the final one.
    assert!((1..=2).contains(&r.checkpoints), "{}", r.checkpoints);
    assert_eq!(store.load("gap").await.unwrap().len(), r.checkpoints);
    let again = p
        .run_checkpointed(
            &store,
            "gap",
            0..200u64,
            |_| async move { Err::<u64, _>(()) },
        )
        .await
        .unwrap();
    assert_eq!(again.resumed, 200);
}

#[tokio::test]
async fn from_config_takes_the_minimum_gap_from_the_batch_section() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileCheckpointStore::new(dir.path());
    let clock = perf_core::clock::ManualClock::new();
    let mut config = perf_core::config::BatchConfig::default();
    config.max_concurrency = 1;
    config.checkpoint_interval = 5;
    let mut segments = Vec::new();
    // The manual clock never moves: with a one-hour gap only the first segment and the final one
    // are written; with no gap a segment follows every few items.
    for (job, gap_ms) in [("gap-hour", 3_600_000), ("gap-none", 0)] {
        config.checkpoint_min_gap_ms = gap_ms;
        let p = BatchProcessor::from_config(&config)
            .unwrap()
            .clock(clock.shared());
        let r = p
            .run_checkpointed(&store, job, 0..200u64, |i| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, ()>(value(i))
            })
            .await
            .unwrap();
        assert_eq!(r.status, BatchStatus::Completed);
        assert_eq!(store.load(job).await.unwrap().len(), r.checkpoints);
        segments.push(r.checkpoints);
    }
    assert!((1..=2).contains(&segments[0]), "{segments:?}");
    assert!(segments[1] > 2, "{segments:?}");
}

/// A throwaway server a test may crash and bring back.
#[cfg(any(feature = "postgres", feature = "redis"))]
trait TempServer: Send {
    fn crash(&mut self);
    fn recover(&mut self);
}

#[cfg(feature = "postgres")]
impl TempServer for perf_testkit::TempPostgres {
    /// An immediate shutdown: the next start runs crash recovery.
    fn crash(&mut self) {
        self.stop().unwrap();
    }
    fn recover(&mut self) {
        self.start_again().unwrap();
    }
}

#[cfg(feature = "redis")]
impl TempServer for perf_testkit::TempRedis {
    /// SIGKILL; the server comes back empty (no persistence).
    fn crash(&mut self) {
        self.stop().unwrap();
    }
    fn recover(&mut self) {
        self.start_again().unwrap();
    }
}

/// A server restart in the middle of a checkpointed run: the server crashes at item 150 and
/// comes back at item 300 while the run goes on. The run completes; then a resumed run returns
/// the complete, ordered result, running only the items the store does not hold, once each.
/// A `durable` server keeps what it acknowledged, so then nothing at all runs again.
#[cfg(any(feature = "postgres", feature = "redis"))]
async fn restart_mid_run<S: TempServer + 'static>(
    store: &dyn CheckpointStore,
    server: Arc<Mutex<S>>,
    durable: bool,
) {
    const N: u64 = 400;
    let p = BatchProcessor::new()
        .max_concurrency(4)
        .checkpoint_interval(10)
        .checkpoint_min_gap(Duration::ZERO)
        .retry(RetryPolicy::none());
    let first_runs = Arc::new(AtomicUsize::new(0));
    // The item function holds a second handle: the server must outlive the first run.
    let (runs, srv) = (first_runs.clone(), server.clone());
    let r = p
        .run_checkpointed(store, "job", 0..N, move |i| {
            runs.fetch_add(1, Ordering::SeqCst);
            if i == 150 {
                srv.lock().unwrap().crash();
            }
            if i == 300 {
                srv.lock().unwrap().recover();
            }
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, String>(value(i))
            }
        })
        .await
        .unwrap();
    let expected: Vec<_> = (0..N).map(|i| (i as usize, value(i))).collect();
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(r.results, expected);
    assert_eq!(first_runs.load(Ordering::SeqCst), N as usize);
    // The writes while the server was down are reported; their items stay pending and go into
    // the next segment once the server is back.
    assert!(!r.checkpoint_errors.is_empty(), "the restart was not seen");
    assert!(r.checkpoints >= 1);

    let reruns: Arc<Mutex<Vec<u64>>> = Arc::default();
    let rr = reruns.clone();
    let again = p
        .run_checkpointed(store, "job", 0..N, move |i| {
            rr.lock().unwrap().push(i);
            async move { Ok::<_, String>(value(i)) }
        })
        .await
        .unwrap();
    assert_eq!(again.status, BatchStatus::Completed);
    assert_eq!(again.results, expected, "complete and ordered");
    let mut reruns = reruns.lock().unwrap().clone();
    reruns.sort_unstable();
    reruns.dedup();
    assert_eq!(
        reruns.len() + again.resumed,
        N as usize,
        "an item ran twice or never"
    );
    if durable {
        assert_eq!(again.resumed, N as usize, "finished items redone");
    } else {
        // Whatever was recorded after the restart is restored: at least the items that
        // finished after the server came back (items 300.. at concurrency 4).
        assert!(again.resumed >= 96, "{}", again.resumed);
    }
    store.clear("job").await.unwrap();
    assert!(store.load("job").await.unwrap().is_empty());
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgres_restart_mid_run_loses_nothing_and_redoes_nothing() {
    let Some(pg) = perf_testkit::TempPostgres::start_or_skip() else {
        return;
    };
    let url = pg.url();
    let pg = Arc::new(Mutex::new(pg));
    let store = perf_batch::checkpoint::PostgresCheckpointStore::connect(&url, "ckpt_restart")
        .await
        .unwrap();
    restart_mid_run(&store, pg, true).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_restart_mid_run_loses_nothing_and_redoes_nothing() {
    // A Redis that keeps checkpoints must persist them: the server here has an append-only file
    // with an fsync per write, so what it acknowledged before the SIGKILL is there after it.
    let Some(redis) = perf_testkit::TempRedis::start_persistent_or_skip() else {
        return;
    };
    let url = redis.url();
    let redis = Arc::new(Mutex::new(redis));
    let store = perf_batch::checkpoint::RedisCheckpointStore::connect(&url, "restart_mid")
        .await
        .unwrap();
    restart_mid_run(&store, redis, true).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_restart_of_a_redis_without_persistence_loses_no_item() {
    let Some(redis) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let redis = Arc::new(Mutex::new(redis));
    let store = perf_batch::checkpoint::RedisCheckpointStore::connect(&url, "restart_mid_volatile")
        .await
        .unwrap();
    // This server comes back empty: the items recorded before the crash run again on resume,
    // and nothing is lost.
    restart_mid_run(&store, redis, false).await;
}
