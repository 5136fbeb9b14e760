//! SQLite's WAL checkpoints, off the write path. A commit appends the pages it changed to
//! the WAL; a checkpoint copies them into the database file. SQLite runs one in the commit
//! that finds the WAL above `wal_autocheckpoint`, so a device's push waited, every few
//! batches, for a copy of tens of thousands of pages scattered over the file (in a commune's
//! first push on a province's store, 0.8–1.7 s each for the commits that checkpointed
//! against ~0.1 s for the others, docs/PERFORMANCE.md). The [`Checkpointer`] copies them from a connection of its own, a
//! `PASSIVE` checkpoint every half second, which never waits for a writer or a reader and
//! never makes one wait; the writer's own `wal_autocheckpoint` stays as the backstop.

use std::time::Duration;

use sqlx::{AnyPool, Row};

/// How often the WAL's committed pages are copied into the database file.
const EVERY: Duration = Duration::from_millis(500);

/// A task that checkpoints a SQLite store's WAL until it is dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
    pool: AnyPool,
}

impl Checkpointer {
    /// Starts checkpointing through `pool` (one connection, the checkpointer's alone).
    pub(super) fn start(pool: AnyPool) -> Checkpointer {
        let handle = pool.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
                    Ok(row) => {
                        let (log, copied): (i64, i64) = (row.try_get(1).unwrap_or(0), row.try_get(2).unwrap_or(0));
                        tracing::trace!(log, copied, "WAL checkpoint");
                    }
                    Err(e) => tracing::warn!(error = %e, "a WAL checkpoint failed (the next one tries again)"),
                }
            }
        });
        Checkpointer { task, pool: handle }
    }
}

impl Checkpointer {
    /// Stops checkpointing and closes its connection once a checkpoint under way has ended
    /// (the store closes: the last connection to close then checkpoints the whole WAL and
    /// removes it, so the database file alone holds the store; a process that exited in the
    /// middle of a checkpoint left a file that needed its WAL).
    pub(super) async fn close(&self) {
        self.task.abort();
        self.pool.close().await;
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::at_rest::AtRest;
    use crate::store::{Store, StoreOptions};

    /// Committed pages reach the database file without a commit that checkpoints: the WAL is
    /// far below the writer's `wal_autocheckpoint`, and the file grows all the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn committed_pages_reach_the_database_file_off_the_write_path() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("server.db");
        let keys = Arc::new(AtRest::load_or_create(&dir.path().join("server.db.key")).unwrap());
        let store = Store::open(db.to_str().unwrap(), keys, StoreOptions::default()).await.unwrap();
        // Let the migrations' pages reach the file first.
        tokio::time::sleep(2 * super::EVERY).await;
        let before = std::fs::metadata(&db).unwrap().len();
        let mut tx = store.write().await.unwrap();
        for n in 0..200 {
            tx.put_setting(&format!("bulk-{n}"), &"x".repeat(4000)).await.unwrap();
        }
        tx.commit().await.unwrap();
        let wal = std::fs::metadata(dir.path().join("server.db-wal")).unwrap().len();
        assert!(wal > 800_000, "the commit's pages are in the WAL ({wal} bytes)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = std::fs::metadata(&db).unwrap().len();
            if now >= before + 800_000 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the database file stayed at {now} bytes (was {before})");
            tokio::time::sleep(super::EVERY).await;
        }
        store.close().await;
    }
}
