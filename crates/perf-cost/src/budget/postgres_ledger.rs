//! `PostgresLedger`: budgets shared through PostgreSQL tables in one schema.
//!
//! Tables (created by [`PostgresLedger::connect`] if missing):
//! - `budget_lines(key text primary key, spent bigint, reserved bigint)`, nano-dollars;
//! - `budget_reservations(id text primary key, amount bigint, expires_at_ms bigint, lines text[])`;
//! - `budget_alerts(line text, threshold int, primary key (line, threshold))`.
//!
//! Reserves and commits are *group-committed*: the operations a process issues while its previous
//! batch is in flight are sent together as one call of the server-side function `budget_batch`,
//! one transaction and one WAL flush for all of them (see [`Batcher`]). Each call still returns
//! only after its transaction committed, so spend is visible to every process as soon as
//! `commit` returns, and nothing is delayed to wait for a batch to fill. Within a batch, commits
//! are applied before reservations are checked (the calls are concurrent, so that is one of
//! their valid serial orders).
//!
//! Every transaction locks rows in a fixed order, so concurrent workers never deadlock: first reservation rows (expired ones with `FOR UPDATE SKIP LOCKED`, so sweepers
//! never wait for each other), then line rows sorted by key (`SELECT … ORDER BY key FOR UPDATE`).
//! The check `spent + reserved + amount <= limit` runs on the locked rows, so it is atomic with
//! respect to every other process. Spend is written in the commit's transaction (no batching).
//! Serialization failures and deadlocks (which the lock order rules out, but a DBA's manual
//! session could cause) are retried.
//!
//! Throughput is bounded by the WAL flush of each transaction's commit, not by the ledger's SQL:
//! reserve and commit are one round trip each, but a durable commit waits for the disk (about
//! 5 ms on the benchmark machine, where even a one-row `UPDATE` runs at about 180 transactions/s),
//! and the row lock on a shared line (the global budget) is held until that flush ends.
//! [`PostgresLedgerOptions::synchronous_commit`] trades that durability for throughput.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use deadpool_postgres::{Pool, Runtime};
use tokio_postgres::NoTls;

use super::ledger::{Committed, Ledger, LineRequest, LineState, ReserveOutcome, ReserveRequest};
use crate::error::CostError;
use crate::money::Usd;

/// Options of a [`PostgresLedger`] connection.
///
/// ```
/// use perf_cost::PostgresLedgerOptions;
/// let o = PostgresLedgerOptions::default().pool_size(16).synchronous_commit(false);
/// assert_eq!((o.pool_size, o.synchronous_commit), (16, false));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresLedgerOptions {
    /// Connections in the pool (default 8).
    pub pool_size: usize,
    /// Whether every reserve, commit and release waits for PostgreSQL to flush its WAL to disk
    /// before returning (default `true`, PostgreSQL's own default).
    ///
    /// `false` sets `synchronous_commit = off` on the ledger's sessions: each operation returns
    /// (and releases its row locks) without waiting for the disk, which is what limits a durable
    /// ledger to a few hundred operations per second on one hot budget line. Visibility and
    /// atomicity are unchanged (other processes see a commit at once; no check can be passed
    /// twice), and a *server* crash never leaves the tables inconsistent, but it can lose the
    /// ledger writes of its last moments (up to three times `wal_writer_delay`, 0.6 s by
    /// default): recorded spend can be lost, letting later calls spend it again. Worker crashes
    /// lose nothing either way.
    pub synchronous_commit: bool,
}

impl Default for PostgresLedgerOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            synchronous_commit: true,
        }
    }
}

impl PostgresLedgerOptions {
    /// Sets the pool size.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// Sets whether operations wait for the WAL flush (see the field).
    pub fn synchronous_commit(mut self, on: bool) -> Self {
        self.synchronous_commit = on;
        self
    }
}

/// A [`Ledger`] on PostgreSQL (feature `postgres`).
#[derive(Clone)]
pub struct PostgresLedger {
    pool: Pool,
    schema: String,
    /// Reserve and commit operations, combined into one transaction per batch.
    batcher: Batcher,
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
    /// `schema` (an identifier of `[a-z0-9_]`, created if missing). Operations are durable
    /// (see [`PostgresLedgerOptions`]).
    pub async fn connect(url: &str, schema: &str, pool_size: usize) -> Result<Self, CostError> {
        Self::connect_with(
            url,
            schema,
            PostgresLedgerOptions::default().pool_size(pool_size),
        )
        .await
    }

    /// Connects with explicit [`PostgresLedgerOptions`].
    pub async fn connect_with(
        url: &str,
        schema: &str,
        options: PostgresLedgerOptions,
    ) -> Result<Self, CostError> {
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
        let mut pg: tokio_postgres::Config = url.parse().map_err(err)?;
        if !options.synchronous_commit {
            // Appended to the URL's own startup options, if any.
            let startup = match pg.get_options() {
                Some(o) if !o.trim().is_empty() => format!("{o} -c synchronous_commit=off"),
                _ => "-c synchronous_commit=off".to_owned(),
            };
            pg.options(&startup);
        }
        let manager = deadpool_postgres::Manager::from_config(
            pg,
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(err)?;
        let ledger = Self {
            batcher: Batcher::start(pool.clone(), schema, options.pool_size.clamp(1, 2)),
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

/// Server-side sweep and batch of reserves and commits: one round trip each, so row locks are held
/// only for the server's own work. Lock order: reservations (expired ones `SKIP LOCKED`), then
/// lines by key.
fn functions(s: &str) -> String {
    format!(
        r#"
CREATE OR REPLACE FUNCTION {s}.budget_free(p_ids text[], p_keys text[])
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  -- p_ids: reservation rows this transaction has locked. Locks the lines (p_keys and the
  -- reservations' lines) by key, gives the reservations' amounts back, deletes them.
  PERFORM 1 FROM {s}.budget_lines WHERE key IN (
      SELECT unnest(p_keys)
      UNION SELECT unnest(lines) FROM {s}.budget_reservations WHERE id = ANY(p_ids))
    ORDER BY key FOR UPDATE;
  UPDATE {s}.budget_lines b SET reserved = b.reserved - d.amt
    FROM (SELECT l AS key, sum(amount)::bigint AS amt
          FROM {s}.budget_reservations, unnest(lines) AS l
          WHERE id = ANY(p_ids) GROUP BY l) d
    WHERE b.key = d.key;
  DELETE FROM {s}.budget_reservations WHERE id = ANY(p_ids);
END $fn$;

CREATE OR REPLACE FUNCTION {s}.budget_sweep(p_now bigint, p_max int, p_keys text[])
RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
  exp_ids text[];
BEGIN
  SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO exp_ids FROM (
    SELECT id FROM {s}.budget_reservations WHERE expires_at_ms <= p_now
    ORDER BY id LIMIT p_max FOR UPDATE SKIP LOCKED) e;
  PERFORM {s}.budget_free(exp_ids, p_keys);
  RETURN coalesce(array_length(exp_ids, 1), 0);
END $fn$;

CREATE OR REPLACE FUNCTION {s}.budget_batch(
    p_now bigint, p_kind int[], p_id text[], p_amount bigint[], p_expires bigint[],
    p_enforce boolean[], p_nkeys int[], p_keys text[], p_limits bigint[])
RETURNS TABLE(op int, ok boolean, idx int, spent bigint, reserved bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  n int := coalesce(array_length(p_kind, 1), 0);
  starts int[] := '{{}}';
  commit_ids text[] := '{{}}';
  held_ids text[] := '{{}}';
  exp_ids text[];
  released text[];
  pass int;
  j int;
  k int;
  off int := 0;
  keys text[];
  lims bigint[];
  s_arr bigint[];
  r_arr bigint[];
  v_s bigint;
  v_r bigint;
  refused boolean;
BEGIN
  FOR j IN 1..n LOOP
    starts := starts || off;
    off := off + p_nkeys[j];
    IF p_kind[j] = 1 THEN
      commit_ids := commit_ids || p_id[j];
    END IF;
  END LOOP;
  -- Lock order, as everywhere: reservation rows, then line rows by key. The commits' own
  -- reservations first (only their owner and sweepers touch them), then expired ones that no
  -- other transaction holds. Steps with nothing to do are skipped (each statement costs).
  IF cardinality(commit_ids) > 0 THEN
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO held_ids FROM (
      SELECT id FROM {s}.budget_reservations WHERE id = ANY(commit_ids) ORDER BY id FOR UPDATE) h;
  END IF;
  SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO exp_ids FROM (
    SELECT id FROM {s}.budget_reservations
    WHERE expires_at_ms <= p_now AND NOT (id = ANY(held_ids))
    ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED) e;
  released := held_ids || exp_ids;
  IF cardinality(released) = 0 THEN
    PERFORM 1 FROM {s}.budget_lines WHERE key = ANY(p_keys) ORDER BY key FOR UPDATE;
  ELSE
    PERFORM {s}.budget_free(released, p_keys);
  END IF;
  -- Commits first, then reservations: the calls of one batch are concurrent, so this is one of
  -- their valid serial orders, and every check below sees the spend committed in the batch
  -- together with the release of its reservation.
  FOR pass IN 1..2 LOOP
    FOR j IN 1..n LOOP
      CONTINUE WHEN (pass = 1) <> (p_kind[j] = 1);
      keys := p_keys[starts[j] + 1 : starts[j] + p_nkeys[j]];
      lims := p_limits[starts[j] + 1 : starts[j] + p_nkeys[j]];
      IF p_kind[j] = 1 THEN
        UPDATE {s}.budget_lines b SET spent = b.spent + p_amount[j] WHERE b.key = ANY(keys);
        RETURN QUERY SELECT j, p_id[j] = ANY(held_ids), t.i::int, b.spent, b.reserved
          FROM unnest(keys) WITH ORDINALITY AS t(key, i)
          JOIN {s}.budget_lines b ON b.key = t.key ORDER BY t.i;
      ELSE
        refused := false;
        s_arr := '{{}}';
        r_arr := '{{}}';
        FOR k IN 1..p_nkeys[j] LOOP
          SELECT b.spent, b.reserved INTO v_s, v_r FROM {s}.budget_lines b WHERE b.key = keys[k];
          v_s := coalesce(v_s, 0);
          v_r := coalesce(v_r, 0);
          IF p_enforce[j] AND v_s + v_r + p_amount[j] > lims[k] THEN
            RETURN QUERY SELECT j, false, k, v_s, v_r;
            refused := true;
            EXIT;
          END IF;
          s_arr := s_arr || v_s;
          r_arr := r_arr || v_r;
        END LOOP;
        IF NOT refused THEN
          UPDATE {s}.budget_lines b SET reserved = b.reserved + p_amount[j] WHERE b.key = ANY(keys);
          INSERT INTO {s}.budget_reservations (id, amount, expires_at_ms, lines)
            VALUES (p_id[j], p_amount[j], p_expires[j], keys);
          RETURN QUERY SELECT j, true, t.i::int, t.s, t.r
            FROM unnest(s_arr, r_arr) WITH ORDINALITY AS t(s, r, i) ORDER BY t.i;
        END IF;
      END IF;
    END LOOP;
  END LOOP;
END $fn$;
"#
    )
}

/// One reserve or commit waiting for its batch.
#[derive(Debug)]
struct Op {
    commit: bool,
    id: String,
    /// Amount to reserve, or the actual spend to commit.
    amount: i64,
    expires_at_ms: i64,
    enforce: bool,
    keys: Vec<String>,
    limits: Vec<i64>,
    now_ms: i64,
}

/// One result row of an operation: for a reservation, granted (with every line as seen) or
/// refused (one row, the line without room); for a commit, whether the reservation was held,
/// with every line after the commit.
#[derive(Debug, Clone, Copy)]
struct OpRow {
    ok: bool,
    /// 1-based index into the operation's lines.
    idx: i32,
    spent: i64,
    reserved: i64,
}

type Reply = tokio::sync::oneshot::Sender<Result<Vec<OpRow>, String>>;

/// Most operations per batch (bounds the statement's arrays and the transaction's length).
const MAX_BATCH: usize = 256;

/// Group commit: operations are queued to a few flusher tasks, each of which takes everything
/// queued (up to [`MAX_BATCH`]) and runs it as one `budget_batch` call.
///
/// A durable commit waits for the WAL flush (milliseconds) while holding the row lock of every
/// line it touched, so a hot line (the global budget) allows one transaction per flush whatever
/// the pool size. Batching puts all operations that arrive during one flush into the next
/// transaction. A lone operation goes out at once (no waiting for company). The flushers are
/// Tokio tasks spawned by [`PostgresLedger::connect`] on the current runtime; they stop when the
/// last clone of the ledger is dropped. An operation whose caller stops waiting still completes.
#[derive(Clone)]
struct Batcher {
    queue: tokio::sync::mpsc::UnboundedSender<(Op, Reply)>,
}

impl Batcher {
    fn start(pool: Pool, schema: &str, flushers: usize) -> Self {
        let (queue, rx) = tokio::sync::mpsc::unbounded_channel();
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let sql =
            format!("SELECT * FROM {schema}.budget_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)");
        for _ in 0..flushers {
            tokio::spawn(flush_loop(pool.clone(), sql.clone(), rx.clone()));
        }
        Self { queue }
    }

    async fn submit(&self, op: Op) -> Result<Vec<OpRow>, CostError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue
            .send((op, reply))
            .map_err(|_| err("the ledger's batch tasks stopped (their runtime shut down)"))?;
        answer
            .await
            .map_err(|_| err("the ledger's batch task stopped before answering"))?
            .map_err(err)
    }
}

async fn flush_loop(
    pool: Pool,
    sql: String,
    rx: std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(Op, Reply)>>>,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return; // every ledger handle is gone
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.into_iter().unzip();
        let results = match run_batch(&pool, &sql, &ops).await {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            // The server refused the statement, so the whole transaction rolled back: run the
            // operations one by one, so that one bad operation (a reused reservation id given
            // to `Ledger::reserve` directly) fails alone. Other errors (connection lost) may have
            // come after the server committed, so nothing is re-run: every caller gets the error.
            Err(BatchError::Rejected(_)) if ops.len() > 1 => {
                let mut each = Vec::with_capacity(ops.len());
                for op in &ops {
                    each.push(
                        run_batch(&pool, &sql, std::slice::from_ref(op))
                            .await
                            .map(|mut rows| rows.pop().unwrap_or_default())
                            .map_err(BatchError::into_message),
                    );
                }
                each
            }
            Err(e) => {
                let message = e.into_message();
                ops.iter().map(|_| Err(message.clone())).collect::<Vec<_>>()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that stopped waiting has dropped its receiver; nothing to do.
            let _ = reply.send(result);
        }
    }
}

/// Why a batch failed.
#[derive(Debug)]
enum BatchError {
    /// The server reported an error: the transaction rolled back.
    Rejected(String),
    /// Anything else (pool, connection): the outcome is unknown.
    Failed(String),
}

impl BatchError {
    fn into_message(self) -> String {
        match self {
            Self::Rejected(m) | Self::Failed(m) => m,
        }
    }
}

/// Runs one batch (retrying deadlocks and serialization failures); rows per operation.
async fn run_batch(pool: &Pool, sql: &str, ops: &[Op]) -> Result<Vec<Vec<OpRow>>, BatchError> {
    let now = ops.iter().map(|o| o.now_ms).max().unwrap_or(0);
    let kind: Vec<i32> = ops.iter().map(|o| i32::from(o.commit)).collect();
    let ids: Vec<&str> = ops.iter().map(|o| o.id.as_str()).collect();
    let amounts: Vec<i64> = ops.iter().map(|o| o.amount).collect();
    let expires: Vec<i64> = ops.iter().map(|o| o.expires_at_ms).collect();
    let enforce: Vec<bool> = ops.iter().map(|o| o.enforce).collect();
    let nkeys: Vec<i32> = ops
        .iter()
        .map(|o| i32::try_from(o.keys.len()).unwrap_or(i32::MAX))
        .collect();
    let keys: Vec<&str> = ops
        .iter()
        .flat_map(|o| o.keys.iter().map(String::as_str))
        .collect();
    let limits: Vec<i64> = ops.iter().flat_map(|o| o.limits.iter().copied()).collect();
    let mut attempt = 0;
    let rows = loop {
        let client = pool
            .get()
            .await
            .map_err(|e| BatchError::Failed(e.to_string()))?;
        let result = async {
            let stmt = client.prepare_cached(sql).await?;
            client
                .query(
                    &stmt,
                    &[
                        &now, &kind, &ids, &amounts, &expires, &enforce, &nkeys, &keys, &limits,
                    ],
                )
                .await
        }
        .await;
        match result {
            Ok(rows) => break rows,
            Err(e) if retryable(&e) && attempt < 8 => attempt += 1,
            Err(e) if e.code().is_some() => return Err(BatchError::Rejected(e.to_string())),
            Err(e) => return Err(BatchError::Failed(e.to_string())),
        }
    };
    let mut out = vec![Vec::new(); ops.len()];
    for row in &rows {
        let op: i32 = row.get(0);
        let slot = usize::try_from(op - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| {
                BatchError::Failed("budget_batch returned a bad operation index".to_owned())
            })?;
        slot.push(OpRow {
            ok: row.get(1),
            idx: row.get(2),
            spent: row.get(3),
            reserved: row.get(4),
        });
    }
    Ok(out)
}

/// The [`LineState`] of one result row of an operation on `lines`.
fn line_state(row: &OpRow, lines: &[LineRequest]) -> Result<LineState, CostError> {
    let line = usize::try_from(row.idx - 1)
        .ok()
        .and_then(|i| lines.get(i))
        .ok_or_else(|| err("budget_batch returned a bad line index"))?;
    Ok(LineState {
        key: line.key.clone(),
        spent: Usd::from_nanos(row.spent),
        reserved: Usd::from_nanos(row.reserved),
        limit: line.limit,
    })
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
        let rows = self
            .batcher
            .submit(Op {
                commit: false,
                id: request.id.clone(),
                amount: request.amount.nanos(),
                expires_at_ms: request.expires_at_ms,
                enforce: request.enforce,
                limits: request.lines.iter().map(|l| l.limit.nanos()).collect(),
                keys,
                now_ms: request.now_ms,
            })
            .await?;
        let state = |row: &OpRow| line_state(row, &request.lines);
        match rows.first() {
            Some(row) if !row.ok => Ok(ReserveOutcome::Refused { seen: state(row)? }),
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
        now_ms: i64,
    ) -> Result<Committed, CostError> {
        if lines.is_empty() {
            return Ok(Committed {
                lines: Vec::new(),
                reservation_found: self.release(id, now_ms).await?,
            });
        }
        let keys: Vec<String> = lines.iter().map(|l| l.key.clone()).collect();
        self.ensure_lines(&keys).await?;
        let rows = self
            .batcher
            .submit(Op {
                commit: true,
                id: id.to_owned(),
                amount: actual.nanos(),
                expires_at_ms: 0,
                enforce: false,
                limits: lines.iter().map(|l| l.limit.nanos()).collect(),
                keys,
                now_ms,
            })
            .await?;
        Ok(Committed {
            reservation_found: rows.first().is_some_and(|r| r.ok),
            lines: rows
                .iter()
                .map(|row| line_state(row, lines))
                .collect::<Result<_, _>>()?,
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

    async fn extend(&self, id: &str, expires_at_ms: i64) -> Result<bool, CostError> {
        // Locks only the reservation row (the first step of the lock order).
        let sql = format!(
            "UPDATE {}.budget_reservations SET expires_at_ms = $2 WHERE id = $1",
            self.schema
        );
        let n = retry!(self, client, {
            let stmt = client.prepare_cached(&sql).await?;
            client.execute(&stmt, &[&id, &expires_at_ms]).await
        })?;
        Ok(n == 1)
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
