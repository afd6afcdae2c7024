//! `PostgresLedger`: budgets shared through PostgreSQL tables in one schema.
//!
//! Tables (created by [`PostgresLedger::connect`] if missing):
//! - `budget_lines(key text primary key, spent bigint, reserved bigint)`, nano-dollars;
//! - `budget_reservations(id text primary key, amount bigint, expires_at_ms bigint, lines text[])`;
//! - `budget_alerts(line text, threshold int, primary key (line, threshold))`.
//!
//! Every operation is one transaction that locks rows in a fixed order, so concurrent workers
//! never deadlock: first reservation rows (expired ones with `FOR UPDATE SKIP LOCKED`, so sweepers
//! never wait for each other), then line rows sorted by key (`SELECT … ORDER BY key FOR UPDATE`).
//! The check `spent + reserved + amount <= limit` runs on the locked rows, so it is atomic with
//! respect to every other process. Spend is written in the commit's transaction (no batching).
//! Serialization failures and deadlocks (which the lock order rules out, but a DBA's manual
//! session could cause) are retried.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use deadpool_postgres::{Pool, Runtime};
use tokio_postgres::NoTls;

use super::ledger::{Committed, Ledger, LineRequest, LineState, ReserveOutcome, ReserveRequest};
use crate::error::CostError;
use crate::money::Usd;

/// A [`Ledger`] on PostgreSQL (feature `postgres`).
#[derive(Clone)]
pub struct PostgresLedger {
    pool: Pool,
    schema: String,
    /// Line keys known to exist, so the insert-if-missing round trip is skipped for them.
    known: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl std::fmt::Debug for PostgresLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLedger")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> CostError {
    CostError::Ledger {
        backend: "postgres",
        reason: e.to_string(),
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Runs `$body` (which uses `$client` and returns `Result<T, tokio_postgres::Error>`) with a
/// pooled client, retrying on deadlock or serialization failure.
macro_rules! retry {
    ($self:ident, $client:ident, $body:block) => {{
        let mut attempt = 0;
        loop {
            #[allow(unused_mut)]
            let mut $client = $self.pool.get().await.map_err(err)?;
            let result: Result<_, tokio_postgres::Error> = async { $body }.await;
            match result {
                Ok(v) => break Ok(v),
                Err(e) if retryable(&e) && attempt < 8 => attempt += 1,
                Err(e) => break Err(err(e)),
            }
        }
    }};
}

impl PostgresLedger {
    /// Connects to `url` with a pool of `pool_size` connections and creates the tables in
    /// `schema` (an identifier of `[a-z0-9_]`, created if missing).
    pub async fn connect(url: &str, schema: &str, pool_size: usize) -> Result<Self, CostError> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(CostError::Config {
                field: "schema".into(),
                reason: format!("{schema:?} must be [a-z0-9_]+"),
            });
        }
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        cfg.pool = Some(deadpool_postgres::PoolConfig::new(pool_size.max(1)));
        let pool = cfg.create_pool(Some(Runtime::Tokio1), NoTls).map_err(err)?;
        let ledger = Self {
            pool,
            schema: schema.to_owned(),
            known: Default::default(),
        };
        ledger.migrate().await?;
        Ok(ledger)
    }

    async fn migrate(&self) -> Result<(), CostError> {
        let client = self.pool.get().await.map_err(err)?;
        let s = &self.schema;
        // One migrating process at a time (concurrent CREATE OR REPLACE FUNCTION fails with
        // "tuple concurrently updated"): an advisory lock keyed by the schema name.
        let lock_key = i64::from_le_bytes(
            blake3::hash(s.as_bytes()).as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        let sql = format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({lock_key});
             CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.budget_lines (
                 key text PRIMARY KEY, spent bigint NOT NULL DEFAULT 0, reserved bigint NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS {s}.budget_reservations (
                 id text PRIMARY KEY, amount bigint NOT NULL, expires_at_ms bigint NOT NULL, lines text[] NOT NULL);
             CREATE INDEX IF NOT EXISTS budget_reservations_expiry ON {s}.budget_reservations (expires_at_ms);
             CREATE TABLE IF NOT EXISTS {s}.budget_alerts (
                 line text NOT NULL, threshold int NOT NULL, PRIMARY KEY (line, threshold));
             {functions}
             COMMIT;",
            functions = functions(s)
        );
        match client.batch_execute(&sql).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                // CREATE SCHEMA raced with a process using another lock key; it exists now.
                client.batch_execute("ROLLBACK").await.map_err(err)?;
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Drops the schema and everything in it (for tests and teardown).
    pub async fn destroy(&self) -> Result<(), CostError> {
        let client = self.pool.get().await.map_err(err)?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await
            .map_err(err)
    }

    async fn ensure_lines(&self, keys: &[String]) -> Result<(), CostError> {
        {
            let known = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if keys.iter().all(|k| known.contains(k)) {
                return Ok(());
            }
        }
        let client = self.pool.get().await.map_err(err)?;
        client
            .execute(
                &format!(
                    "INSERT INTO {}.budget_lines (key) SELECT k FROM unnest($1::text[]) AS k ORDER BY k
                     ON CONFLICT DO NOTHING",
                    self.schema
                ),
                &[&keys],
            )
            .await
            .map_err(err)?;
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(keys.iter().cloned());
        Ok(())
    }
}

/// Server-side reserve and commit: one round trip each, so row locks are held only for the
/// server's own work. Lock order: expired reservations (`SKIP LOCKED`), then lines by key.
fn functions(s: &str) -> String {
    format!(
        r#"
CREATE OR REPLACE FUNCTION {s}.budget_sweep(p_now bigint, p_max int, p_keys text[])
RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
  exp_ids text[];
BEGIN
  SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO exp_ids FROM (
    SELECT id FROM {s}.budget_reservations WHERE expires_at_ms <= p_now
    ORDER BY id LIMIT p_max FOR UPDATE SKIP LOCKED) e;
  PERFORM 1 FROM {s}.budget_lines WHERE key IN (
      SELECT unnest(p_keys)
      UNION SELECT unnest(lines) FROM {s}.budget_reservations WHERE id = ANY(exp_ids))
    ORDER BY key FOR UPDATE;
  UPDATE {s}.budget_lines b SET reserved = b.reserved - d.amt
    FROM (SELECT l AS key, sum(amount)::bigint AS amt
          FROM {s}.budget_reservations, unnest(lines) AS l
          WHERE id = ANY(exp_ids) GROUP BY l) d
    WHERE b.key = d.key;
  DELETE FROM {s}.budget_reservations WHERE id = ANY(exp_ids);
  RETURN coalesce(array_length(exp_ids, 1), 0);
END $fn$;

CREATE OR REPLACE FUNCTION {s}.budget_reserve(
    p_id text, p_amount bigint, p_now bigint, p_expires bigint, p_enforce boolean,
    p_keys text[], p_limits bigint[])
RETURNS TABLE(granted boolean, idx int, spent bigint, reserved bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  i int;
  n int := coalesce(array_length(p_keys, 1), 0);
  s_arr bigint[] := '{{}}';
  r_arr bigint[] := '{{}}';
  v_s bigint;
  v_r bigint;
BEGIN
  PERFORM {s}.budget_sweep(p_now, 1000, p_keys);
  FOR i IN 1..n LOOP
    SELECT b.spent, b.reserved INTO v_s, v_r FROM {s}.budget_lines b WHERE b.key = p_keys[i];
    v_s := coalesce(v_s, 0);
    v_r := coalesce(v_r, 0);
    IF p_enforce AND v_s + v_r + p_amount > p_limits[i] THEN
      RETURN QUERY SELECT false, i, v_s, v_r;
      RETURN;
    END IF;
    s_arr := s_arr || v_s;
    r_arr := r_arr || v_r;
  END LOOP;
  UPDATE {s}.budget_lines b SET reserved = b.reserved + p_amount WHERE b.key = ANY(p_keys);
  INSERT INTO {s}.budget_reservations (id, amount, expires_at_ms, lines)
    VALUES (p_id, p_amount, p_expires, p_keys);
  RETURN QUERY SELECT true, t.i::int, t.s, t.r
    FROM unnest(s_arr, r_arr) WITH ORDINALITY AS t(s, r, i) ORDER BY t.i;
END $fn$;

CREATE OR REPLACE FUNCTION {s}.budget_commit(p_id text, p_actual bigint, p_keys text[])
RETURNS TABLE(found boolean, idx int, spent bigint, reserved bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_amount bigint;
  v_lines text[];
BEGIN
  DELETE FROM {s}.budget_reservations WHERE id = p_id RETURNING amount, lines INTO v_amount, v_lines;
  PERFORM 1 FROM {s}.budget_lines
    WHERE key IN (SELECT unnest(p_keys) UNION SELECT unnest(coalesce(v_lines, '{{}}')))
    ORDER BY key FOR UPDATE;
  IF v_amount IS NOT NULL THEN
    UPDATE {s}.budget_lines b SET reserved = b.reserved - v_amount WHERE b.key = ANY(v_lines);
  END IF;
  UPDATE {s}.budget_lines b SET spent = b.spent + p_actual WHERE b.key = ANY(p_keys);
  RETURN QUERY SELECT v_amount IS NOT NULL, k.i::int, b.spent, b.reserved
    FROM unnest(p_keys) WITH ORDINALITY AS k(key, i)
    JOIN {s}.budget_lines b ON b.key = k.key ORDER BY k.i;
END $fn$;
"#
    )
}

/// Locks `keys` in sorted order and returns their (spent, reserved).
async fn lock_lines(
    tx: &deadpool_postgres::Transaction<'_>,
    schema: &str,
    keys: &BTreeSet<String>,
) -> Result<BTreeMap<String, (i64, i64)>, tokio_postgres::Error> {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let rows = tx
        .query(
            &format!(
                "SELECT key, spent, reserved FROM {schema}.budget_lines
                 WHERE key = ANY($1) ORDER BY key FOR UPDATE"
            ),
            &[&keys],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (r.get::<_, i64>(1), r.get::<_, i64>(2)),
            )
        })
        .collect())
}

/// Applies per-line deltas of (spent, reserved) in one statement.
async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    schema: &str,
    deltas: &BTreeMap<String, (i64, i64)>,
) -> Result<(), tokio_postgres::Error> {
    let deltas: Vec<_> = deltas.iter().filter(|(_, d)| **d != (0, 0)).collect();
    if deltas.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = deltas.iter().map(|(k, _)| k.as_str()).collect();
    let ds: Vec<i64> = deltas.iter().map(|(_, d)| d.0).collect();
    let dr: Vec<i64> = deltas.iter().map(|(_, d)| d.1).collect();
    tx.execute(
        &format!(
            "UPDATE {schema}.budget_lines b SET spent = b.spent + d.ds, reserved = b.reserved + d.dr
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS d(key, ds, dr) WHERE b.key = d.key"
        ),
        &[&keys, &ds, &dr],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl Ledger for PostgresLedger {
    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveOutcome, CostError> {
        let keys: Vec<String> = request.lines.iter().map(|l| l.key.clone()).collect();
        self.ensure_lines(&keys).await?;
        let limits: Vec<i64> = request.lines.iter().map(|l| l.limit.nanos()).collect();
        let amount = request.amount.nanos();
        let sql = format!(
            "SELECT * FROM {}.budget_reserve($1, $2, $3, $4, $5, $6, $7)",
            self.schema
        );
        let rows = retry!(self, client, {
            let stmt = client.prepare_cached(&sql).await?;
            client
                .query(
                    &stmt,
                    &[
                        &request.id,
                        &amount,
                        &request.now_ms,
                        &request.expires_at_ms,
                        &request.enforce,
                        &keys,
                        &limits,
                    ],
                )
                .await
        })?;
        let state = |row: &tokio_postgres::Row| -> Result<LineState, CostError> {
            let idx: i32 = row.get(1);
            let line = usize::try_from(idx - 1)
                .ok()
                .and_then(|i| request.lines.get(i))
                .ok_or_else(|| err("budget_reserve returned a bad line index"))?;
            Ok(LineState {
                key: line.key.clone(),
                spent: Usd::from_nanos(row.get(2)),
                reserved: Usd::from_nanos(row.get(3)),
                limit: line.limit,
            })
        };
        match rows.first() {
            Some(row) if !row.get::<_, bool>(0) => {
                Ok(ReserveOutcome::Refused { seen: state(row)? })
            }
            _ => Ok(ReserveOutcome::Granted {
                seen: rows.iter().map(state).collect::<Result<_, _>>()?,
            }),
        }
    }

    async fn commit(
        &self,
        id: &str,
        lines: &[LineRequest],
        actual: Usd,
        _now_ms: i64,
    ) -> Result<Committed, CostError> {
        if lines.is_empty() {
            return Ok(Committed {
                lines: Vec::new(),
                reservation_found: self.release(id, _now_ms).await?,
            });
        }
        let keys: Vec<String> = lines.iter().map(|l| l.key.clone()).collect();
        self.ensure_lines(&keys).await?;
        let sql = format!("SELECT * FROM {}.budget_commit($1, $2, $3)", self.schema);
        let actual = actual.nanos();
        let rows = retry!(self, client, {
            let stmt = client.prepare_cached(&sql).await?;
            client.query(&stmt, &[&id, &actual, &keys]).await
        })?;
        let mut found = false;
        let mut states = Vec::with_capacity(lines.len());
        for row in &rows {
            found = row.get(0);
            let idx: i32 = row.get(1);
            let line = usize::try_from(idx - 1)
                .ok()
                .and_then(|i| lines.get(i))
                .ok_or_else(|| err("budget_commit returned a bad line index"))?;
            states.push(LineState {
                key: line.key.clone(),
                spent: Usd::from_nanos(row.get(2)),
                reserved: Usd::from_nanos(row.get(3)),
                limit: line.limit,
            });
        }
        Ok(Committed {
            lines: states,
            reservation_found: found,
        })
    }

    async fn release(&self, id: &str, _now_ms: i64) -> Result<bool, CostError> {
        let schema = self.schema.clone();
        retry!(self, client, {
            let tx = client.transaction().await?;
            let held = tx
                    .query_opt(
                        &format!(
                            "DELETE FROM {schema}.budget_reservations WHERE id = $1 RETURNING amount, lines"
                        ),
                        &[&id],
                    )
                    .await?
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<String>>(1)));
            let Some((amount, held_lines)) = held else {
                tx.commit().await?;
                return Ok(false);
            };
            let all: BTreeSet<String> = held_lines.iter().cloned().collect();
            lock_lines(&tx, &schema, &all).await?;
            let deltas: BTreeMap<String, (i64, i64)> =
                all.into_iter().map(|k| (k, (0, -amount))).collect();
            apply(&tx, &schema, &deltas).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn sweep(&self, now_ms: i64) -> Result<u64, CostError> {
        let sql = format!("SELECT {}.budget_sweep($1, 1000, '{{}}')", self.schema);
        let mut total = 0u64;
        loop {
            let row = retry!(self, client, {
                let stmt = client.prepare_cached(&sql).await?;
                client.query_one(&stmt, &[&now_ms]).await
            })?;
            let n = u64::try_from(row.get::<_, i32>(0)).unwrap_or(0);
            total += n;
            if n < 1000 {
                return Ok(total);
            }
        }
    }

    async fn mark_alert(&self, line: &str, threshold: u32) -> Result<bool, CostError> {
        let client = self.pool.get().await.map_err(err)?;
        let t = i32::try_from(threshold).unwrap_or(i32::MAX);
        let n = client
            .execute(
                &format!(
                    "INSERT INTO {}.budget_alerts (line, threshold) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    self.schema
                ),
                &[&line, &t],
            )
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn line_state(&self, key: &str) -> Result<LineState, CostError> {
        let client = self.pool.get().await.map_err(err)?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT spent, reserved FROM {}.budget_lines WHERE key = $1",
                    self.schema
                ),
                &[&key],
            )
            .await
            .map_err(err)?;
        let (s, r) = row.map_or((0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
        Ok(LineState {
            key: key.to_owned(),
            spent: Usd::from_nanos(s),
            reserved: Usd::from_nanos(r),
            limit: Usd::ZERO,
        })
    }

    async fn outstanding(&self) -> Result<u64, CostError> {
        let client = self.pool.get().await.map_err(err)?;
        let row = client
            .query_one(
                &format!("SELECT count(*) FROM {}.budget_reservations", self.schema),
                &[],
            )
            .await
            .map_err(err)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}
