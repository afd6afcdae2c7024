//! Low-level helpers shared by the throwaway servers and by `xtask`: paths, ports, binaries,
//! reachability probes and a minimal hand-written RESP client.
//!
//! Nothing here talks to PostgreSQL's wire protocol or pulls in a client crate; the probes are a
//! plain TCP connect (PostgreSQL) and a single RESP request (Redis), which is all a test harness
//! needs to decide whether a server is there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::TestkitError;

/// The workspace root: the nearest directory holding `Cargo.lock`, searched upwards from the
/// runtime `CARGO_MANIFEST_DIR`, the current directory and finally this crate's own directory.
///
/// ```
/// let root = perf_testkit::support::workspace_root().expect("inside the perfkit workspace");
/// assert!(root.join("Cargo.lock").is_file());
/// ```
pub fn workspace_root() -> Option<PathBuf> {
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        starts.push(PathBuf::from(dir));
    }
    if let Ok(dir) = std::env::current_dir() {
        starts.push(dir);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    starts.into_iter().find_map(|start| {
        start
            .ancestors()
            .find(|dir| dir.join("Cargo.lock").is_file())
            .map(Path::to_path_buf)
    })
}

/// The cargo target directory: `CARGO_TARGET_DIR` if set, else `<workspace root>/target`,
/// else the system temporary directory.
///
/// ```
/// let target = perf_testkit::support::target_dir();
/// assert!(target.is_absolute());
/// ```
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir;
        }
        if let Some(root) = workspace_root() {
            return root.join(dir);
        }
    }
    match workspace_root() {
        Some(root) => root.join("target"),
        None => std::env::temp_dir(),
    }
}

/// Creates and returns a fresh, empty directory `target/perfkit-tmp/<unique name>`.
///
/// The caller owns the directory and removes it when done.
///
/// ```
/// let dir = perf_testkit::support::scratch_dir("doc").unwrap();
/// assert!(dir.is_dir());
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn scratch_dir(prefix: &str) -> Result<PathBuf, TestkitError> {
    let dir = target_dir()
        .join("perfkit-tmp")
        .join(crate::unique_name(prefix));
    std::fs::create_dir_all(&dir)
        .map_err(|e| TestkitError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Another process may take it before the caller binds it; the throwaway servers therefore retry
/// with a new port when the server fails to start.
///
/// ```
/// let port = perf_testkit::support::free_port().unwrap();
/// assert!(port > 0);
/// ```
pub fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the address of a bound socket", e))?
        .port();
    Ok(port)
}

/// Looks `name` up on `PATH` and returns the first executable file found.
///
/// ```
/// assert!(perf_testkit::support::find_binary("sh").is_some());
/// assert!(perf_testkit::support::find_binary("no-such-binary-perfkit").is_none());
/// ```
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The directory holding PostgreSQL's server binaries (`initdb`, `pg_ctl`, `postgres`).
///
/// Searched in this order: the directory of `pg_ctl` found on `PATH` (symlinks resolved, so a
/// `/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl` link yields the real directory),
/// then `/usr/lib/postgresql/<version>/bin` (newest first), `/usr/pgsql-<version>/bin`, and the
/// Homebrew prefixes.
///
/// ```
/// if let Some(dir) = perf_testkit::support::postgres_bin_dir() {
///     assert!(dir.join("initdb").is_file());
/// }
/// ```
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| is_executable(&dir.join(b)))
    };
    if let Some(pg_ctl) = find_binary("pg_ctl") {
        let real = std::fs::canonicalize(&pg_ctl).unwrap_or(pg_ctl);
        if let Some(dir) = real.parent().filter(|d| complete(d)) {
            return Some(dir.to_path_buf());
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
    ] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix) else {
                continue;
            };
            let major = version
                .split('.')
                .next()
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(major) = major {
                candidates.push((major, entry.path().join(suffix)));
            }
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    candidates
        .into_iter()
        .map(|(_, dir)| dir)
        .find(|dir| complete(dir))
}

/// Whether the PostgreSQL installation in `bin_dir` ships the `pg_stat_statements` library, so
/// a server can be started with `shared_preload_libraries=pg_stat_statements`.
///
/// ```
/// # use std::path::Path;
/// assert!(!perf_testkit::support::has_pg_stat_statements(Path::new("/nonexistent/bin")));
/// ```
pub fn has_pg_stat_statements(bin_dir: &Path) -> bool {
    let mut dirs = Vec::new();
    if let Some(prefix) = bin_dir.parent() {
        dirs.push(prefix.join("lib"));
        dirs.push(prefix.join("lib").join("postgresql"));
    }
    let pg_config = bin_dir.join("pg_config");
    if let Ok(out) = Command::new(&pg_config).arg("--pkglibdir").output() {
        if out.status.success() {
            dirs.push(PathBuf::from(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ));
        }
    }
    dirs.iter().any(|d| {
        d.join("pg_stat_statements.so").is_file() || d.join("pg_stat_statements.dylib").is_file()
    })
}

/// Whether this process runs with effective user id 0 (root).
///
/// PostgreSQL refuses to run as root, so the throwaway PostgreSQL then runs its binaries as the
/// `postgres` user (see [`postgres_command`]).
///
/// ```
/// let _ = perf_testkit::support::is_root();
/// ```
pub fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        // `/proc/self` is owned by the effective user of the process.
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            return meta.uid() == 0;
        }
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// A [`Command`] that runs `program` as the `postgres` user when this process is root (via
/// `runuser -u postgres --`, or `su postgres` where `runuser` is missing), and as the current
/// user otherwise. Arguments added to the returned command go to `program`.
///
/// ```
/// let mut cmd = perf_testkit::support::postgres_command("true");
/// cmd.arg("--ignored");
/// ```
pub fn postgres_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if !is_root() {
        return Command::new(program);
    }
    if let Some(runuser) = find_binary("runuser") {
        let mut cmd = Command::new(runuser);
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        // `su USER -s SHELL -c SCRIPT ARG0 ARGS...` hands ARG0 and ARGS to the script.
        let mut cmd = Command::new("su");
        cmd.args(["postgres", "-s", "/bin/sh", "-c", "exec \"$0\" \"$@\""])
            .arg(program);
        cmd
    }
}

/// Gives `path` (recursively) to the `postgres` user when this process is root; does nothing
/// otherwise.
///
/// ```no_run
/// perf_testkit::support::chown_to_postgres(std::path::Path::new("/tmp/pgdata")).unwrap();
/// ```
pub fn chown_to_postgres(path: &Path) -> Result<(), TestkitError> {
    if !is_root() {
        return Ok(());
    }
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .output()
        .map_err(|e| TestkitError::io("running chown", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TestkitError::CommandFailed {
            command: format!("chown -R postgres:postgres {}", path.display()),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Host and port of a `redis://`, `rediss://`, `postgres://` or `postgresql://` URL, with the
/// scheme's default port when the URL has none. `None` for URLs without a TCP host.
///
/// ```
/// use perf_testkit::support::host_port;
/// assert_eq!(host_port("redis://127.0.0.1:6380/0"), Some(("127.0.0.1".into(), 6380)));
/// assert_eq!(host_port("postgres://postgres@localhost/test"), Some(("localhost".into(), 5432)));
/// assert_eq!(host_port("redis://:secret@[::1]"), Some(("::1".into(), 6379)));
/// assert_eq!(host_port("not a url"), None);
/// ```
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "redis" | "rediss" => 6379,
        "postgres" | "postgresql" => 5432,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return None;
    }
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => default_port,
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

/// Replaces the password in a URL's user-info with `***`, for messages.
///
/// ```
/// use perf_testkit::support::redact_url;
/// assert_eq!(redact_url("redis://:hunter2@h:1"), "redis://:***@h:1");
/// assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Connects to `host:port` over TCP, trying every resolved address, each with `timeout`.
///
/// ```
/// use std::time::Duration;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let port = listener.local_addr().unwrap().port();
/// assert!(perf_testkit::support::tcp_connect("127.0.0.1", port, Duration::from_secs(1)).is_ok());
/// ```
pub fn tcp_connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{host}:{port} resolved to no address"),
    );
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether something accepts TCP connections at `host:port` within `timeout`.
///
/// ```
/// use std::time::Duration;
/// let port = perf_testkit::support::free_port().unwrap();
/// assert!(!perf_testkit::support::tcp_reachable("127.0.0.1", port, Duration::from_millis(200)));
/// ```
pub fn tcp_reachable(host: &str, port: u16, timeout: Duration) -> bool {
    tcp_connect(host, port, timeout).is_ok()
}

/// Sends one Redis command (as a RESP array of bulk strings) and returns the reply's first
/// line without its type byte, or the whole bulk-string payload for bulk replies.
///
/// Error replies (`-ERR ...`) come back as an `io::Error` of kind `Other`. This is deliberately
/// tiny: enough for `PING`, `INFO` and `SHUTDOWN`, not a client.
///
/// ```no_run
/// use std::time::Duration;
/// let reply = perf_testkit::support::resp_command("127.0.0.1", 6379, &["PING"], Duration::from_secs(1));
/// assert_eq!(reply.unwrap(), "PONG");
/// ```
pub fn resp_command(
    host: &str,
    port: u16,
    args: &[&str],
    timeout: Duration,
) -> std::io::Result<String> {
    let mut stream = tcp_connect(host, port, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{}\r\n", arg.len(), arg));
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let other = |msg: String| std::io::Error::other(msg);
    match line.as_bytes().first() {
        Some(b'+') | Some(b':') => Ok(line[1..].to_string()),
        Some(b'-') => Err(other(format!("redis error reply: {}", &line[1..]))),
        Some(b'$') => {
            let len: i64 = line[1..]
                .parse()
                .map_err(|_| other(format!("bad bulk length in {line:?}")))?;
            if len < 0 {
                return Ok(String::new());
            }
            let len = usize::try_from(len).map_err(|e| other(e.to_string()))?;
            let mut buf = vec![0u8; len + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Some(_) => Ok(line.to_string()),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed without a reply",
        )),
    }
}

/// Whether a Redis server at `host:port` answers `PING` with `PONG` within `timeout`.
///
/// ```
/// use std::time::Duration;
/// let port = perf_testkit::support::free_port().unwrap();
/// assert!(!perf_testkit::support::redis_ping("127.0.0.1", port, Duration::from_millis(200)));
/// ```
pub fn redis_ping(host: &str, port: u16, timeout: Duration) -> bool {
    matches!(resp_command(host, port, &["PING"], timeout), Ok(reply) if reply == "PONG")
}

/// One field of Redis `INFO <section>` (e.g. `redis_version` in section `server`).
///
/// ```no_run
/// use std::time::Duration;
/// let v = perf_testkit::support::redis_info_field("127.0.0.1", 6379, "server", "redis_version", Duration::from_secs(1));
/// println!("{v:?}");
/// ```
pub fn redis_info_field(
    host: &str,
    port: u16,
    section: &str,
    field: &str,
    timeout: Duration,
) -> Option<String> {
    let info = resp_command(host, port, &["INFO", section], timeout).ok()?;
    info.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// The last `max_lines` lines of a (log) file, or an empty string when it cannot be read.
///
/// ```
/// assert_eq!(perf_testkit::support::tail_file(std::path::Path::new("/nonexistent"), 5), "");
/// ```
pub fn tail_file(path: &Path, max_lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_handles_userinfo_and_defaults() {
        assert_eq!(
            host_port("postgres://postgres:pw@db.example:6543/test?sslmode=disable"),
            Some(("db.example".into(), 6543))
        );
        assert_eq!(host_port("rediss://h"), Some(("h".into(), 6379)));
        assert_eq!(host_port("redis://h:notaport"), None);
        assert_eq!(host_port("http://h:80"), None);
        assert_eq!(host_port("redis://"), None);
    }

    #[test]
    fn target_dir_is_inside_the_workspace() {
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            let root = workspace_root().unwrap();
            assert_eq!(target_dir(), root.join("target"));
        }
    }
}
