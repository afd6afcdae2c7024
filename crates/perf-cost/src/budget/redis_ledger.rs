//! `RedisLedger`: budgets shared by every process that uses the same Redis and prefix.
//!
//! All keys carry the hash tag `{prefix}` (one cluster slot):
//! - `{p}:l:<line>`: hash `s` (spent) and `r` (reserved), integer nano-dollars;
//! - `{p}:r:<id>`: hash `a` (amount), `l` (line keys joined by newlines);
//! - `{p}:exp`: sorted set of reservation ids by expiry (ms since the Unix epoch);
//! - `{p}:a:<line>:<threshold>`: set once when an alert fired (`SET NX`), so it fires once
//!   fleet-wide; kept 40 days for calendar periods.
//!
//! Durability is the server's: run Redis with AOF (`appendonly yes`, `appendfsync everysec` or
//! `always`) when budgets must survive a Redis crash; without persistence a restart forgets spend.
//! While Redis is unreachable every call fails with [`CostError::Ledger`] (never a silent grant);
//! the connection manager reconnects on its own.
//!
//! Reserve, commit and release are single Lua scripts, so the check over all lines and the
//! update are atomic with respect to every other client. Each script first releases up to 1000
//! expired reservations. Spend is written at commit time (no batching), so every process sees it
//! at once. Amounts are passed to `HINCRBY` as the decimal strings the client sent (never
//! re-formatted by Lua), and compared as Lua doubles: exact up to 2^53 nano-dollars (about
//! $9 million) per line.

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::ledger::{Committed, Ledger, LineRequest, LineState, ReserveOutcome, ReserveRequest};
use crate::error::CostError;
use crate::money::Usd;

const LIB: &str = r#"
local P = ARGV[1]
local function release(id)
  local rk = P .. ':r:' .. id
  local a = redis.call('HGET', rk, 'a')
  redis.call('ZREM', P .. ':exp', id)
  if not a then return 0 end
  local lines = redis.call('HGET', rk, 'l') or ''
  if a ~= '0' then
    for line in string.gmatch(lines, '[^\n]+') do
      redis.call('HINCRBY', P .. ':l:' .. line, 'r', '-' .. a)
    end
  end
  redis.call('DEL', rk)
  return 1
end
local function sweep(now, max)
  local ids = redis.call('ZRANGEBYSCORE', P .. ':exp', '-inf', now, 'LIMIT', 0, max)
  local n = 0
  for _, id in ipairs(ids) do n = n + release(id) end
  return n
end
local function state(line)
  local v = redis.call('HMGET', P .. ':l:' .. line, 's', 'r')
  return tonumber(v[1] or '0'), tonumber(v[2] or '0')
end
"#;

/// ARGV: prefix, id, amount, now, expires, enforce, n, then n pairs (line, limit).
/// Returns {1, s1, r1, ...} (states before) or {0, index, s, r}.
const RESERVE: &str = r#"
sweep(tonumber(ARGV[4]), 1000)
local id, amount, expires, enforce, n = ARGV[2], tonumber(ARGV[3]), ARGV[5], ARGV[6] == '1', tonumber(ARGV[7])
local out = {1}
for i = 1, n do
  local line, limit = ARGV[6 + 2 * i], tonumber(ARGV[7 + 2 * i])
  local s, r = state(line)
  if enforce and s + r + amount > limit then
    return {0, i, s, r}
  end
  table.insert(out, s)
  table.insert(out, r)
end
local names = {}
for i = 1, n do
  local line = ARGV[6 + 2 * i]
  redis.call('HINCRBY', P .. ':l:' .. line, 'r', ARGV[3])
  table.insert(names, line)
end
redis.call('HSET', P .. ':r:' .. id, 'a', amount, 'l', table.concat(names, '\n'))
redis.call('ZADD', P .. ':exp', expires, id)
return out
"#;

/// ARGV: prefix, id, actual, now, n, lines... Returns {found, s1, r1, ...} after.
const COMMIT: &str = r#"
local found = release(ARGV[2])
sweep(tonumber(ARGV[4]), 1000)
local out = {found}
for i = 1, tonumber(ARGV[5]) do
  local line = ARGV[5 + i]
  redis.call('HINCRBY', P .. ':l:' .. line, 's', ARGV[3])
  local s, r = state(line)
  table.insert(out, s)
  table.insert(out, r)
end
return out
"#;

/// ARGV: prefix, id, now. Returns 1 if the reservation existed.
const RELEASE: &str = r#"
local found = release(ARGV[2])
sweep(tonumber(ARGV[3]), 1000)
return found
"#;

/// ARGV: prefix, id, expires. Returns 1 if the reservation exists (its expiry moved), else 0.
const EXTEND: &str = r#"
if redis.call('EXISTS', P .. ':r:' .. ARGV[2]) == 0 then return 0 end
redis.call('ZADD', P .. ':exp', ARGV[3], ARGV[2])
return 1
"#;

/// ARGV: prefix, now. Returns the number released.
const SWEEP: &str = r#"
return sweep(tonumber(ARGV[2]), 100000)
"#;

/// A [`Ledger`] on Redis (feature `redis`).
#[derive(Clone)]
pub struct RedisLedger {
    conn: ConnectionManager,
    prefix: String,
    reserve: redis::Script,
    commit: redis::Script,
    release: redis::Script,
    extend: redis::Script,
    sweep: redis::Script,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(e: redis::RedisError) -> CostError {
    CostError::Ledger {
        backend: "redis",
        reason: e.to_string(),
    }
}

impl RedisLedger {
    /// Connects to `url` (a reconnecting connection manager); keys live under `{prefix}:`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CostError> {
        let client = redis::Client::open(url).map_err(err)?;
        let conn = ConnectionManager::new(client).await.map_err(err)?;
        Ok(Self::with_connection(conn, prefix))
    }

    /// Uses an existing connection manager.
    pub fn with_connection(conn: ConnectionManager, prefix: &str) -> Self {
        let script = |body: &str| redis::Script::new(&format!("{LIB}\n{body}"));
        Self {
            conn,
            prefix: format!("{{{prefix}}}"),
            reserve: script(RESERVE),
            commit: script(COMMIT),
            release: script(RELEASE),
            extend: script(EXTEND),
            sweep: script(SWEEP),
        }
    }

    /// Runs a script with ARGV (prefix, reservation id, `arg`) that answers 1 when the
    /// reservation existed.
    async fn run_on_reservation(
        &self,
        script: &redis::Script,
        id: &str,
        arg: i64,
    ) -> Result<bool, CostError> {
        let mut conn = self.conn.clone();
        let found: i64 = script
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(id)
            .arg(arg)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(found == 1)
    }

    /// Deletes every key of this ledger (for tests and teardown).
    pub async fn destroy(&self) -> Result<u64, CostError> {
        let mut conn = self.conn.clone();
        let pattern = format!(
            "{}:*",
            self.prefix
                .replace('[', "\\[")
                .replace('*', "\\*")
                .replace('?', "\\?")
        );
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let mut n = 0;
        for chunk in keys.chunks(500) {
            let d: u64 = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            n += d;
        }
        Ok(n)
    }
}

fn states(keys: &[LineRequest], flat: &[i64]) -> Vec<LineState> {
    keys.iter()
        .zip(flat.chunks(2))
        .map(|(l, sr)| LineState {
            key: l.key.clone(),
            spent: Usd::from_nanos(sr.first().copied().unwrap_or(0)),
            reserved: Usd::from_nanos(sr.get(1).copied().unwrap_or(0)),
            limit: l.limit,
        })
        .collect()
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveOutcome, CostError> {
        let mut conn = self.conn.clone();
        let mut inv = self.reserve.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(&request.id)
            .arg(request.amount.nanos())
            .arg(request.now_ms)
            .arg(request.expires_at_ms)
            .arg(if request.enforce { "1" } else { "0" })
            .arg(request.lines.len());
        for line in &request.lines {
            inv.arg(&line.key).arg(line.limit.nanos());
        }
        let out: Vec<i64> = inv.invoke_async(&mut conn).await.map_err(err)?;
        match out.first() {
            Some(1) => Ok(ReserveOutcome::Granted {
                seen: states(&request.lines, &out[1..]),
            }),
            Some(0) if out.len() == 4 => {
                let idx = usize::try_from(out[1] - 1).unwrap_or(0);
                let line = request.lines.get(idx).ok_or_else(|| CostError::Ledger {
                    backend: "redis",
                    reason: "reserve script returned a bad line index".into(),
                })?;
                Ok(ReserveOutcome::Refused {
                    seen: LineState {
                        key: line.key.clone(),
                        spent: Usd::from_nanos(out[2]),
                        reserved: Usd::from_nanos(out[3]),
                        limit: line.limit,
                    },
                })
            }
            _ => Err(CostError::Ledger {
                backend: "redis",
                reason: format!("unexpected reserve reply of {} values", out.len()),
            }),
        }
    }

    async fn commit(
        &self,
        id: &str,
        lines: &[LineRequest],
        actual: Usd,
        now_ms: i64,
    ) -> Result<Committed, CostError> {
        let mut conn = self.conn.clone();
        let mut inv = self.commit.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id)
            .arg(actual.nanos())
            .arg(now_ms)
            .arg(lines.len());
        for line in lines {
            inv.arg(&line.key);
        }
        let out: Vec<i64> = inv.invoke_async(&mut conn).await.map_err(err)?;
        Ok(Committed {
            reservation_found: out.first() == Some(&1),
            lines: states(lines, out.get(1..).unwrap_or(&[])),
        })
    }

    async fn release(&self, id: &str, now_ms: i64) -> Result<bool, CostError> {
        self.run_on_reservation(&self.release, id, now_ms).await
    }

    async fn extend(&self, id: &str, expires_at_ms: i64) -> Result<bool, CostError> {
        self.run_on_reservation(&self.extend, id, expires_at_ms)
            .await
    }

    async fn sweep(&self, now_ms: i64) -> Result<u64, CostError> {
        let mut conn = self.conn.clone();
        let n: u64 = self
            .sweep
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(n)
    }

    async fn mark_alert(&self, line: &str, threshold: u32) -> Result<bool, CostError> {
        let mut conn = self.conn.clone();
        let key = format!("{}:a:{line}:{threshold}", self.prefix);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg("1").arg("NX");
        if !line.ends_with("|total") {
            cmd.arg("EX").arg(40 * 86_400);
        }
        let set: Option<String> = cmd.query_async(&mut conn).await.map_err(err)?;
        Ok(set.is_some())
    }

    async fn line_state(&self, key: &str) -> Result<LineState, CostError> {
        let mut conn = self.conn.clone();
        let (s, r): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(format!("{}:l:{key}", self.prefix))
            .arg("s")
            .arg("r")
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(LineState {
            key: key.to_owned(),
            spent: Usd::from_nanos(s.unwrap_or(0)),
            reserved: Usd::from_nanos(r.unwrap_or(0)),
            limit: Usd::ZERO,
        })
    }

    async fn outstanding(&self) -> Result<u64, CostError> {
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("ZCARD")
            .arg(format!("{}:exp", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(n)
    }
}
