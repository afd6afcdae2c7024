//! `TempRedis`: a private, throwaway `redis-server` for fault tests that kill and restart Redis
//! without disturbing the shared server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs::TestCertificates;
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
    /// A TLS port besides the plain one (see [`start_tls`](Self::start_tls)).
    tls: Option<Tls>,
    /// The TLS certificates (removed on drop).
    certs: Option<TestCertificates>,
}

/// The TLS side of a [`TempRedis`]: its port and whether it requires client certificates.
#[derive(Debug, Clone, Copy)]
struct Tls {
    port: u16,
    require_client_cert: bool,
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

    /// Like [`start`](Self::start), and also listening for TLS on a second port
    /// ([`tls_url`](Self::tls_url)), with certificates made for this server by `openssl`: a
    /// private CA ([`ca_cert`](Self::ca_cert)), a server certificate for 127.0.0.1 signed by
    /// it, and a client certificate signed by it ([`client_cert`](Self::client_cert),
    /// [`client_key`](Self::client_key)), which the server requires when
    /// `require_client_cert` is true. The plain port stays open for setup and checks.
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start_tls(false).unwrap();
    /// assert!(redis.tls_url().unwrap().starts_with("rediss://127.0.0.1:"));
    /// assert!(redis.ca_cert().exists());
    /// ```
    pub fn start_tls(require_client_cert: bool) -> Result<Self, TestkitError> {
        let certs = TestCertificates::make()?;
        Self::start_configured(
            false,
            Some(Tls {
                port: 0,
                require_client_cert,
            }),
            Some(certs),
        )
    }

    /// [`start_tls`](Self::start_tls) with the skip policy of
    /// [`start_or_skip`](Self::start_or_skip) (`redis-server` or `openssl` missing).
    ///
    /// ```no_run
    /// let Some(redis) = perf_testkit::TempRedis::start_tls_or_skip(true) else { return };
    /// # let _ = redis;
    /// ```
    ///
    /// # Panics
    ///
    /// As [`start_or_skip`](Self::start_or_skip).
    pub fn start_tls_or_skip(require_client_cert: bool) -> Option<Self> {
        Self::skip_unless_installed(Self::start_tls(require_client_cert))
    }

    /// `rediss://127.0.0.1:<tls port>` for a server started with
    /// [`start_tls`](Self::start_tls); `None` otherwise.
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start().unwrap();
    /// assert_eq!(redis.tls_url(), None);
    /// ```
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .map(|tls| format!("rediss://127.0.0.1:{}", tls.port))
    }

    /// The private CA's certificate (PEM) that signed the server and client certificates of
    /// a server started with [`start_tls`](Self::start_tls).
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start_tls(false).unwrap();
    /// assert!(std::fs::read_to_string(redis.ca_cert()).unwrap().contains("CERTIFICATE"));
    /// ```
    pub fn ca_cert(&self) -> PathBuf {
        self.cert_file(TestCertificates::ca_cert)
    }

    /// A client certificate (PEM) signed by [`ca_cert`](Self::ca_cert).
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start_tls(true).unwrap();
    /// assert!(redis.client_cert().exists() && redis.client_key().exists());
    /// ```
    pub fn client_cert(&self) -> PathBuf {
        self.cert_file(TestCertificates::client_cert)
    }

    /// The private key (PEM, PKCS#8) of [`client_cert`](Self::client_cert).
    ///
    /// ```no_run
    /// let redis = perf_testkit::TempRedis::start_tls(true).unwrap();
    /// assert!(redis.client_key().exists());
    /// ```
    pub fn client_key(&self) -> PathBuf {
        self.cert_file(TestCertificates::client_key)
    }

    /// A file of the certificates, or a path in the server's directory that does not exist
    /// when it was started without TLS.
    fn cert_file(&self, file: fn(&TestCertificates) -> PathBuf) -> PathBuf {
        match &self.certs {
            Some(certs) => file(certs),
            None => self.dir.join("no-tls-certificates"),
        }
    }

    fn start_with(persistent: bool) -> Result<Self, TestkitError> {
        Self::start_configured(persistent, None, None)
    }

    fn start_configured(
        persistent: bool,
        mut tls: Option<Tls>,
        certs: Option<TestCertificates>,
    ) -> Result<Self, TestkitError> {
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
            tls: None,
            certs,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            redis.port = free_port()?;
            if let Some(tls) = tls.as_mut() {
                tls.port = free_port()?;
            }
            redis.tls = tls;
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
            .args(["--protected-mode", "no"]);
        if let (Some(tls), Some(certs)) = (self.tls, &self.certs) {
            let auth = if tls.require_client_cert {
                "yes"
            } else {
                "optional"
            };
            cmd.args(["--tls-port", &tls.port.to_string()])
                .args(certs.server_args())
                .args(["--tls-auth-clients", auth]);
        }
        cmd.arg("--dir")
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
