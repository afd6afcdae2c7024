//! `TempRedis`: start, crash, restart, each time answering PING on the same port.

use std::time::Duration;

use perf_testkit::support::{redis_ping, tcp_reachable};
use perf_testkit::TempRedis;

#[test]
fn start_stop_restart_answers_ping() {
    let Some(mut redis) = TempRedis::start_or_skip() else {
        return;
    };
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    assert!(redis.is_running());
    assert!(redis_ping("127.0.0.1", port, Duration::from_secs(2)));

    redis.stop().unwrap();
    assert!(!redis.is_running());
    assert!(!tcp_reachable(
        "127.0.0.1",
        port,
        Duration::from_millis(300)
    ));
    // Stopping twice is harmless.
    redis.stop().unwrap();

    redis.start_again().unwrap();
    assert_eq!(redis.port(), port);
    assert!(redis_ping("127.0.0.1", port, Duration::from_secs(2)));

    redis.restart().unwrap();
    assert!(redis_ping("127.0.0.1", port, Duration::from_secs(2)));

    let dir = redis.dir().to_path_buf();
    drop(redis);
    assert!(!dir.exists(), "drop removes {}", dir.display());
    assert!(!tcp_reachable(
        "127.0.0.1",
        port,
        Duration::from_millis(300)
    ));
}

#[test]
fn two_instances_get_different_ports() {
    let Some(a) = TempRedis::start_or_skip() else {
        return;
    };
    let Some(b) = TempRedis::start_or_skip() else {
        return;
    };
    assert_ne!(a.port(), b.port());
    assert!(redis_ping("127.0.0.1", a.port(), Duration::from_secs(2)));
    assert!(redis_ping("127.0.0.1", b.port(), Duration::from_secs(2)));
}
