//! Time sources: the real clock, and a manual clock that tests drive instead of sleeping.
//!
//! Every perfkit component that reasons about time (TTLs, windows, budget periods, flush
//! intervals) takes a [`SharedClock`]. Production code passes [`system_clock()`]; tests pass a
//! [`ManualClock`] and call [`ManualClock::advance`], which also wakes the sleeps that came due.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

/// A future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of monotonic time, wall-clock time and sleeps.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current monotonic instant: use it for durations, TTLs and deadlines.
    fn now(&self) -> Instant;

    /// The current wall-clock time: use it for calendar periods (days, months) and timestamps.
    fn system_now(&self) -> SystemTime;

    /// A future that completes once `duration` has passed on this clock.
    ///
    /// For [`SystemClock`] this is a tokio timer, so it must be polled inside a tokio runtime
    /// with the time driver enabled.
    fn sleep(&self, duration: Duration) -> Sleep;

    /// A future that completes once this clock reaches `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.sleep(deadline.saturating_duration_since(self.now()))
    }
}

/// A clock shared between components, cheap to clone.
pub type SharedClock = Arc<dyn Clock>;

/// The process-wide real clock.
///
/// ```
/// let clock = perf_core::clock::system_clock();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
pub fn system_clock() -> SharedClock {
    static CLOCK: OnceLock<SharedClock> = OnceLock::new();
    CLOCK.get_or_init(|| Arc::new(SystemClock)).clone()
}

/// The real clock: [`Instant::now`], [`SystemTime::now`] and tokio timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn system_now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// A clock that moves only when told to.
///
/// Clones share the same time. [`advance`](ManualClock::advance) moves both the monotonic and the
/// wall-clock time and wakes every [`sleep`](Clock::sleep) whose deadline has been reached, so a
/// test of a one-hour TTL runs in microseconds.
///
/// ```
/// use std::time::Duration;
/// use perf_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(clock.now() - start, Duration::from_secs(3600));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    base: Instant,
    state: Mutex<ManualState>,
}

struct ManualState {
    offset: Duration,
    wall: SystemTime,
    /// Registered sleeps: deadline, the sleep's id, its waker.
    sleepers: Vec<(Instant, u64, Waker)>,
    next_sleep_id: u64,
}

impl ManualClock {
    /// A manual clock whose wall-clock time starts at the real current time.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A manual clock whose wall-clock time starts at `wall`, for tests of calendar periods.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use perf_core::clock::{Clock, ManualClock};
    ///
    /// let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    /// let clock = ManualClock::starting_at(new_year);
    /// assert_eq!(clock.system_now(), new_year);
    /// ```
    pub fn starting_at(wall: SystemTime) -> Self {
        Self {
            inner: Arc::new(ManualInner {
                base: Instant::now(),
                state: Mutex::new(ManualState {
                    offset: Duration::ZERO,
                    wall,
                    sleepers: Vec::new(),
                    next_sleep_id: 0,
                }),
            }),
        }
    }

    /// This clock as a [`SharedClock`].
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Moves time forward by `by` and wakes the sleeps that are now due.
    pub fn advance(&self, by: Duration) {
        let due = {
            let mut state = self.inner.lock();
            state.offset += by;
            state.wall += by;
            let now = self.inner.base + state.offset;
            let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.sleepers)
                .into_iter()
                .partition(|(deadline, _, _)| *deadline <= now);
            state.sleepers = waiting;
            due
        };
        // Wake outside the lock: a woken task may poll on this thread and take the lock again.
        for (_, _, waker) in due {
            waker.wake();
        }
    }

    /// Sets the wall-clock time without moving monotonic time (a wall-clock jump such as an NTP
    /// correction or a daylight-saving change seen in local time).
    pub fn set_system_time(&self, wall: SystemTime) {
        self.inner.lock().wall = wall;
    }

    /// How many sleeps are currently waiting on this clock. Tests use it to know that a
    /// component has reached its timer before they advance time.
    pub fn pending_sleeps(&self) -> usize {
        self.inner.lock().sleepers.len()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("ManualClock")
            .field("elapsed", &state.offset)
            .field("wall", &state.wall)
            .field("pending_sleeps", &state.sleepers.len())
            .finish()
    }
}

impl ManualInner {
    fn lock(&self) -> MutexGuard<'_, ManualState> {
        // The state is plain data that is always left consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Instant {
        self.base + self.lock().offset
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn system_now(&self) -> SystemTime {
        self.inner.lock().wall
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let deadline = self.inner.now() + duration;
        self.sleep_until(deadline)
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let id = {
            let mut state = self.inner.lock();
            state.next_sleep_id += 1;
            state.next_sleep_id
        };
        Box::pin(ManualSleep {
            clock: self.inner.clone(),
            deadline,
            id,
            registered: false,
        })
    }
}

struct ManualSleep {
    clock: Arc<ManualInner>,
    deadline: Instant,
    /// Tells this sleep's registration from others with the same deadline.
    id: u64,
    registered: bool,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let clock = self.clock.clone();
        let mut state = clock.lock();
        if clock.base + state.offset >= deadline {
            return Poll::Ready(());
        }
        // Replace this sleep's earlier waker, if any, so that repeated polls do not pile up.
        let (id, waker) = (self.id, cx.waker().clone());
        match state.sleepers.iter_mut().find(|(_, i, _)| *i == id) {
            Some(slot) => slot.2 = waker,
            None => state.sleepers.push((deadline, id, waker)),
        }
        drop(state);
        self.registered = true;
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if self.registered {
            let id = self.id;
            let mut state = self.clock.lock();
            // Remove only this sleep's registration: another sleep may share the deadline.
            if let Some(pos) = state.sleepers.iter().position(|(_, i, _)| *i == id) {
                state.sleepers.swap_remove(pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_completes_only_after_advance() {
        let clock = ManualClock::new();
        let shared = clock.shared();
        let task = tokio::spawn(async move {
            shared.sleep(Duration::from_secs(10)).await;
        });
        while clock.pending_sleeps() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        assert_eq!(clock.pending_sleeps(), 1);
        clock.advance(Duration::from_secs(1));
        task.await.unwrap();
        assert_eq!(clock.pending_sleeps(), 0);
    }

    #[test]
    fn dropped_sleep_deregisters() {
        let clock = ManualClock::new();
        let mut sleep = clock.sleep(Duration::from_secs(1));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.pending_sleeps(), 1);
        drop(sleep);
        assert_eq!(clock.pending_sleeps(), 0);
    }

    #[tokio::test]
    async fn dropping_one_of_two_equal_deadlines_keeps_the_other_waking() {
        let clock = ManualClock::new();
        let deadline = clock.now() + Duration::from_secs(5);
        let shared = clock.shared();
        let waiter = tokio::spawn(async move { shared.sleep_until(deadline).await });
        while clock.pending_sleeps() == 0 {
            tokio::task::yield_now().await;
        }
        // A second sleep with the same deadline registers, then is dropped (a cancelled
        // timeout): the spawned sleep must still be woken by `advance`.
        let mut other = clock.sleep_until(deadline);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(other.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.pending_sleeps(), 2);
        drop(other);
        assert_eq!(clock.pending_sleeps(), 1);
        clock.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the remaining sleep was never woken")
            .unwrap();
    }

    #[test]
    fn wall_time_moves_with_advance_and_can_jump() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::starting_at(start);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.system_now(), start + Duration::from_secs(5));
        let before = clock.now();
        clock.set_system_time(start);
        assert_eq!(clock.system_now(), start);
        assert_eq!(clock.now(), before);
    }
}
