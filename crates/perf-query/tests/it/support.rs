//! Shared helpers of the integration tests: a pool whose `search_path` is a fresh, unique
//! schema, dropped when the helper is dropped (also when the test panics).

use deadpool_postgres::Pool;

/// A unique schema on the shared server with a pool bound to it.
pub(crate) struct TestDb {
    pub(crate) pool: Pool,
    pub(crate) schema: String,
    base_url: String,
}

impl TestDb {
    /// Creates the schema; `max_size` connections with `search_path` set to it.
    pub(crate) async fn new(base_url: &str, prefix: &str, max_size: usize) -> TestDb {
        let schema = perf_testkit::unique_name(prefix);
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{sep}options=-csearch_path%3D{schema}%2Cpublic");
        let pool = perf_query::connect_pool(&url, max_size).unwrap();
        let client = pool.get().await.unwrap();
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .unwrap();
        drop(client);
        TestDb {
            pool,
            schema,
            base_url: base_url.to_string(),
        }
    }

    pub(crate) async fn exec(&self, sql: &str) {
        let client = self.pool.get().await.unwrap();
        client.batch_execute(sql).await.unwrap();
    }

    pub(crate) async fn scalar_i64(&self, sql: &str) -> i64 {
        let client = self.pool.get().await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Drops the schema now (the `Drop` impl does it too, from another thread).
    pub(crate) async fn drop_schema(self) {
        drop(self);
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // A test's runtime may be unwinding: drop the schema from a thread of its own.
        let url = self.base_url.clone();
        let schema = self.schema.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    let task = tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                    drop(client);
                    let _ = task.await;
                }
            });
        })
        .join();
    }
}
