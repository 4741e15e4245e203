//! Test harness: opens a store on a backend, in a place the test owns, and
//! removes it afterwards.

/// Declares, for each scenario `async fn name(backend: Backend)` of the
/// including file, one test per backend (`sqlite::name`, `postgres::name`).
#[allow(unused_macros)] // conformance.rs declares its own shape
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

use std::sync::Arc;

use sqlx::any::AnyPoolOptions;
use tandem_store::{MetadataStore, SqlStore, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Harness {
    pub backend: Backend,
    pub store: Arc<dyn MetadataStore>,
    /// Where the store's database is, to open it again or reach it directly.
    pub url: String,
    region: String,
    _dir: Option<tempfile::TempDir>,
    postgres_database: Option<String>,
}

fn admin_url() -> String {
    std::env::var("TANDEM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn skip_postgres() -> bool {
    std::env::var("TANDEM_SKIP_POSTGRES").is_ok_and(|value| value == "1")
}

async fn admin(sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url())
        .await
        .unwrap_or_else(|error| {
            panic!("PostgreSQL is required for these tests ({error}); start it, point TANDEM_TEST_POSTGRES_URL at it, or set TANDEM_SKIP_POSTGRES=1")
        });
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

impl Harness {
    /// A store as a server opens it (with its default workspace).
    pub async fn new(backend: Backend) -> Option<Harness> {
        Self::open(backend, "test-region", true).await
    }

    /// A store with nothing in it, as a replica or restore target starts.
    pub async fn empty(backend: Backend, region: &str) -> Option<Harness> {
        Self::open(backend, region, false).await
    }

    /// A store as a server opens it, whose time is `clock`'s.
    #[allow(dead_code)]
    pub async fn with_clock(backend: Backend, clock: Arc<dyn tandem_store::Clock>) -> Option<Harness> {
        Self::open_clocked(backend, "test-region", true, Some(clock)).await
    }

    async fn open(backend: Backend, region: &str, bootstrap: bool) -> Option<Harness> {
        Self::open_clocked(backend, region, bootstrap, None).await
    }

    async fn open_clocked(
        backend: Backend,
        region: &str,
        bootstrap: bool,
        clock: Option<Arc<dyn tandem_store::Clock>>,
    ) -> Option<Harness> {
        let open = |options: StoreOptions| {
            let clock = clock.clone();
            async move {
                match clock {
                    Some(clock) => SqlStore::open_with_clock(options, clock).await,
                    None => SqlStore::open(options).await,
                }
            }
        };
        let options = |url: String| {
            let mut options = StoreOptions::new(url, region);
            options.bootstrap_default_workspace = bootstrap;
            options
        };
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("metadata.db").display());
                let store = open(options(url.clone())).await.unwrap();
                Some(Harness {
                    backend,
                    store: Arc::new(store),
                    url,
                    region: region.to_string(),
                    _dir: Some(dir),
                    postgres_database: None,
                })
            }
            Backend::Postgres => {
                if skip_postgres() {
                    eprintln!("skipped: TANDEM_SKIP_POSTGRES=1");
                    return None;
                }
                let database = format!("tandem_test_{}", uuid_like());
                admin(&format!("CREATE DATABASE {database}")).await;
                let base = admin_url();
                let url = match base.rfind('/') {
                    Some(slash) if slash > "postgres://".len() => format!("{}/{database}", &base[..slash]),
                    _ => format!("{base}/{database}"),
                };
                let store = open(options(url.clone())).await.unwrap();
                Some(Harness {
                    backend,
                    store: Arc::new(store),
                    url,
                    region: region.to_string(),
                    _dir: None,
                    postgres_database: Some(database),
                })
            }
        }
    }

    /// Closes the store and opens its database again, as a restarted server
    /// does (pending migrations run).
    #[allow(dead_code)]
    pub async fn reopen(&mut self) {
        let store = SqlStore::open(StoreOptions::new(self.url.clone(), self.region.clone()))
            .await
            .unwrap();
        self.store = Arc::new(store);
    }

    /// Runs `statements` on the store's database directly, outside the
    /// store, in one transaction: for tests that set up what only an older
    /// build could have written.
    #[allow(dead_code)]
    pub async fn execute(&self, statements: &[&str]) {
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        for statement in statements {
            sqlx::query(statement).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        pool.close().await;
    }

    /// Drops what the harness created.
    pub async fn finish(self) {
        let Harness {
            store,
            postgres_database,
            ..
        } = self;
        drop(store);
        if let Some(database) = postgres_database {
            admin(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
        }
    }
}

/// A metric point with no model or dataset.
#[allow(dead_code)]
pub fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> tandem_core::model::Metric {
    tandem_core::model::Metric {
        key: key.to_string(),
        value,
        timestamp,
        step,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let sequence = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}_{:x}_{sequence}", nanos, std::process::id())
}
