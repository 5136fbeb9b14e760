//! A Bloom filter of the token index's base level, kept in memory by a SQLite store: which
//! tokens the base may hold, as a log-structured merge tree keeps one for each of its levels.
//!
//! A push looks up some 215,000 tokens for a commune of 10,000 households; nine in ten are
//! held by nobody, and against a province's base (22 million tokens) each of those cost a
//! descent of the large index all the same (issue 14: the lookup took 1.1 s where an empty
//! server's took 0.3 s). [`super::Tx::candidates`] now asks the base only for the tokens the
//! filter may hold; the fresh and recent levels, small, are asked for every token.
//!
//! The filter must never miss a token the base holds. Every write to the base moves the
//! store's base generation ([`GENERATION_SETTING`], in the same transaction as the write) to
//! a new random value, and the filter answers only for the generation it was built or kept
//! up to: this process's writes add their tokens to it and move it along, a write the filter
//! cannot follow (another process on the same file, a re-index that clears the base) leaves
//! it behind, a transaction that failed after the filter followed leaves it at a generation
//! the store never reaches, and a lookup that finds it at another generation than the
//! store's reads every token from the base, as before, and asks for a new filter. (A count
//! would not do: after a failed transaction the next write would reach the generation the
//! filter followed to, without its tokens.) Removed tokens stay in
//! the filter: it answers "maybe" for them, which costs a descent and nothing else.
//!
//! PostgreSQL keeps no filter: its stateless server processes each write the base, and a
//! filter per process would be behind after every other process's settling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fastbloom::BloomFilter;

use super::tx::TokenLevel;
use super::{StorageError, Store};

/// The setting that changes with every write to the base level (a decimal integer, 0 when
/// absent).
pub const GENERATION_SETTING: &str = "token_base_generation";

/// The generation a write moves the base to from `from`: random, never `from` or 0.
pub fn next_generation(from: i64) -> Result<i64, StorageError> {
    loop {
        let next = getrandom::u64().map_err(|e| StorageError::internal(format!("random source: {e}")))? as i64;
        if next != from && next != 0 {
            return Ok(next);
        }
    }
}

/// The filter's rate of false "maybe" answers at its capacity.
const FALSE_POSITIVE_RATE: f64 = 0.01;

/// The smallest capacity a filter is built for (a new store's).
const MIN_CAPACITY: usize = 1 << 20;

/// The filter of one store: absent until built, behind after a write it could not follow.
#[derive(Debug)]
pub struct BaseFilter {
    current: Mutex<Option<Kept>>,
    /// A lookup found no filter for the store's generation: the keeper builds one. Nothing is
    /// built before a lookup asks (a store opened for a short command never needs one).
    wanted: AtomicBool,
    /// One build at a time.
    building: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Kept {
    generation: i64,
    bloom: BloomFilter,
    capacity: usize,
    held: usize,
}

/// A filter built from the base as one transaction read it ([`BaseFilter::install`]).
#[derive(Debug)]
pub struct BuiltFilter {
    generation: i64,
    bloom: BloomFilter,
    capacity: usize,
    held: usize,
}

impl BuiltFilter {
    /// An empty filter for the base at `generation`, which holds about `tokens` tokens: room
    /// for half as many again before it is built anew.
    pub fn new(generation: i64, tokens: usize) -> BuiltFilter {
        let capacity = (tokens + tokens / 2).max(MIN_CAPACITY);
        BuiltFilter {
            generation,
            bloom: BloomFilter::with_false_pos(FALSE_POSITIVE_RATE).expected_items(capacity),
            capacity,
            held: 0,
        }
    }

    /// Adds tokens the base holds.
    pub fn add(&mut self, tokens: &[i64]) {
        for t in tokens {
            self.bloom.insert(t);
        }
        self.held += tokens.len();
    }
}

impl Default for BaseFilter {
    fn default() -> Self {
        BaseFilter { current: Mutex::new(None), wanted: AtomicBool::new(false), building: Default::default() }
    }
}

impl BaseFilter {
    /// Of `tokens`, those the base may hold, if the filter answers for `generation` (the
    /// store's, as the caller's transaction reads it); `None` (and a new filter asked for)
    /// if it does not.
    pub fn may_hold(&self, generation: i64, tokens: &[i64]) -> Option<Vec<i64>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_ref() {
            Some(kept) if kept.generation == generation => {
                Some(tokens.iter().copied().filter(|t| kept.bloom.contains(t)).collect())
            }
            _ => {
                self.wanted.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// This process writes `tokens` to the base and moves its generation from `from` to `to`
    /// (in the same transaction): a filter at `from` takes the tokens and follows. It follows
    /// before the transaction commits; if the commit fails, the store stays at `from` and never
    /// reaches `to` (a new random value), so lookups read the whole base until a new filter is
    /// built.
    pub fn follow(&self, from: i64, to: i64, tokens: &[i64]) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = current.as_mut()
            && kept.generation == from
        {
            for t in tokens {
                kept.bloom.insert(t);
            }
            kept.held += tokens.len();
            kept.generation = to;
            if kept.held > kept.capacity {
                // Still never wrong, but less and less useful: a larger one is built.
                self.wanted.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Puts a newly built filter in place (the one it replaces keeps answering until then).
    pub fn install(&self, built: BuiltFilter) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *current =
            Some(Kept { generation: built.generation, bloom: built.bloom, capacity: built.capacity, held: built.held });
    }

    /// Asks for a new filter.
    pub fn want(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    /// Whether a lookup asked for a new filter since the last [`BaseFilter::take_wanted`].
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    /// The generation the filter answers for, if it is built.
    pub fn generation(&self) -> Option<i64> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|k| k.generation)
    }
}

/// Tokens read a statement while a filter is built.
const BUILD_CHUNK: i64 = 1 << 18;

/// How often the keeper looks whether a lookup asked for a filter.
const EVERY: Duration = Duration::from_secs(2);

impl Store {
    /// Builds the base's filter from the base as one read transaction sees it, unless the
    /// filter already answers for that base; returns how many tokens it was built from
    /// (`None`: nothing built, or a PostgreSQL store, which keeps no filter).
    pub async fn build_base_filter(&self) -> Result<Option<usize>, StorageError> {
        let Some(filter) = &self.base_filter else { return Ok(None) };
        let _one_at_a_time = filter.building.lock().await;
        let mut tx = self.read().await?;
        let generation = tx.base_generation().await?;
        if filter.generation() == Some(generation) {
            tx.commit().await?;
            return Ok(None);
        }
        let count = tx.count_tokens(TokenLevel::Base).await?;
        let mut built = BuiltFilter::new(generation, usize::try_from(count).unwrap_or(0));
        let mut first = i64::MIN;
        loop {
            let tokens = tx.token_list(TokenLevel::Base, first, i64::MAX, BUILD_CHUNK).await?;
            let Some(&last) = tokens.last() else { break };
            built.add(&tokens);
            match last.checked_add(1) {
                Some(next) => first = next,
                None => break,
            }
        }
        tx.commit().await?;
        let held = built.held;
        filter.install(built);
        Ok(Some(held))
    }

    /// Builds the base's filter in the background whenever a lookup asks for it (the first
    /// push after the store opens does), until the store closes or is dropped. Nothing on
    /// PostgreSQL.
    pub fn keep_base_filter(self: &Arc<Self>) {
        if self.base_filter.is_none() {
            return;
        }
        let store: Weak<Store> = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { break };
                let Some(filter) = &store.base_filter else { break };
                if !filter.take_wanted() {
                    continue;
                }
                let started = std::time::Instant::now();
                match store.build_base_filter().await {
                    Ok(Some(tokens)) => {
                        tracing::info!(tokens, seconds = started.elapsed().as_secs_f64(), "token index filter built")
                    }
                    Ok(None) => {}
                    Err(e) => {
                        filter.want();
                        tracing::warn!(error = %e, "building the token index filter failed (lookups read the whole index meanwhile)");
                    }
                }
            }
        });
        self.filter_keeper.start(task);
    }
}

#[cfg(test)]
mod tests {
    use super::{BaseFilter, BuiltFilter};

    #[test]
    fn answers_only_for_its_generation_and_never_misses_a_token_it_followed() {
        let filter = BaseFilter::default();
        assert!(!filter.take_wanted(), "nothing is built before a lookup asks");
        assert_eq!(filter.may_hold(0, &[1, 2]), None, "nothing built yet: every token is asked");
        assert!(filter.take_wanted());

        let mut built = BuiltFilter::new(3, 1000);
        built.add(&[10, 20, 30]);
        filter.install(built);
        let held = filter.may_hold(3, &[10, 20, 30]).unwrap();
        assert_eq!(held, vec![10, 20, 30]);
        let absent: Vec<i64> = (1000..11_000).collect();
        let maybe = filter.may_hold(3, &absent).unwrap();
        assert!(maybe.len() < 300, "{} false 'maybe' of 10,000", maybe.len());
        assert!(!filter.take_wanted());

        // This process's write follows; another's leaves the filter behind.
        filter.follow(3, 4, &[40]);
        assert_eq!(filter.generation(), Some(4));
        assert_eq!(filter.may_hold(4, &[40, 10]).unwrap(), vec![40, 10]);
        assert_eq!(filter.may_hold(5, &[40]), None, "a generation it did not follow");
        assert!(filter.take_wanted());
        filter.follow(5, 6, &[50]);
        assert_eq!(filter.generation(), Some(4), "a write it was not at does not move it");
    }

    #[test]
    fn a_write_after_a_failed_one_never_finds_the_filter_at_its_generation() {
        let filter = BaseFilter::default();
        let mut built = BuiltFilter::new(7, 1000);
        built.add(&[10]);
        filter.install(built);
        // A transaction writes token 20 to the base, the filter follows, the commit fails:
        // the store stays at 7.
        let failed = super::next_generation(7).unwrap();
        filter.follow(7, failed, &[20]);
        // The next write, from 7, adds token 30 and commits.
        let committed = super::next_generation(7).unwrap();
        assert_ne!(committed, failed);
        filter.follow(7, committed, &[30]);
        assert_eq!(filter.may_hold(committed, &[30]), None, "the filter lacks 30: it must not answer");
        assert!(filter.take_wanted());
    }

    #[test]
    fn generations_are_new_and_never_zero() {
        let mut seen = std::collections::HashSet::new();
        let mut g = 0;
        for _ in 0..1000 {
            g = super::next_generation(g).unwrap();
            assert_ne!(g, 0);
            assert!(seen.insert(g));
        }
    }

    #[test]
    fn a_filter_past_its_capacity_keeps_answering_and_asks_to_be_rebuilt() {
        let filter = BaseFilter::default();
        filter.take_wanted();
        filter.install(BuiltFilter::new(0, 0));
        let many: Vec<i64> = (0..(super::MIN_CAPACITY as i64 + 1)).collect();
        filter.follow(0, 1, &many);
        assert!(filter.take_wanted());
        assert_eq!(filter.may_hold(1, &[0, 7, super::MIN_CAPACITY as i64]).unwrap().len(), 3);
    }
}
