//! Everything that differs between SQLite and PostgreSQL, named in one place.
//!
//! Every query of the store is one text for both backends (`$n` parameters, which
//! SQLite reads as the n-th argument too). What remains are the schema's type names,
//! how a write transaction begins, and a row lock. Nothing else may branch on the backend.

use super::StorageError;

/// The backend a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An embedded file (`--db ./data.db`): one writer at a time, in this process.
    Sqlite,
    /// A PostgreSQL server (`--db postgres://…`): any number of server processes.
    Postgres,
}

impl Dialect {
    /// The dialect of a `--db` value: a `postgres://` or `postgresql://` URL, else a SQLite path.
    pub fn of(db: &str) -> Dialect {
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// The schema text with this dialect's type names put in.
    pub fn schema(self, template: &str) -> String {
        // Area codes compare byte by byte (`C`), so that an area's range in an index is the
        // range of its codes ([`within`]); SQLite's default collation already does.
        // The residents' index by birth: the area before the day where the planner can test
        // the days within one range scan (migration 0012 says why PostgreSQL cannot).
        let (serial_key, blob, area, without_rowid, birth_index) = match self {
            Dialect::Sqlite => {
                ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "TEXT", " WITHOUT ROWID", "(birth_year, area, dob)")
            }
            Dialect::Postgres => {
                ("BIGSERIAL PRIMARY KEY", "BYTEA", "TEXT COLLATE \"C\"", "", "(birth_year, dob, area)")
            }
        };
        // The planner's count of distinct tokens, which its sample gets wrong (migration 0013).
        let token_statistics = match self {
            Dialect::Sqlite => "SELECT 1;",
            Dialect::Postgres => {
                "ALTER TABLE person_token ALTER COLUMN token SET (n_distinct = -0.5);
                 ALTER TABLE person_token_recent ALTER COLUMN token SET (n_distinct = -0.5);
                 ALTER TABLE person_token_fresh ALTER COLUMN token SET (n_distinct = -0.5);
                 ANALYZE person_token, person_token_recent, person_token_fresh;"
            }
        };
        template
            .replace("{serial_key}", serial_key)
            .replace("{blob}", blob)
            .replace("{area}", area)
            .replace("{without_rowid}", without_rowid)
            .replace("{birth_index}", birth_index)
            .replace("{token_statistics}", token_statistics)
    }

    /// The statement that begins a write transaction. SQLite takes its write lock at
    /// once (a deferred transaction that later writes can fail instead of waiting).
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// The statement that takes one province's write lock until the transaction ends
    /// (`$1`: [`province_lock_key`]), if the dialect needs one: on PostgreSQL, writers of
    /// one province queue there so that its feed positions are committed in order across
    /// every node (docs/adr/0005). SQLite writers are already one at a time.
    pub fn province_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock($1)"),
        }
    }

    /// Parameter `n` of a generated list (an `IN` list, the rows of a multi-row insert).
    /// Hand-written queries use `$n` on both. SQLite finds a named parameter by a linear
    /// scan of the statement's names, so binding a list of thousands of `$n` costs their
    /// square: there, a generated list is anonymous `?`, bound in order.
    pub fn parameter(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => "?".to_string(),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// What a `SELECT` of one row appends to lock that row for the transaction.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Statements that run on each new connection.
    pub fn connection_setup(self) -> &'static [&'static str] {
        match self {
            Dialect::Sqlite => &[
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = FULL",
                "PRAGMA foreign_keys = ON",
                "PRAGMA busy_timeout = 10000",
                // A push runs some forty statements a household over a large index: a 64 MiB page cache.
                "PRAGMA cache_size = -65536",
                // Reads through a memory map of up to 64 GiB (the build raises SQLite's 2 GB
                // cap, .cargo/config.toml): a lookup's pages come straight from the kernel's
                // page cache, shared by the connections, with no read call or copy each. On a
                // province's store a commune's first push reads ~200,000 index pages. An I/O
                // error on a mapped page stops the process (SIGBUS) where a read would have
                // returned an error: a server's disk failing is a stop either way.
                "PRAGMA mmap_size = 68719476736",
                // The checkpoints run off the write path (store::checkpoint); a commit still
                // checkpoints when the WAL passes 256 MiB, the backstop for a checkpointer that
                // readers hold back. The WAL file can grow to that size.
                "PRAGMA wal_autocheckpoint = 65536",
                // Sorts and temporary indexes stay in memory: nothing in clear reaches a temp file.
                "PRAGMA temp_store = MEMORY",
            ],
            // No JIT compilation: a lookup of a batch's tokens (an `IN` list of thousands) is
            // costed above `jit_above_cost` on a province's index, and compiling it took 23 ms
            // (`EXPLAIN ANALYZE`) for a statement that runs in a few — the short statements of
            // a sync never repay it.
            Dialect::Postgres => &["SET jit = off"],
        }
    }

    /// The statement that refreshes the planner's statistics, if the backend needs one.
    /// PostgreSQL's planner costs a lookup by its statistics: until `ANALYZE` has sampled a
    /// table that grew from empty (autovacuum does, a minute or more after a bulk load), it
    /// may scan where an index would do. SQLite keeps none (no `sqlite_stat1`): its planner
    /// prefers the indexes by rule, the plans every figure in docs/PERFORMANCE.md was
    /// measured with.
    pub fn refresh_statistics(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("ANALYZE"),
        }
    }

    /// Connections the pool opens at most. SQLite reads in parallel under WAL; its
    /// writes queue in the process ([`super::Store`]).
    pub fn max_connections(self, configured: Option<u32>) -> u32 {
        configured.unwrap_or(match self {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 16,
        })
    }

    /// The sqlx URL of a `--db` value.
    pub fn url(self, db: &str) -> Result<String, StorageError> {
        match self {
            Dialect::Postgres => Ok(db.to_string()),
            Dialect::Sqlite => {
                if db.contains(['?', '#']) {
                    return Err(StorageError::invalid("a SQLite database path may not contain ? or #"));
                }
                Ok(format!("sqlite://{db}?mode=rwc"))
            }
        }
    }

    /// Statements that bring a store created before migrations were recorded
    /// (no migrations table yet) to the first migration's shape, column by column.
    /// Each is safe to run on a store that already has the change.
    pub fn legacy_fixups(self) -> &'static [LegacyFixup] {
        match self {
            Dialect::Sqlite => &[
                LegacyFixup::AddColumn("person", "birth_year", "TEXT"),
                LegacyFixup::AddColumn("person", "cccd_digits", "TEXT"),
                LegacyFixup::AddColumn("operator", "area", "TEXT NOT NULL DEFAULT ''"),
                LegacyFixup::AddColumn("session", "area", "TEXT NOT NULL DEFAULT ''"),
                LegacyFixup::RenameColumn("audit", "user", "username"),
            ],
            Dialect::Postgres => &[
                LegacyFixup::AddColumn("person", "birth_year", "TEXT"),
                LegacyFixup::AddColumn("person", "cccd_digits", "TEXT"),
                LegacyFixup::AddColumn("operator", "area", "TEXT NOT NULL DEFAULT ''"),
                LegacyFixup::AddColumn("session", "area", "TEXT NOT NULL DEFAULT ''"),
                LegacyFixup::Statement(
                    "ALTER TABLE household_stats ALTER COLUMN complete TYPE BIGINT USING complete::int",
                ),
                // Area codes compare byte by byte ([`Dialect::schema`]).
                LegacyFixup::Statement(
                    "ALTER TABLE enrolment ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE device ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE doc ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE feed ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE person ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE conflict ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE duplicate ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE household_stats ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE operator ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE session ALTER COLUMN area TYPE TEXT COLLATE \"C\";
                     ALTER TABLE blob ALTER COLUMN area TYPE TEXT COLLATE \"C\"",
                ),
            ],
        }
    }

    /// A query that lists a table's column names (one text column).
    pub fn columns_query(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT name FROM pragma_table_info($1)",
            Dialect::Postgres => "SELECT column_name::TEXT FROM information_schema.columns WHERE table_name = $1",
        }
    }

    /// An aggregate that joins the integers of `column` into one text, comma-separated.
    pub fn join_tokens(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("group_concat({column}, ',')"),
            Dialect::Postgres => format!("string_agg({column}::text, ',')"),
        }
    }

    /// A query that counts the tables of this name (one integer column).
    pub fn table_exists_query(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            Dialect::Postgres => {
                "SELECT count(*) FROM information_schema.tables WHERE table_name = $1 AND table_schema = current_schema()"
            }
        }
    }
}

/// One step that brings a pre-migration store up to the first migration.
#[derive(Debug, Clone, Copy)]
pub enum LegacyFixup {
    /// Adds a column when the table lacks it.
    AddColumn(&'static str, &'static str, &'static str),
    /// Renames a column when the table has the old name.
    RenameColumn(&'static str, &'static str, &'static str),
    /// A statement that is safe to run again.
    Statement(&'static str),
}

/// The province of an area code: its first segment.
pub fn province_of(area: &str) -> &str {
    area.split('.').next().unwrap_or(area)
}

/// The advisory-lock key of a province: a fixed prefix and a hash of its code (two
/// provinces that share a key only wait for each other; nothing is skipped).
pub fn province_lock_key(province: &str) -> i64 {
    let hash = blake3::hash(format!("doorstep feed lock {province}").as_bytes());
    let low = u32::from_le_bytes(hash.as_bytes()[..4].try_into().unwrap_or_default());
    (0x00D0_0257_i64 << 32) | i64::from(low)
}

/// The area test of the store: `column` is `param` or lies within it. Exact
/// prefix comparison on whole segments (never `LIKE`, whose `%` and `_` a caller could
/// smuggle in). `param` is a `$n` placeholder. The range (from the code itself to the code
/// followed by `/`, the character after `.`) lets an index on the column find the rows;
/// the exact test keeps out codes that only share the range.
pub fn within(column: &str, param: &str) -> String {
    format!(
        "({column} >= {param} AND {column} < {param} || '/' \
         AND ({column} = {param} OR substr({column}, 1, length({param}) + 1) = {param} || '.'))"
    )
}

/// [`within`], where an empty `area` (the value bound to `param`) means every area. The
/// statement differs by case — a test of the parameter alone for every area, the range
/// otherwise — because a planner cannot use an index's range through `$1 = '' OR …`: it
/// would read every row of a province's store for one commune's page.
pub fn within_or_all(column: &str, param: &str, area: &str) -> String {
    if area.is_empty() { format!("({param} = '')") } else { within(column, param) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_each_dialects_types() {
        let t = "id {serial_key}, data {blob}, area {area}) {without_rowid};";
        assert_eq!(
            Dialect::Sqlite.schema(t),
            "id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB, area TEXT)  WITHOUT ROWID;"
        );
        assert_eq!(Dialect::Postgres.schema(t), "id BIGSERIAL PRIMARY KEY, data BYTEA, area TEXT COLLATE \"C\") ;");
    }

    #[test]
    fn a_province_is_the_first_segment_and_has_its_own_lock() {
        assert_eq!(province_of("01.001.00001"), "01");
        assert_eq!(province_of("79"), "79");
        assert_eq!(province_lock_key("01"), province_lock_key("01"));
        assert_ne!(province_lock_key("01"), province_lock_key("79"));
    }

    #[test]
    fn the_url_says_the_dialect() {
        assert_eq!(Dialect::of("postgres://u@h/db"), Dialect::Postgres);
        assert_eq!(Dialect::of("postgresql://u@h/db?sslmode=require"), Dialect::Postgres);
        assert_eq!(Dialect::of("./data.db"), Dialect::Sqlite);
        assert_eq!(Dialect::Sqlite.url("/tmp/a.db").unwrap(), "sqlite:///tmp/a.db?mode=rwc");
        assert!(Dialect::Sqlite.url("/tmp/a.db?mode=ro").is_err());
    }
}
