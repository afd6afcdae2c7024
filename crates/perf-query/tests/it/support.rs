//! Shared helpers of the integration tests: a pool whose `search_path` is a fresh, unique
//! schema, dropped when the helper is dropped (also when the test panics).

use deadpool_postgres::Pool;

/// `base_url` with `search_path` set to `schema`, then `public`.
fn schema_url(base_url: &str, schema: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}options=-csearch_path%3D{schema}%2Cpublic")
}

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
        let pool = perf_query::connect_pool(&schema_url(base_url, &schema), max_size).unwrap();
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

    /// Another pool on the same schema (as a second process would have).
    #[cfg_attr(not(feature = "shared-cache"), allow(dead_code))]
    pub(crate) fn another_pool(&self, max_size: usize) -> Pool {
        perf_query::connect_pool(&schema_url(&self.base_url, &self.schema), max_size).unwrap()
    }

    /// True when `pg_stat_statements` is preloaded; then the extension is created too.
    pub(crate) async fn pg_stat_statements_ready(&self) -> bool {
        let client = self.pool.get().await.unwrap();
        let preloaded: String = client
            .query_one("SHOW shared_preload_libraries", &[])
            .await
            .unwrap()
            .get(0);
        if !preloaded.contains("pg_stat_statements") {
            return false;
        }
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public")
            .await
            .unwrap();
        true
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
