//! The manual clock drives sleeps and deadlines without waiting.

use std::time::Duration;

use perf_core::clock::{system_clock, Clock, ManualClock};

#[tokio::test]
async fn many_sleepers_wake_in_deadline_order() {
    let clock = ManualClock::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for secs in [30u64, 10, 20] {
        let shared = clock.shared();
        let tx = tx.clone();
        tokio::spawn(async move {
            shared.sleep(Duration::from_secs(secs)).await;
            tx.send(secs).unwrap();
        });
    }
    while clock.pending_sleeps() < 3 {
        tokio::task::yield_now().await;
    }
    let mut woken = Vec::new();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(10));
        woken.push(rx.recv().await.unwrap());
    }
    assert_eq!(woken, vec![10, 20, 30]);
}

#[tokio::test]
async fn sleep_until_a_past_deadline_is_ready() {
    let clock = ManualClock::new();
    let past = clock.now();
    clock.advance(Duration::from_secs(1));
    clock.sleep_until(past).await;
    clock.sleep(Duration::ZERO).await;
}

#[tokio::test]
async fn system_clock_sleeps_for_real() {
    let clock = system_clock();
    let start = clock.now();
    clock.sleep(Duration::from_millis(5)).await;
    assert!(clock.now() - start >= Duration::from_millis(5));
}
