//! The PostgreSQL checkpoint store (feature `postgres`): one row per segment.

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{validate_job_id, CheckpointStore};
use crate::error::{BatchError, Result};

/// Stores checkpoints in a table `(job text, seq bigint, data bytea, primary key (job, seq))`,
/// created if missing.
///
/// A segment is one `INSERT … ON CONFLICT DO UPDATE` (atomic, idempotent, durable at commit).
/// After a lost connection (a server restart) the next call reconnects.
pub struct PostgresCheckpointStore {
    url: String,
    table: String,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCheckpointStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn pg_err(job: &str, what: &str, e: &tokio_postgres::Error) -> BatchError {
    BatchError::CheckpointStore {
        store: "postgres",
        job: job.to_owned(),
        reason: format!("{what}: {e}"),
    }
}

/// `name` or `schema.name`, each part `[a-z_][a-z0-9_]*`.
fn valid_table(table: &str) -> bool {
    let parts: Vec<&str> = table.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.bytes().enumerate().all(|(i, b)| {
                    b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit())
                })
        })
}

impl PostgresCheckpointStore {
    /// Connects to `url` and uses (creating if needed) `table`, which may be schema-qualified.
    pub async fn connect(url: &str, table: &str) -> Result<Self> {
        if !valid_table(table) {
            return Err(BatchError::InvalidOption {
                field: "table",
                value: table.to_owned(),
                reason: "use a lowercase identifier, optionally schema-qualified",
            });
        }
        let store = Self {
            url: url.to_owned(),
            table: table.to_owned(),
            client: Mutex::new(None),
        };
        let guard = store.client("").await?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (job text NOT NULL, seq bigint NOT NULL, \
             data bytea NOT NULL, PRIMARY KEY (job, seq))",
            store.table
        );
        if let Some(client) = guard.as_ref() {
            client
                .batch_execute(&ddl)
                .await
                .map_err(|e| pg_err("", "cannot create the checkpoint table", &e))?;
        }
        drop(guard);
        Ok(store)
    }

    async fn client(&self, job: &str) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(|e| pg_err(job, "cannot connect", &e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "checkpoint store connection closed");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }

    async fn with_client<T>(
        &self,
        job: &str,
        what: &str,
        f: impl for<'c> FnOnce(
            &'c Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
        >,
    ) -> Result<T> {
        let guard = self.client(job).await?;
        let Some(client) = guard.as_ref() else {
            return Err(BatchError::CheckpointStore {
                store: "postgres",
                job: job.to_owned(),
                reason: "no connection".to_owned(),
            });
        };
        f(client).await.map_err(|e| pg_err(job, what, &e))
    }
}

#[async_trait]
impl CheckpointStore for PostgresCheckpointStore {
    async fn load(&self, job: &str) -> Result<Vec<(u64, Vec<u8>)>> {
        validate_job_id(job)?;
        let sql = format!(
            "SELECT seq, data FROM {} WHERE job = $1 ORDER BY seq",
            self.table
        );
        let j = job.to_owned();
        let rows = self
            .with_client(job, "cannot load checkpoints", |c| {
                Box::pin(async move { c.query(&sql, &[&j]).await })
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(|e| pg_err(job, "bad seq", &e))?;
            let data: Vec<u8> = row.try_get(1).map_err(|e| pg_err(job, "bad data", &e))?;
            out.push((u64::try_from(seq).unwrap_or(0), data));
        }
        Ok(out)
    }

    async fn append(&self, job: &str, seq: u64, segment: Vec<u8>) -> Result<()> {
        validate_job_id(job)?;
        let sql = format!(
            "INSERT INTO {} (job, seq, data) VALUES ($1, $2, $3) \
             ON CONFLICT (job, seq) DO UPDATE SET data = EXCLUDED.data",
            self.table
        );
        let j = job.to_owned();
        let seq = i64::try_from(seq).map_err(|_| BatchError::CheckpointStore {
            store: "postgres",
            job: job.to_owned(),
            reason: "segment number out of range".to_owned(),
        })?;
        self.with_client(job, "cannot write a checkpoint", |c| {
            Box::pin(async move { c.execute(&sql, &[&j, &seq, &segment]).await })
        })
        .await
        .map(|_| ())
    }

    async fn clear(&self, job: &str) -> Result<()> {
        validate_job_id(job)?;
        let sql = format!("DELETE FROM {} WHERE job = $1", self.table);
        let j = job.to_owned();
        self.with_client(job, "cannot clear checkpoints", |c| {
            Box::pin(async move { c.execute(&sql, &[&j]).await })
        })
        .await
        .map(|_| ())
    }
}
