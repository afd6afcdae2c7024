//! `TempRedis`: a private, throwaway `redis-server` for fault tests that kill and restart Redis
//! without disturbing the shared server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{find_binary, free_port, redis_info_field, scratch_dir, tail_file};
use crate::TestkitError;

/// How long a start may take before we give up.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How many fresh ports `start` tries when another process takes the chosen one.
const PORT_ATTEMPTS: usize = 4;

/// A `redis-server` child process on a free port of 127.0.0.1, with its working directory under
/// `target/perfkit-tmp/`; persistence is off unless it was started with
/// [`start_persistent`](Self::start_persistent).
///
/// [`stop`](Self::stop) kills it with SIGKILL (a crash, not a shutdown);
/// [`start_again`](Self::start_again) brings it back on the same port: empty, or, when
/// persistent, with every write it acknowledged. Dropping the value kills the process and
/// removes its directory.
///
/// ```no_run
/// use perf_testkit::TempRedis;
///
/// let mut redis = TempRedis::start().unwrap();
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.stop().unwrap(); // clients now see connection errors
/// redis.start_again().unwrap(); // same port, answers PING again
/// # let _ = url;
/// ```
#[derive(Debug)]
pub struct TempRedis {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Append-only file with an fsync per write: a SIGKILL loses nothing acknowledged.
    persistent: bool,
}

impl TempRedis {
    /// Starts a private `redis-server` (found on `PATH`) and waits until it answers.
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start().unwrap();
    /// assert!(redis.url().starts_with("redis://127.0.0.1:"));
    /// ```
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), but with Redis's append-only file on and an fsync after
    /// every write (`appendfsync always`), so a [`stop`](Self::stop) (SIGKILL) followed by
    /// [`start_again`](Self::start_again) keeps every write the server acknowledged, as a
    /// production Redis configured for durability would.
    ///
    /// ```no_run
    /// let mut redis = perf_testkit::TempRedis::start_persistent().unwrap();
    /// redis.restart().unwrap(); // the data written before is still there
    /// ```
    pub fn start_persistent() -> Result<Self, TestkitError> {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Result<Self, TestkitError> {
        let binary = find_binary("redis-server").ok_or(TestkitError::BinaryNotFound {
            name: "redis-server".into(),
            hint: "apt-get install redis-server, or brew install redis",
        })?;
        let dir = scratch_dir("redis")?;
        let mut redis = TempRedis {
            binary,
            dir,
            port: 0,
            child: None,
            persistent,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            redis.port = free_port()?;
            match redis.spawn_and_wait() {
                Ok(()) => return Ok(redis),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(TestkitError::NotReady {
            what: "redis-server",
            port: redis.port,
            waited: READY_TIMEOUT,
            detail: "no attempt was made".into(),
        }))
    }

    /// Like [`start`](Self::start), but returns `None` after printing `skipped: ...` when
    /// `redis-server` is not installed, unless `PERFKIT_REQUIRE_SERVICES=1`.
    ///
    /// ```no_run
    /// let Some(redis) = perf_testkit::TempRedis::start_or_skip() else { return };
    /// # let _ = redis;
    /// ```
    ///
    /// # Panics
    ///
    /// When the server cannot be started and `PERFKIT_REQUIRE_SERVICES=1`, or when it is
    /// installed but fails to start (a broken machine should not look like a skipped test).
    pub fn start_or_skip() -> Option<Self> {
        Self::skip_unless_installed(Self::start())
    }

    /// [`start_persistent`](Self::start_persistent) with the skip policy of
    /// [`start_or_skip`](Self::start_or_skip).
    ///
    /// ```no_run
    /// let Some(redis) = perf_testkit::TempRedis::start_persistent_or_skip() else { return };
    /// # let _ = redis;
    /// ```
    ///
    /// # Panics
    ///
    /// As [`start_or_skip`](Self::start_or_skip).
    pub fn start_persistent_or_skip() -> Option<Self> {
        Self::skip_unless_installed(Self::start_persistent())
    }

    fn skip_unless_installed(started: Result<Self, TestkitError>) -> Option<Self> {
        match started {
            Ok(redis) => Some(redis),
            Err(e @ TestkitError::BinaryNotFound { .. }) if !crate::require_services() => {
                crate::services::skip_notice(&format!("needs a private Redis ({e})"));
                None
            }
            Err(e) => panic!("could not start a private redis-server: {e}"),
        }
    }

    /// `redis://127.0.0.1:<port>`.
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start().unwrap();
    /// assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    /// ```
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TCP port, stable across [`stop`](Self::stop) and [`start_again`](Self::start_again).
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start().unwrap();
    /// assert!(redis.port() > 0);
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (holds `redis.log`).
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start().unwrap();
    /// assert!(redis.dir().join("redis.log").exists());
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process is alive (it may have been stopped, or have died).
    ///
    /// ```no_run
    /// let mut redis = perf_testkit::TempRedis::start().unwrap();
    /// assert!(redis.is_running());
    /// ```
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server with SIGKILL and waits for it to exit: a crash, as clients see it.
    /// Does nothing when it is not running.
    ///
    /// ```no_run
    /// let mut redis = perf_testkit::TempRedis::start().unwrap();
    /// redis.stop().unwrap();
    /// assert!(!redis.is_running());
    /// ```
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        if let Some(mut child) = self.child.take() {
            // The process may already have exited; kill then reports an error we can ignore.
            let _ = child.kill();
            child
                .wait()
                .map_err(|e| TestkitError::io("waiting for redis-server to exit", e))?;
        }
        Ok(())
    }

    /// Starts the server again on the same port after [`stop`](Self::stop) and waits until it
    /// answers. It comes back empty unless it was started with
    /// [`start_persistent`](Self::start_persistent).
    ///
    /// ```no_run
    /// let mut redis = perf_testkit::TempRedis::start().unwrap();
    /// redis.stop().unwrap();
    /// redis.start_again().unwrap();
    /// assert!(redis.is_running());
    /// ```
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        if self.is_running() {
            return Ok(());
        }
        self.stop()?;
        self.spawn_and_wait()
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    ///
    /// ```no_run
    /// let mut redis = perf_testkit::TempRedis::start().unwrap();
    /// redis.restart().unwrap();
    /// ```
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> Result<(), TestkitError> {
        let log = self.dir.join("redis.log");
        let port = self.port.to_string();
        let appendonly = if self.persistent { "yes" } else { "no" };
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &port, "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--daemonize",
                "no",
            ])
            .args(["--appendfsync", "always"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {}", self.binary.display()), e))?;
        let pid = child.id().to_string();
        self.child = Some(child);

        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(TestkitError::NotReady {
                        what: "redis-server",
                        port: self.port,
                        waited: started.elapsed(),
                        detail: format!("exited with {status}; log: {}", tail_file(&log, 5)),
                    });
                }
            }
            // Ask for the server's pid, so a different server that grabbed the port first does
            // not pass for ours.
            let answered = redis_info_field(
                "127.0.0.1",
                self.port,
                "server",
                "process_id",
                Duration::from_millis(250),
            );
            if answered.as_deref() == Some(pid.as_str()) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = self.stop();
                return Err(TestkitError::NotReady {
                    what: "redis-server",
                    port: self.port,
                    waited: started.elapsed(),
                    detail: format!("no PING reply; log: {}", tail_file(&log, 5)),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
