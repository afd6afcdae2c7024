//! `cargo xtask services up|down|status`: find Redis and PostgreSQL, or start throwaway instances
//! that outlive xtask, and remember what was started in `target/perfkit-services/state.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perf_testkit::support::{
    chown_to_postgres, find_binary, free_port, has_pg_stat_statements, host_port, postgres_bin_dir,
    postgres_command, redact_url, redis_ping, resp_command, tail_file, target_dir, tcp_reachable,
};
use serde::{Deserialize, Serialize};

use crate::postgres;

/// What to install when no server can be found or started.
pub(crate) const INSTALL_HINT: &str = "\
install the servers, then rerun:
  Debian/Ubuntu: apt-get install redis-server postgresql postgresql-contrib postgresql-15-hypopg
  macOS:         brew install redis postgresql@15
or export REDIS_URL / DATABASE_URL pointing at running servers";

/// Set to `1` to skip discovery step 2 (servers on the default ports), e.g. to exercise the
/// throwaway-instance path on a machine that runs system servers.
const SKIP_DEFAULT_VAR: &str = "PERFKIT_SERVICES_SKIP_DEFAULT";

const PROBE: Duration = Duration::from_millis(1500);
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether `up` may start things, or only look (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Up,
    Status,
}

/// Where a working server came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Env,
    DefaultPort,
    Throwaway { reused: bool },
    Compose,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Env => "environment variable",
            Source::DefaultPort => "already running on the default port",
            Source::Throwaway { reused: true } => "throwaway instance started by xtask (reused)",
            Source::Throwaway { reused: false } => "throwaway instance started by xtask (new)",
            Source::Compose => "docker compose",
        })
    }
}

/// A reachable server.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) url: String,
    pub(crate) source: Source,
}

/// The outcome for both services; an `Err` says why a service is unavailable.
#[derive(Debug)]
pub(crate) struct Services {
    pub(crate) redis: Result<Found, String>,
    pub(crate) postgres: Result<Found, String>,
}

/// What xtask started, persisted between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    redis: Option<Throwaway>,
    postgres: Option<Throwaway>,
    /// Compose services started by `docker compose up`, e.g. `["redis"]`.
    #[serde(default)]
    compose: Vec<String>,
}

/// A throwaway server under `target/perfkit-services/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Throwaway {
    url: String,
    port: u16,
    dir: PathBuf,
    #[serde(default)]
    bin_dir: Option<PathBuf>,
}

fn services_dir() -> PathBuf {
    target_dir().join("perfkit-services")
}

fn state_path() -> PathBuf {
    services_dir().join("state.json")
}

impl State {
    fn load() -> State {
        std::fs::read_to_string(state_path())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    fn save(&self) -> Result<(), String> {
        let path = state_path();
        if self.redis.is_none() && self.postgres.is_none() && self.compose.is_empty() {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        std::fs::create_dir_all(services_dir())
            .map_err(|e| format!("creating {}: {e}", services_dir().display()))?;
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

fn skip_default() -> bool {
    std::env::var(SKIP_DEFAULT_VAR).is_ok_and(|v| v.trim() == "1")
}

fn env_url(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Finds (and in [`Mode::Up`], starts) both services. An `Err` is returned only for problems
/// with xtask's own state; an unavailable service is an `Err` inside [`Services`].
pub(crate) fn up(mode: Mode) -> Result<Services, String> {
    let mut state = State::load();
    let mut docker = None;
    let redis = find(Kind::Redis, mode, &mut state, &mut docker);
    let postgres = find(Kind::Postgres, mode, &mut state, &mut docker);
    if mode == Mode::Up {
        state.save()?;
    }
    Ok(Services { redis, postgres })
}

/// The two services xtask looks for; everything that differs between them in the discovery
/// steps is a method here, so [`find`] states the order once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redis,
    Postgres,
}

impl Kind {
    fn env_var(self) -> &'static str {
        match self {
            Kind::Redis => perf_testkit::REDIS_URL_VAR,
            Kind::Postgres => perf_testkit::DATABASE_URL_VAR,
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Kind::Redis => "redis://",
            Kind::Postgres => "postgres://",
        }
    }

    /// The service's name in docker-compose.yml.
    fn compose_name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Postgres => "postgres",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Kind::Redis => 6379,
            Kind::Postgres => 5432,
        }
    }

    fn default_url(self) -> &'static str {
        match self {
            Kind::Redis => DEFAULT_REDIS_URL,
            Kind::Postgres => DEFAULT_DATABASE_URL,
        }
    }

    /// Whether the server on `port` answers: a PING for Redis, a TCP connect for PostgreSQL.
    fn answers(self, port: u16, timeout: Duration) -> bool {
        match self {
            Kind::Redis => redis_ping("127.0.0.1", port, timeout),
            Kind::Postgres => tcp_reachable("127.0.0.1", port, timeout),
        }
    }

    /// The URL to use for the server on the default port (PostgreSQL: a database that exists,
    /// created in [`Mode::Up`]).
    fn default_port_url(self, mode: Mode) -> Result<String, String> {
        match self {
            Kind::Redis => Ok(DEFAULT_REDIS_URL.into()),
            Kind::Postgres => postgres::default_port_url(mode == Mode::Up),
        }
    }

    fn recorded(self, state: &mut State) -> &mut Option<Throwaway> {
        match self {
            Kind::Redis => &mut state.redis,
            Kind::Postgres => &mut state.postgres,
        }
    }

    /// Starts a throwaway server; `previous` is the recorded one that no longer answers
    /// (PostgreSQL restarts its data directory, Redis keeps nothing). Returns the server and
    /// whether it reused `previous`.
    fn start(self, previous: Option<&Throwaway>) -> Result<(Throwaway, bool), String> {
        match self {
            Kind::Redis => {
                let binary =
                    find_binary("redis-server").ok_or("redis-server is not on PATH".to_string())?;
                start_redis(&binary)
                    .map(|t| (t, false))
                    .map_err(|e| format!("throwaway redis-server failed: {e}"))
            }
            Kind::Postgres => {
                let bin_dir = postgres_bin_dir().ok_or(
                    "initdb/pg_ctl not found (PATH, /usr/lib/postgresql/*/bin)".to_string(),
                )?;
                start_postgres(&bin_dir, previous)
                    .map(|t| (t, previous.is_some()))
                    .map_err(|e| format!("throwaway PostgreSQL failed: {e}"))
            }
        }
    }
}

/// The discovery order: the environment, the default port, a throwaway instance (recorded, else
/// new), docker compose. Each step that fails adds its reason to the error of the last.
fn find(
    kind: Kind,
    mode: Mode,
    state: &mut State,
    docker: &mut Option<bool>,
) -> Result<Found, String> {
    let found = |url: String, source: Source| Ok(Found { url, source });
    let var = kind.env_var();
    // 1. The environment.
    if let Some(url) = env_url(var) {
        let (host, port) = host_port(&url)
            .ok_or_else(|| format!("{var}={} is not a {} URL", redact_url(&url), kind.scheme()))?;
        return if tcp_reachable(&host, port, PROBE) {
            found(url, Source::Env)
        } else {
            Err(format!(
                "{var}={} is set but nothing answers at {host}:{port}",
                redact_url(&url)
            ))
        };
    }
    let mut problems = Vec::new();
    // 2. The default port.
    if !skip_default() && kind.answers(kind.default_port(), PROBE) {
        match kind.default_port_url(mode) {
            Ok(url) => return found(url, Source::DefaultPort),
            Err(e) => problems.push(e),
        }
    }
    // 3. A throwaway instance: reuse the recorded one, else start one.
    if let Some(t) = kind.recorded(state).clone() {
        if kind.answers(t.port, PROBE) {
            return found(t.url, Source::Throwaway { reused: true });
        }
    }
    let composed = state.compose.iter().any(|s| s == kind.compose_name());
    if composed && kind.answers(kind.default_port(), PROBE) {
        return found(kind.default_url().into(), Source::Compose);
    }
    if mode == Mode::Status {
        problems.push("not running (run `cargo xtask services up`)".into());
        return Err(problems.join("; "));
    }
    let previous = kind.recorded(state).clone();
    match kind.start(previous.as_ref()) {
        Ok((t, reused)) => {
            let url = t.url.clone();
            *kind.recorded(state) = Some(t);
            return found(url, Source::Throwaway { reused });
        }
        Err(e) => problems.push(e),
    }
    // 4. Docker compose.
    let name = kind.compose_name();
    match compose_up(name, docker) {
        Ok(()) if kind.answers(kind.default_port(), Duration::from_secs(5)) => {
            if !composed {
                state.compose.push(name.into());
            }
            return found(kind.default_url().into(), Source::Compose);
        }
        Ok(()) => problems.push(format!(
            "docker compose started {name} but it does not answer"
        )),
        Err(e) => problems.push(e),
    }
    Err(problems.join("; "))
}

fn start_redis(binary: &Path) -> Result<Throwaway, String> {
    let dir = services_dir().join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let port = free_port().map_err(|e| e.to_string())?;
    let log = dir.join("redis.log");
    let status = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
        .arg("--pidfile")
        .arg(dir.join("redis.pid"))
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    if !status.success() {
        return Err(format!("exited with {status}: {}", tail_file(&log, 5)));
    }
    let started = Instant::now();
    while !redis_ping("127.0.0.1", port, Duration::from_millis(250)) {
        if started.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "no PING reply on port {port} after 15s: {}",
                tail_file(&log, 5)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Throwaway {
        url: format!("redis://127.0.0.1:{port}"),
        port,
        dir,
        bin_dir: binary.parent().map(Path::to_path_buf),
    })
}

/// Runs `pg_ctl`-family binaries as `postgres` when we are root, from a directory that user can
/// read.
fn pg_command(bin_dir: &Path, name: &str, cwd: &Path) -> Command {
    let mut cmd = postgres_command(bin_dir.join(name));
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .env_remove("PGDATA")
        .env_remove("PGPORT");
    cmd
}

fn start_postgres(bin_dir: &Path, previous: Option<&Throwaway>) -> Result<Throwaway, String> {
    let dir = services_dir().join("postgres");
    let data = dir.join("data");
    let log = dir.join("postgres.log");
    let bin_dir = previous
        .and_then(|p| p.bin_dir.clone())
        .filter(|b| b.join("pg_ctl").is_file())
        .unwrap_or_else(|| bin_dir.to_path_buf());
    if !data.join("PG_VERSION").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        chown_to_postgres(&dir).map_err(|e| e.to_string())?;
        eprintln!("xtask: initdb {}", data.display());
        let out = pg_command(&bin_dir, "initdb", &dir)
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut conf = String::from(
            "\n# cargo xtask services\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\nfsync = off\nfull_page_writes = off\n",
        );
        if has_pg_stat_statements(&bin_dir) {
            conf.push_str("shared_preload_libraries = 'pg_stat_statements'\n");
        }
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        text.push_str(&conf);
        // Rewriting in place keeps the file's owner.
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    // Prefer the recorded port so URLs stay stable across reboots; take a new one if it is busy.
    let mut ports = Vec::new();
    if let Some(p) = previous {
        if !tcp_reachable("127.0.0.1", p.port, Duration::from_millis(300)) {
            ports.push(p.port);
        }
    }
    for _ in 0..3 {
        ports.push(free_port().map_err(|e| e.to_string())?);
    }
    let mut last = String::new();
    for port in ports {
        let out = pg_command(&bin_dir, "pg_ctl", &dir)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"])
            // pg_ctl's postmaster keeps stdout open; do not wait on a pipe it holds.
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running pg_ctl: {e}"))?;
        if !out.status.success() {
            last = format!(
                "pg_ctl start on port {port} failed: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail_file(&log, 3)
            );
            continue;
        }
        let base = format!("postgres://postgres@127.0.0.1:{port}");
        postgres::ensure_database(&bin_dir, &format!("{base}/postgres"), "test")?;
        return Ok(Throwaway {
            url: format!("{base}/test"),
            port,
            dir,
            bin_dir: Some(bin_dir),
        });
    }
    Err(last)
}

/// `docker compose up -d --wait SERVICE`, when a Docker engine answers.
fn compose_up(service: &str, docker: &mut Option<bool>) -> Result<(), String> {
    if find_binary("docker").is_none() {
        return Err("docker is not installed".into());
    }
    // Ask `docker info` once per run: it can take seconds to time out.
    let engine = *docker.get_or_insert_with(|| {
        Command::new("docker")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !engine {
        return Err("docker is installed but no engine answers `docker info`".into());
    }
    let file = crate::workspace_root().join("docker-compose.yml");
    eprintln!(
        "xtask: $ docker compose -f {} up -d --wait {service}",
        file.display()
    );
    let status = Command::new("docker")
        .args(["compose", "-f"])
        .arg(&file)
        .args(["up", "-d", "--wait", service])
        .status()
        .map_err(|e| format!("running docker compose: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("docker compose up {service} failed ({status})"))
    }
}

fn print_found(name: &str, found: &Result<Found, String>) {
    match found {
        Ok(f) => eprintln!("{name:<11} {} ({})", redact_url(&f.url), f.source),
        Err(e) => eprintln!("{name:<11} unavailable: {e}"),
    }
}

/// Finds or starts both services, prints where each came from, and creates the PostgreSQL
/// extensions; used by `services up`, `test` and `bench`.
pub(crate) fn up_and_report() -> Result<Services, String> {
    let services = up(Mode::Up)?;
    print_found("Redis:", &services.redis);
    print_found("PostgreSQL:", &services.postgres);
    if let Ok(pg) = &services.postgres {
        for line in postgres::create_extensions(&pg.url) {
            eprintln!("  {line}");
        }
    }
    Ok(services)
}

/// `cargo xtask services up`.
pub(crate) fn up_command() -> Result<(), String> {
    let services = up_and_report()?;
    match (&services.redis, &services.postgres) {
        (Ok(r), Ok(p)) => {
            println!("{}={}", perf_testkit::REDIS_URL_VAR, r.url);
            println!("{}={}", perf_testkit::DATABASE_URL_VAR, p.url);
            Ok(())
        }
        _ => Err(format!("not every service is available\n{INSTALL_HINT}")),
    }
}

/// `cargo xtask services status`.
pub(crate) fn status_command() -> Result<(), String> {
    let services = up(Mode::Status)?;
    print_found("Redis:", &services.redis);
    print_found("PostgreSQL:", &services.postgres);
    if let Ok(pg) = &services.postgres {
        for line in postgres::extension_report(&pg.url) {
            eprintln!("  {line}");
        }
    }
    let state = State::load();
    let started: Vec<String> = state
        .redis
        .iter()
        .map(|t| format!("redis-server on port {} ({})", t.port, t.dir.display()))
        .chain(
            state
                .postgres
                .iter()
                .map(|t| format!("PostgreSQL on port {} ({})", t.port, t.dir.display())),
        )
        .chain(state.compose.iter().map(|s| format!("compose service {s}")))
        .collect();
    if started.is_empty() {
        eprintln!("started by xtask: nothing");
    } else {
        eprintln!("started by xtask: {}", started.join(", "));
    }
    if let (Ok(r), Ok(p)) = (&services.redis, &services.postgres) {
        println!("{}={}", perf_testkit::REDIS_URL_VAR, r.url);
        println!("{}={}", perf_testkit::DATABASE_URL_VAR, p.url);
        Ok(())
    } else {
        Err("a service is unavailable".into())
    }
}

/// `cargo xtask services down`: stops only what xtask started.
pub(crate) fn down_command() -> Result<(), String> {
    let mut state = State::load();
    let mut problems = Vec::new();
    if let Some(t) = state.redis.take() {
        match stop_redis(&t) {
            Ok(()) => eprintln!("stopped throwaway redis-server on port {}", t.port),
            Err(e) => {
                problems.push(e);
                state.redis = Some(t);
            }
        }
    }
    if let Some(t) = state.postgres.take() {
        match stop_postgres(&t) {
            Ok(()) => eprintln!("stopped throwaway PostgreSQL on port {}", t.port),
            Err(e) => {
                problems.push(e);
                state.postgres = Some(t);
            }
        }
    }
    if !state.compose.is_empty() {
        let file = crate::workspace_root().join("docker-compose.yml");
        let status = Command::new("docker")
            .args(["compose", "-f"])
            .arg(&file)
            .arg("down")
            .status();
        match status {
            Ok(s) if s.success() => {
                eprintln!("stopped compose services: {}", state.compose.join(", "));
                state.compose.clear();
            }
            Ok(s) => problems.push(format!("docker compose down failed ({s})")),
            Err(e) => problems.push(format!("running docker compose down: {e}")),
        }
    }
    state.save()?;
    eprintln!("servers xtask did not start (environment, default ports) are left alone");
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn stop_redis(t: &Throwaway) -> Result<(), String> {
    if redis_ping("127.0.0.1", t.port, PROBE) {
        // The connection closes without a reply when the shutdown works.
        let _ = resp_command("127.0.0.1", t.port, &["SHUTDOWN", "NOSAVE"], PROBE);
    }
    let started = Instant::now();
    while tcp_reachable("127.0.0.1", t.port, Duration::from_millis(200)) {
        if started.elapsed() > Duration::from_secs(10) {
            // Fall back to the pid file.
            let pid = std::fs::read_to_string(t.dir.join("redis.pid")).unwrap_or_default();
            let pid = pid.trim();
            if !pid.is_empty() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            if tcp_reachable("127.0.0.1", t.port, Duration::from_millis(200)) {
                return Err(format!("redis-server on port {} does not stop", t.port));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&t.dir);
    Ok(())
}

fn stop_postgres(t: &Throwaway) -> Result<(), String> {
    let data = t.dir.join("data");
    if data.join("postmaster.pid").exists() {
        let bin_dir = t
            .bin_dir
            .clone()
            .or_else(postgres_bin_dir)
            .ok_or("pg_ctl not found")?;
        let out = pg_command(&bin_dir, "pg_ctl", &t.dir)
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .map_err(|e| format!("running pg_ctl stop: {e}"))?;
        if !out.status.success() && data.join("postmaster.pid").exists() {
            return Err(format!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    std::fs::remove_dir_all(&t.dir).map_err(|e| format!("removing {}: {e}", t.dir.display()))
}
