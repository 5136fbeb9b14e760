//! Settling the residents' token index: moving a push's fresh tokens, in bulk and in token
//! order, down the levels of [`TokenLevel`] (migration 0011).
//!
//! A token is a keyed hash, so a commune's new tokens fall on random leaves of the index,
//! and a commune brings about one new token for every hundred a province's index holds: each
//! of its pushes wrote nearly every leaf it reached, and its first push wrote the whole index
//! over twice (issue 14). Written to a small level first and moved a range at a time, a leaf
//! of the large index is written once for dozens of tokens. The policy, as a log-structured
//! merge tree keeps its keys:
//! - the fresh level moves to the recent level once it holds [`LevelLimits::fresh`] tokens
//!   (about a commune's), in [`LevelLimits::fresh_ranges`] transactions of as many tokens;
//! - the recent level moves to the base once it holds [`LevelLimits::recent`] (about ten
//!   communes'), in [`LevelLimits::recent_ranges`] transactions, each a short write that a
//!   push waits for at most.
//!
//! A running server settles in the background ([`Store::settle_in_background`]); a lookup
//! reads every level, so where a token is never changes what is found.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::tx::TokenLevel;
use super::{StorageError, Store};

/// How often the background task looks at the levels' sizes.
const EVERY: Duration = Duration::from_secs(2);

/// When and how the levels move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelLimits {
    /// The fresh level moves once it holds this many tokens.
    pub fresh: i64,
    /// The recent level moves once it holds this many tokens.
    pub recent: i64,
    /// Transactions (token ranges of as many tokens) a move of the fresh level takes.
    pub fresh_ranges: u32,
    /// Transactions (token ranges of as many tokens) a move of the recent level takes.
    pub recent_ranges: u32,
}

impl Default for LevelLimits {
    fn default() -> Self {
        // A commune of 10,000 households is some 36,000 residents and 230,000 tokens.
        LevelLimits { fresh: 250_000, recent: 2_500_000, fresh_ranges: 8, recent_ranges: 64 }
    }
}

impl LevelLimits {
    /// Limits that move every token down to the base now (a bench, a test).
    pub fn everything() -> Self {
        LevelLimits { fresh: 1, recent: 1, ..LevelLimits::default() }
    }
}

/// What one settling pass moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Tokens moved from the fresh level to the recent one.
    pub fresh_to_recent: u64,
    /// Tokens moved from the recent level to the base.
    pub recent_to_base: u64,
}

impl Store {
    /// One settling pass under `limits`: the fresh level moves if it is full, and the recent
    /// level then if it is. Each range moves in a write transaction of its own.
    pub async fn settle_tokens(&self, limits: LevelLimits) -> Result<Settled, StorageError> {
        let fresh_to_recent = self.settle_fresh(limits).await?;
        Ok(Settled { fresh_to_recent, recent_to_base: self.settle_recent(limits).await? })
    }

    /// Moves the fresh level to the recent one if it holds `limits.fresh` tokens.
    async fn settle_fresh(&self, limits: LevelLimits) -> Result<u64, StorageError> {
        if self.count_tokens(TokenLevel::Fresh).await? < limits.fresh {
            return Ok(0);
        }
        self.move_level(TokenLevel::Fresh, TokenLevel::Recent, limits.fresh_ranges).await
    }

    /// Moves the recent level to the base if it holds `limits.recent` tokens.
    async fn settle_recent(&self, limits: LevelLimits) -> Result<u64, StorageError> {
        if self.count_tokens(TokenLevel::Recent).await? < limits.recent {
            return Ok(0);
        }
        self.move_level(TokenLevel::Recent, TokenLevel::Base, limits.recent_ranges).await
    }

    async fn count_tokens(&self, level: TokenLevel) -> Result<i64, StorageError> {
        let mut tx = self.read().await?;
        let n = tx.count_tokens(level).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Moves `from` to `to` in about `parts` write transactions of as many tokens each (a
    /// token's top bits are its locality's, so the tokens of a push crowd a few stretches of
    /// the token space: ranges are cut by count, not by value). Tokens written meanwhile may
    /// move too, in the last range.
    async fn move_level(&self, from: TokenLevel, to: TokenLevel, parts: u32) -> Result<u64, StorageError> {
        let parts = parts.max(1);
        let per = (self.count_tokens(from).await? / i64::from(parts)).max(1);
        let (mut moved, mut first) = (0, i64::MIN);
        for part in 1..=parts {
            let mut tx = self.write().await?;
            let last = match part == parts {
                true => None,
                false => tx.token_after(from, first, per - 1).await?,
            };
            let last = last.unwrap_or(i64::MAX);
            moved += tx.move_tokens(from, to, first, last).await?;
            tx.commit().await?;
            match last.checked_add(1) {
                Some(next) => first = next,
                None => break,
            }
        }
        Ok(moved)
    }

    /// Settles the token index every few seconds under the default [`LevelLimits`], until
    /// the store closes or is dropped.
    pub fn settle_in_background(self: &Arc<Self>) {
        let store: Weak<Store> = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The recent level only grows when the fresh one moves: it is counted then (and on
            // the first pass, or after a pass that failed), not every few seconds — up to
            // 2.5 million rows a count.
            let mut recent_may_be_full = true;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { break };
                let limits = LevelLimits::default();
                let pass = async {
                    let fresh = store.settle_fresh(limits).await?;
                    let recent = match fresh > 0 || recent_may_be_full {
                        true => store.settle_recent(limits).await?,
                        false => 0,
                    };
                    Ok::<_, StorageError>((fresh, recent))
                };
                match pass.await {
                    Ok((fresh, recent)) => {
                        recent_may_be_full = false;
                        if fresh + recent > 0 {
                            tracing::debug!(fresh, recent, "token index settled");
                        }
                    }
                    Err(e) => {
                        recent_may_be_full = true;
                        tracing::warn!(error = %e, "settling the token index failed (the next pass tries again)");
                    }
                }
            }
        });
        self.settler.start(task);
    }
}
