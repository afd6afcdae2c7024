//! `TempPostgres`: a private, throwaway PostgreSQL cluster (`initdb` + `pg_ctl`) for fault tests
//! that crash and restart the database without disturbing the shared server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    chown_to_postgres, free_port, has_pg_stat_statements, postgres_bin_dir, postgres_command,
    scratch_dir, tail_file, tcp_reachable,
};
use crate::TestkitError;

/// How many fresh ports `start` tries when another process takes the chosen one.
const PORT_ATTEMPTS: usize = 3;
/// Seconds `pg_ctl -w` may wait for a start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// A private PostgreSQL cluster on a free port of 127.0.0.1, with trust authentication, user
/// `postgres`, `fsync=off`, no Unix socket, and `pg_stat_statements` preloaded when installed.
///
/// The data directory lives under `target/perfkit-tmp/`. When the test process runs as root,
/// the binaries run as the `postgres` user (PostgreSQL refuses root) and the directory is given
/// to that user. [`stop`](Self::stop) is an immediate shutdown (a crash: the next start runs
/// recovery); [`start_again`](Self::start_again) brings the same cluster back on the same port.
/// Dropping the value stops the server and removes the directory.
///
/// ```no_run
/// use perf_testkit::TempPostgres;
///
/// let mut pg = TempPostgres::start().unwrap();
/// let url = pg.url(); // postgres://postgres@127.0.0.1:<port>/postgres
/// pg.stop().unwrap(); // connections break
/// pg.start_again().unwrap(); // crash recovery, then accepting connections again
/// # let _ = url;
/// ```
#[derive(Debug)]
pub struct TempPostgres {
    bin_dir: PathBuf,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    running: bool,
    pg_stat_statements: bool,
}

impl TempPostgres {
    /// Creates a cluster with `initdb`, starts it with `pg_ctl` and waits until it accepts
    /// TCP connections.
    ///
    /// ```no_run
    /// let pg = perf_testkit::TempPostgres::start().unwrap();
    /// assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
    /// ```
    pub fn start() -> Result<Self, TestkitError> {
        let bin_dir = postgres_bin_dir().ok_or(TestkitError::BinaryNotFound {
            name: "initdb/pg_ctl".into(),
            hint: "apt-get install postgresql, or brew install postgresql@15",
        })?;
        let root = scratch_dir("pg")?;
        let mut pg = TempPostgres {
            pg_stat_statements: has_pg_stat_statements(&bin_dir),
            data: root.join("data"),
            log: root.join("postgres.log"),
            bin_dir,
            root,
            port: 0,
            running: false,
        };
        pg.init()?;
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            pg.port = free_port()?;
            match pg.start_again() {
                Ok(()) => return Ok(pg),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(TestkitError::NotReady {
            what: "postgres",
            port: pg.port,
            waited: Duration::ZERO,
            detail: "no attempt was made".into(),
        }))
    }

    /// Like [`start`](Self::start), but returns `None` after printing `skipped: ...` when the
    /// PostgreSQL server binaries are not installed, unless `PERFKIT_REQUIRE_SERVICES=1`.
    ///
    /// ```no_run
    /// let Some(pg) = perf_testkit::TempPostgres::start_or_skip() else { return };
    /// # let _ = pg;
    /// ```
    ///
    /// # Panics
    ///
    /// When the server cannot be started and `PERFKIT_REQUIRE_SERVICES=1`, or when it is
    /// installed but fails to start.
    pub fn start_or_skip() -> Option<Self> {
        match Self::start() {
            Ok(pg) => Some(pg),
            Err(e @ TestkitError::BinaryNotFound { .. }) if !crate::require_services() => {
                crate::services::skip_notice(&format!("needs a private PostgreSQL ({e})"));
                None
            }
            Err(e) => panic!("could not start a private PostgreSQL: {e}"),
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    ///
    /// ```no_run
    /// let pg = perf_testkit::TempPostgres::start().unwrap();
    /// assert!(pg.url().ends_with("/postgres"));
    /// ```
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port, stable across [`stop`](Self::stop) and [`start_again`](Self::start_again).
    ///
    /// ```no_run
    /// let pg = perf_testkit::TempPostgres::start().unwrap();
    /// assert!(pg.port() > 0);
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    ///
    /// ```no_run
    /// let pg = perf_testkit::TempPostgres::start().unwrap();
    /// assert!(pg.data_dir().join("PG_VERSION").exists());
    /// ```
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Whether the server was started with `shared_preload_libraries=pg_stat_statements`
    /// (true when the installation ships the library).
    ///
    /// ```no_run
    /// let pg = perf_testkit::TempPostgres::start().unwrap();
    /// println!("pg_stat_statements preloaded: {}", pg.has_pg_stat_statements());
    /// ```
    pub fn has_pg_stat_statements(&self) -> bool {
        self.pg_stat_statements
    }

    /// Whether the server is running, as far as this value knows (it was started and not
    /// stopped since).
    ///
    /// ```no_run
    /// let pg = perf_testkit::TempPostgres::start().unwrap();
    /// assert!(pg.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`): backends are killed without a
    /// checkpoint, as in a crash. Does nothing when not running.
    ///
    /// ```no_run
    /// let mut pg = perf_testkit::TempPostgres::start().unwrap();
    /// pg.stop().unwrap();
    /// assert!(!pg.is_running());
    /// ```
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D").arg(&self.data).args([
            "-m",
            "immediate",
            "-w",
            "-t",
            PG_CTL_TIMEOUT_SECS,
            "stop",
        ]);
        let out = run(&mut cmd)?;
        self.running = false;
        if out.status.success() {
            Ok(())
        } else {
            Err(failure("pg_ctl stop -m immediate", &out, &self.log))
        }
    }

    /// Starts the cluster again on the same port after [`stop`](Self::stop) and waits until it
    /// accepts TCP connections (after crash recovery).
    ///
    /// ```no_run
    /// let mut pg = perf_testkit::TempPostgres::start().unwrap();
    /// pg.stop().unwrap();
    /// pg.start_again().unwrap();
    /// ```
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        if self.running {
            return Ok(());
        }
        let started = Instant::now();
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS])
            .args(["-o", &format!("-p {}", self.port), "start"]);
        let out = run(&mut cmd)?;
        if !out.status.success() {
            return Err(TestkitError::NotReady {
                what: "postgres",
                port: self.port,
                waited: started.elapsed(),
                detail: format!(
                    "pg_ctl start failed: {}; log: {}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    tail_file(&self.log, 5)
                ),
            });
        }
        self.running = true;
        // pg_ctl -w returns once postmaster.pid says "ready"; confirm over TCP anyway.
        while !tcp_reachable("127.0.0.1", self.port, Duration::from_millis(250)) {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(TestkitError::NotReady {
                    what: "postgres",
                    port: self.port,
                    waited: started.elapsed(),
                    detail: format!("not accepting TCP; log: {}", tail_file(&self.log, 5)),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    ///
    /// ```no_run
    /// let mut pg = perf_testkit::TempPostgres::start().unwrap();
    /// pg.restart().unwrap();
    /// ```
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        self.start_again()
    }

    /// A command for one of the cluster's binaries, run as `postgres` when we are root, with the
    /// cluster's directory as working directory (the `postgres` user may not be able to read
    /// ours).
    fn pg_command(&self, name: &str) -> Command {
        let mut cmd = postgres_command(self.bin_dir.join(name));
        cmd.current_dir(&self.root)
            .stdin(Stdio::null())
            .env_remove("PGDATA")
            .env_remove("PGPORT");
        cmd
    }

    fn init(&mut self) -> Result<(), TestkitError> {
        chown_to_postgres(&self.root)?;
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D").arg(&self.data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]);
        let out = run(&mut cmd)?;
        if !out.status.success() {
            return Err(failure("initdb", &out, &self.log));
        }
        // `fsync=off` is safe for a process crash (writes still reach the OS); commits stay
        // synchronous, so a committed row survives `stop()` as it would a real crash.
        // Settings go into postgresql.conf (appending keeps the file's owner), so they survive
        // restarts; only the port is passed on the command line.
        let mut settings = String::from(
            "\n# perf-testkit\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             fsync = off\nfull_page_writes = off\n\
             max_connections = 50\nshared_buffers = 32MB\n",
        );
        if self.pg_stat_statements {
            settings.push_str("shared_preload_libraries = 'pg_stat_statements'\n");
        }
        let conf = self.data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| TestkitError::io(format!("opening {}", conf.display()), e))?;
        file.write_all(settings.as_bytes())
            .map_err(|e| TestkitError::io(format!("writing {}", conf.display()), e))?;
        Ok(())
    }
}

fn run(cmd: &mut Command) -> Result<Output, TestkitError> {
    cmd.output()
        .map_err(|e| TestkitError::io(format!("running {cmd:?}"), e))
}

fn failure(what: &str, out: &Output, log: &Path) -> TestkitError {
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let log_tail = tail_file(log, 5);
    if !log_tail.is_empty() {
        output.push_str("; log: ");
        output.push_str(&log_tail);
    }
    TestkitError::CommandFailed {
        command: what.to_string(),
        status: out.status.to_string(),
        output,
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
