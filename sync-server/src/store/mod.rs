//! The server's store: one implementation of every query, of the schema and of its
//! migrations, for SQLite (the embedded default) and PostgreSQL (any number of
//! stateless server processes), through sqlx's `Any` driver (docs/adr/0004).
//!
//! [`Store::read`] and [`Store::write`] open a [`Tx`]; everything the store keeps that
//! names a resident is sealed on its way in and opened on its way out there
//! ([`crate::at_rest`]). The few differences between the backends live in [`dialect`].
//! This layer knows nothing of HTTP or of the sync algorithm above it.

mod background;
mod base_filter;
mod checkpoint;
pub mod dialect;
mod error;
pub mod model;
mod token_settler;
mod tx;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

pub use dialect::Dialect;
pub use error::{ErrorKind, StorageError};
pub use token_settler::{LevelLimits, Settled};
pub use tx::{DocWrite, TokenLevel, Tx};

use crate::at_rest::{AtRest, CHECK_SETTING};

/// The migrations, in order: (version, description, schema template).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "baseline", include_str!("../../migrations/0001_baseline.sql")),
    (2, "photo refs", include_str!("../../migrations/0002_photo_refs.sql")),
    (3, "doc by area", include_str!("../../migrations/0003_doc_by_area.sql")),
    (4, "registry", include_str!("../../migrations/0004_registry.sql")),
    (5, "moves", include_str!("../../migrations/0005_moves.sql")),
    (6, "unused person indexes", include_str!("../../migrations/0006_unused_person_indexes.sql")),
    (7, "turning 14 by day", include_str!("../../migrations/0007_turning_14_by_day.sql")),
    (8, "area progress", include_str!("../../migrations/0008_area_progress.sql")),
    (9, "tokens without a person index", include_str!("../../migrations/0009_tokens_without_person_index.sql")),
    (10, "compact person tokens", include_str!("../../migrations/0010_compact_person_tokens.sql")),
    (11, "token levels", include_str!("../../migrations/0011_token_levels.sql")),
    (12, "birth day by area", include_str!("../../migrations/0012_birth_day_by_area.sql")),
    (13, "token statistics", include_str!("../../migrations/0013_token_statistics.sql")),
];

/// The schema version this server brings a store to (its last migration's).
pub fn schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Connections the pool keeps at most (default: 4 on SQLite, which writes through one more; 16 on PostgreSQL).
    pub max_connections: Option<u32>,
}

/// SQLite's process-wide settings, made once before its first connection. Memory statistics
/// off: with them on (SQLite's default), every allocation and free of every connection takes
/// one global mutex, and the writer's thread and the threads that read its rows wait on each
/// other there (a third of the writer's time in a 100,000-household import, docs/PERFORMANCE.md).
/// The server reads none of these statistics. Too late (SQLite already initialized by another
/// user in this process), it changes nothing, and that is only slower.
fn sqlite_process_setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config takes this option with one int argument; it is called once,
        // before this process opens a connection, and returns SQLITE_MISUSE (ignored) if
        // SQLite is already initialized.
        let code = unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, std::ffi::c_int::from(0u8))
        };
        if code != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(code, "SQLite was initialized before its memory statistics could be turned off");
        }
    });
}

/// An open store: a connection pool, its dialect and the server's at-rest keys.
pub struct Store {
    pool: AnyPool,
    /// SQLite's one write connection (PostgreSQL writes through `pool`). SQLite drops a
    /// connection's page cache whenever another connection has written: writes that took
    /// turns on the pool's connections each began cold, where the one writer keeps the
    /// pages of the indexes it writes (their upper levels, a commune's leaves) from one
    /// transaction to the next.
    writer_pool: Option<AnyPool>,
    /// SQLite's checkpoints, on a connection of their own ([`checkpoint`]).
    checkpointer: Option<checkpoint::Checkpointer>,
    dialect: Dialect,
    keys: Arc<AtRest>,
    /// SQLite has one writer: writers queue here, in order, rather than in SQLite's busy loop.
    writer: tokio::sync::Mutex<()>,
    /// The token index's background settling, once started ([`token_settler`]).
    settler: background::BackgroundTask,
    /// SQLite's filter of the token index's base level ([`base_filter`]).
    base_filter: Option<base_filter::BaseFilter>,
    /// The task that builds the filter when a lookup asks for it, once started.
    filter_keeper: background::BackgroundTask,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dialect", &self.dialect).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store a `--db` value names — a SQLite file path or a
    /// `postgres://` URL, whose `sslmode` (and `sslrootcert`) choose TLS — runs the
    /// migrations it lacks, and checks that `keys` open it.
    pub async fn open(db: &str, keys: Arc<AtRest>, options: StoreOptions) -> Result<Store, StorageError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of(db);
        if dialect == Dialect::Sqlite {
            sqlite_process_setup();
        }
        let url = dialect.url(db)?;
        let connect = AnyConnectOptions::from_str(&url)
            .map_err(|e| StorageError::startup(format!("the database URL is not usable: {e}")))?;
        let max = dialect.max_connections(options.max_connections);
        let pool_of = |max: u32, min: u32| {
            AnyPoolOptions::new().max_connections(max).min_connections(min).after_connect(move |conn, _| {
                Box::pin(async move {
                    for statement in dialect.connection_setup() {
                        conn.execute(*statement).await?;
                    }
                    Ok(())
                })
            })
        };
        let unusable = |e: sqlx::Error| StorageError::startup(format!("cannot connect to the database: {e}"));
        // A quarter of the pool kept open: a burst of devices does not wait for new connections.
        let pool = pool_of(max, max.div_ceil(4)).connect_with(connect.clone()).await.map_err(unusable)?;
        let writer_pool = match dialect {
            // Kept open for the server's life: its page cache is the point.
            Dialect::Sqlite => Some(
                pool_of(1, 1)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect_with(connect.clone())
                    .await
                    .map_err(unusable)?,
            ),
            Dialect::Postgres => None,
        };
        let checkpointer = match dialect {
            Dialect::Sqlite => Some(checkpoint::Checkpointer::start(
                pool_of(1, 1).max_lifetime(None).idle_timeout(None).connect_with(connect).await.map_err(unusable)?,
            )),
            Dialect::Postgres => None,
        };
        let store = Store {
            pool,
            writer_pool,
            checkpointer,
            dialect,
            keys,
            writer: tokio::sync::Mutex::new(()),
            settler: Default::default(),
            base_filter: match dialect {
                Dialect::Sqlite => Some(base_filter::BaseFilter::default()),
                Dialect::Postgres => None,
            },
            filter_keeper: Default::default(),
        };
        store.migrate().await?;
        store.admit_key().await?;
        Ok(store)
    }

    /// Refreshes the query planner's statistics ([`Dialect::refresh_statistics`]), outside
    /// any transaction.
    pub async fn refresh_statistics(&self) -> Result<(), StorageError> {
        if let Some(statement) = self.dialect.refresh_statistics() {
            self.pool.acquire().await?.execute(statement).await?;
        }
        Ok(())
    }

    /// The server's at-rest keys (work that seals ahead of a write transaction).
    pub fn at_rest(&self) -> Arc<AtRest> {
        self.keys.clone()
    }

    /// Begins a transaction that only reads.
    pub async fn read(&self) -> Result<Tx<'_>, StorageError> {
        Ok(Tx::new(self.pool.begin().await?, &self.keys, self.dialect, self.base_filter.as_ref(), None))
    }

    /// Begins a write transaction. On SQLite it is the one writer until it ends; on
    /// PostgreSQL it takes the write lock of each province it writes to the feed of
    /// ([`Tx::lock_areas`]) and nothing else, so writers of different provinces never wait
    /// for each other.
    pub async fn write(&self) -> Result<Tx<'_>, StorageError> {
        let guard = match self.dialect {
            Dialect::Sqlite => Some(self.writer.lock().await),
            Dialect::Postgres => None,
        };
        let tx = self.writer_pool.as_ref().unwrap_or(&self.pool).begin_with(self.dialect.begin_write()).await?;
        Ok(Tx::new(tx, &self.keys, self.dialect, self.base_filter.as_ref(), guard))
    }

    /// Closes the pool's connections.
    pub async fn close(&self) {
        self.settler.stop();
        self.filter_keeper.stop();
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
        if let Some(writer) = &self.writer_pool {
            writer.close().await;
        }
        self.pool.close().await;
    }

    /// Runs the migrations the store lacks; a store made before migrations were
    /// recorded is first brought to the baseline's shape.
    async fn migrate(&self) -> Result<(), StorageError> {
        let failed = |e: sqlx::migrate::MigrateError| StorageError::startup(format!("migrating the store failed: {e}"));
        let mut conn = self.pool.acquire().await?;
        if !self.table_exists(&mut conn, "_sqlx_migrations").await? && self.table_exists(&mut conn, "doc").await? {
            for fixup in self.dialect.legacy_fixups() {
                self.apply_fixup(&mut conn, *fixup).await?;
            }
        }
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, template)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(self.dialect.schema(template)).into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations).run(&mut *conn).await.map_err(failed)
    }

    async fn table_exists(&self, conn: &mut sqlx::AnyConnection, table: &str) -> Result<bool, StorageError> {
        let n: i64 =
            sqlx::query(self.dialect.table_exists_query()).bind(table).fetch_one(&mut *conn).await?.try_get(0)?;
        Ok(n > 0)
    }

    async fn columns(&self, conn: &mut sqlx::AnyConnection, table: &str) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(self.dialect.columns_query()).bind(table).fetch_all(&mut *conn).await?;
        Ok(rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?)
    }

    async fn apply_fixup(
        &self,
        conn: &mut sqlx::AnyConnection,
        fixup: dialect::LegacyFixup,
    ) -> Result<(), StorageError> {
        use dialect::LegacyFixup;
        let statement = match fixup {
            LegacyFixup::AddColumn(table, column, decl) => {
                if self.columns(conn, table).await?.iter().any(|c| c == column) {
                    return Ok(());
                }
                format!("ALTER TABLE {table} ADD COLUMN {column} {decl}")
            }
            LegacyFixup::RenameColumn(table, from, to) => {
                if !self.columns(conn, table).await?.iter().any(|c| c == from) {
                    return Ok(());
                }
                format!("ALTER TABLE {table} RENAME COLUMN {from} TO {to}")
            }
            LegacyFixup::Statement(sql) => sql.to_string(),
        };
        conn.execute(sqlx::AssertSqlSafe(statement)).await?;
        Ok(())
    }

    /// Records the key's check value on a new store; refuses a key that does not open this one.
    async fn admit_key(&self) -> Result<(), StorageError> {
        let mut tx = self.write().await?;
        let check = tx.raw_setting(CHECK_SETTING).await?;
        let has_data = tx.has_data().await?;
        if let Some(value) = self.keys.admit(check.as_deref(), has_data)? {
            tx.put_raw_setting(CHECK_SETTING, &value).await?;
        }
        tx.commit().await
    }
}

use sqlx::SqlSafeStr;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sqlx::Row;

    use super::{Store, StoreOptions};
    use crate::at_rest::AtRest;

    /// Every SQLite connection of the store reads through a memory map of the size asked: the
    /// build lifts SQLite's 2 GB cap (`.cargo/config.toml`), or a larger map is cut to 2 GB
    /// without a word and a province's store would mostly be read by read calls.
    #[tokio::test]
    async fn sqlite_connections_read_through_a_map_larger_than_2_gb() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("server.db");
        let keys = Arc::new(AtRest::load_or_create(&dir.path().join("server.db.key")).unwrap());
        let store = Store::open(db.to_str().unwrap(), keys, StoreOptions::default()).await.unwrap();
        let asked = 68_719_476_736_i64;
        for pool in [&store.pool, store.writer_pool.as_ref().unwrap()] {
            let row = sqlx::query("PRAGMA mmap_size").fetch_one(pool).await.unwrap();
            assert_eq!(row.try_get::<i64, _>(0).unwrap(), asked);
        }
        store.close().await;
    }
}
