//! The levels of the residents' token index (migration 0011) and the statements that move
//! tokens between them. A push writes its tokens to the small fresh level; they move in bulk,
//! a range of tokens at a time in token order, to the recent level and from there to the
//! large base level ([`super::super::token_settler`] decides when). A lookup reads all three
//! (the view `person_token_any`), or the two small ones and, of the base, the tokens its
//! filter may hold ([`super::super::base_filter`]); every write to the base counts in the
//! store's base generation here.

use sqlx::{AssertSqlSafe, Row};

use super::super::base_filter::GENERATION_SETTING;
use super::super::dialect::Dialect;
use super::{Result, StorageError, Tx};

/// One level of the token index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLevel {
    /// Where a push writes: small, its pages stay in memory.
    Fresh,
    /// Fresh tokens moved in bulk: ten communes' worth at most.
    Recent,
    /// Every older token: the large index, written a range at a time.
    Base,
}

impl TokenLevel {
    /// The levels in the order tokens move through them. A statement that must find a token
    /// wherever it is reads them in this order: a concurrent move (PostgreSQL) takes a token
    /// from a level this statement has read to one it has not read yet, never the other way.
    pub const NEWEST_FIRST: [TokenLevel; 3] = [TokenLevel::Fresh, TokenLevel::Recent, TokenLevel::Base];

    /// Every level, as one relation `(token, person_id)` (newest first).
    pub const ALL: &'static str = "person_token_any";

    /// The fresh and the recent level, as one relation `(token, person_id)`.
    pub const ABOVE_BASE: &'static str = "(SELECT token, person_id FROM person_token_fresh
         UNION ALL SELECT token, person_id FROM person_token_recent)";

    /// The level's table.
    pub fn table(self) -> &'static str {
        match self {
            TokenLevel::Fresh => "person_token_fresh",
            TokenLevel::Recent => "person_token_recent",
            TokenLevel::Base => "person_token",
        }
    }
}

impl Tx<'_> {
    /// How many tokens the level holds.
    pub async fn count_tokens(&mut self, level: TokenLevel) -> Result<i64> {
        let sql = format!("SELECT count(*) FROM {}", level.table());
        Ok(sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut *self.tx).await?.try_get(0)?)
    }

    /// The token `offset` places after the first of `level` at or above `first` (in token
    /// order), if the level holds that many: where a move of `offset + 1` tokens from `first` ends.
    pub async fn token_after(&mut self, level: TokenLevel, first: i64, offset: i64) -> Result<Option<i64>> {
        let sql = format!("SELECT token FROM {} WHERE token >= $1 ORDER BY token LIMIT 1 OFFSET $2", level.table());
        let row = sqlx::query(AssertSqlSafe(sql)).bind(first).bind(offset).fetch_optional(&mut *self.tx).await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// The store's base generation: a value that changes with every write to the base level
    /// ([`super::super::base_filter`]; SQLite's stores count them), 0 before the first.
    pub async fn base_generation(&mut self) -> Result<i64> {
        match self.raw_setting(GENERATION_SETTING).await? {
            None => Ok(0),
            Some(text) => text.parse().map_err(|_| {
                StorageError::internal(format!("the setting {GENERATION_SETTING} is not a number: {text:?}"))
            }),
        }
    }

    /// Counts a write of this transaction to the base level, which added `tokens` (`None`:
    /// tokens the filter cannot follow, as a re-index's clearing): the store's base generation
    /// moves to a new random value, and the base's filter follows when it was at the one
    /// before. Random, not a count: a filter that followed a transaction which then failed
    /// answers for a generation no other write will ever reach.
    pub(in crate::store) async fn note_base_written(&mut self, tokens: Option<&[i64]>) -> Result<()> {
        let Some(filter) = self.base_filter else { return Ok(()) };
        let from = self.base_generation().await?;
        let to = super::super::base_filter::next_generation(from)?;
        self.put_raw_setting(GENERATION_SETTING, &to.to_string()).await?;
        if let Some(tokens) = tokens {
            filter.follow(from, to, tokens);
        }
        Ok(())
    }

    /// The distinct tokens of `level` within `first..=last`, in token order, at most about
    /// `limit` (the last of them may be cut short: ask again above the last one returned).
    /// Read as one text a statement: a row a token costs a province's base some twenty seconds.
    pub async fn token_list(&mut self, level: TokenLevel, first: i64, last: i64, limit: i64) -> Result<Vec<i64>> {
        let sql = format!(
            "SELECT {} FROM (SELECT token FROM {} WHERE token BETWEEN $1 AND $2 ORDER BY token LIMIT $3) t",
            self.dialect.join_tokens("token"),
            level.table()
        );
        let row = sqlx::query(AssertSqlSafe(sql)).bind(first).bind(last).bind(limit).fetch_one(&mut *self.tx).await?;
        let text: Option<String> = row.try_get(0)?;
        let mut tokens = Vec::new();
        for t in text.as_deref().unwrap_or("").split(',').filter(|t| !t.is_empty()) {
            tokens.push(t.parse().map_err(|_| StorageError::internal(format!("a token list held {t:?}")))?);
        }
        tokens.sort_unstable();
        tokens.dedup();
        Ok(tokens)
    }

    /// Moves the tokens of `from` within `first..=last` to `to`, in token order (each leaf of
    /// `to` that the range covers is written once); returns how many moved. On PostgreSQL the
    /// move is one statement (a delete that hands its rows to an insert): a writer that
    /// removes one of these tokens meanwhile either removes it before it moves (it does not
    /// move) or waits and then finds it in `to`.
    pub async fn move_tokens(&mut self, from: TokenLevel, to: TokenLevel, first: i64, last: i64) -> Result<u64> {
        let (from_table, to_table) = (from.table(), to.table());
        match self.dialect {
            Dialect::Postgres => {
                // A data-modifying `WITH` runs once whether or not the query reads it.
                let sql = format!(
                    "WITH moved AS (DELETE FROM {from_table} WHERE token BETWEEN $1 AND $2 RETURNING token, person_id),
                          written AS (INSERT INTO {to_table} (token, person_id) SELECT token, person_id FROM moved
                                      ORDER BY token, person_id ON CONFLICT DO NOTHING)
                     SELECT count(*) FROM moved"
                );
                let moved: i64 = sqlx::query(AssertSqlSafe(sql))
                    .bind(first)
                    .bind(last)
                    .fetch_one(&mut *self.tx)
                    .await?
                    .try_get(0)?;
                Ok(u64::try_from(moved).unwrap_or(0))
            }
            Dialect::Sqlite => {
                // The writer is the only one: nothing changes the range between the statements.
                if to == TokenLevel::Base && self.base_filter.is_some() {
                    let tokens = self.token_list(from, first, last, i64::MAX).await?;
                    self.note_base_written(Some(&tokens)).await?;
                }
                let insert = format!(
                    "INSERT INTO {to_table} (token, person_id) SELECT token, person_id FROM {from_table}
                     WHERE token BETWEEN $1 AND $2 ORDER BY token, person_id ON CONFLICT DO NOTHING"
                );
                sqlx::query(AssertSqlSafe(insert)).bind(first).bind(last).execute(&mut *self.tx).await?;
                let delete = format!("DELETE FROM {from_table} WHERE token BETWEEN $1 AND $2");
                Ok(sqlx::query(AssertSqlSafe(delete))
                    .bind(first)
                    .bind(last)
                    .execute(&mut *self.tx)
                    .await?
                    .rows_affected())
            }
        }
    }
}
