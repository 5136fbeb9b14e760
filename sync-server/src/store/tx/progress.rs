//! Progress figures: each household's row (`household_stats`) and their sums per area
//! (`area_progress`; households first seen per area and day in `area_new`), kept up to date
//! by each write — a province's page reads a hundred rows, not a million.

use std::collections::BTreeMap;

use sqlx::{AssertSqlSafe, Row};

use super::super::model::HouseholdStats;
use super::{Result, Tx, placeholders, value_rows};

/// Seconds Vietnam is ahead of UTC (its days start at 17:00 UTC).
const VIETNAM_OFFSET: i64 = 7 * 3600;

/// The start (Unix time) of the day in Vietnam that holds `t`.
fn day_of(t: i64) -> i64 {
    t - (t + VIETNAM_OFFSET).rem_euclid(86_400)
}

/// Changes to one area's sums.
#[derive(Debug, Default, Clone, Copy)]
struct AreaDelta {
    households: i64,
    residents: i64,
    complete: i64,
    cccd_present: i64,
    cccd_valid: i64,
    verified: i64,
    verified_residents: i64,
    waiting: i64,
    returned: i64,
    approved: i64,
}

impl AreaDelta {
    /// Adds (`sign` 1) or takes away (`sign` -1) one household's figures.
    fn add(&mut self, s: &HouseholdStats, sign: i64) {
        self.households += sign;
        self.residents += sign * s.members;
        self.complete += sign * i64::from(s.complete);
        self.cccd_present += sign * s.cccd_present;
        self.cccd_valid += sign * s.cccd_valid;
        self.verified += sign * i64::from(s.verified);
        self.verified_residents += sign * s.verified_residents;
        match s.review.as_str() {
            "waiting" => self.waiting += sign,
            "returned" => self.returned += sign,
            "approved" => self.approved += sign,
            _ => {}
        }
    }
}

/// One household's figures to write: its id, area and figures.
pub struct StatsRow<'a> {
    /// Household id.
    pub doc_id: &'a str,
    /// Its area now.
    pub area: &'a str,
    /// Its figures now.
    pub stats: &'a HouseholdStats,
}

impl Tx<'_> {
    /// Writes households' figures (ids unique) and moves their areas' sums by the difference
    /// with what was stored: a new household adds itself to its area and to the day it was
    /// first seen; a household that moved leaves its old area's sums (and day) for the new one.
    pub async fn put_stats_rows(&mut self, rows: &[StatsRow<'_>], now: i64) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // What was stored: (area, figures, first seen).
        let sql = format!(
            "SELECT doc_id, area, members, complete, cccd_present, cccd_valid, verified, verified_residents, review,
                 first_seen_at FROM household_stats WHERE doc_id IN ({})",
            placeholders(self.dialect, 1, rows.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for r in rows {
            query = query.bind(r.doc_id);
        }
        let mut before: BTreeMap<String, (String, HouseholdStats, i64)> = BTreeMap::new();
        for r in query.fetch_all(&mut *self.tx).await? {
            let stats = HouseholdStats {
                members: r.try_get(2)?,
                complete: r.try_get::<i64, _>(3)? != 0,
                cccd_present: r.try_get(4)?,
                cccd_valid: r.try_get(5)?,
                verified: r.try_get::<i64, _>(6)? != 0,
                verified_residents: r.try_get(7)?,
                review: r.try_get(8)?,
            };
            before.insert(r.try_get(0)?, (r.try_get(1)?, stats, r.try_get(9)?));
        }
        let mut areas: BTreeMap<&str, AreaDelta> = BTreeMap::new();
        let mut days: BTreeMap<(&str, i64), i64> = BTreeMap::new();
        for r in rows {
            match before.get(r.doc_id) {
                Some((area, old, first_seen)) => {
                    areas.entry(area.as_str()).or_default().add(old, -1);
                    if area != r.area {
                        *days.entry((area.as_str(), day_of(*first_seen))).or_default() -= 1;
                        *days.entry((r.area, day_of(*first_seen))).or_default() += 1;
                    }
                }
                None => *days.entry((r.area, day_of(now))).or_default() += 1,
            }
            areas.entry(r.area).or_default().add(r.stats, 1);
        }

        let sql = format!(
            "INSERT INTO household_stats (doc_id, area, members, complete, cccd_present, cccd_valid, first_seen_at,
                 updated_at, verified, verified_residents, review) VALUES {}
             ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, members = excluded.members,
                 complete = excluded.complete, cccd_present = excluded.cccd_present,
                 cccd_valid = excluded.cccd_valid, updated_at = excluded.updated_at,
                 verified = excluded.verified, verified_residents = excluded.verified_residents,
                 review = excluded.review",
            value_rows(self.dialect, rows.len(), 11)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for r in rows {
            let s = r.stats;
            query = query
                .bind(r.doc_id)
                .bind(r.area)
                .bind(s.members)
                .bind(i64::from(s.complete))
                .bind(s.cccd_present)
                .bind(s.cccd_valid)
                .bind(now)
                .bind(now)
                .bind(i64::from(s.verified))
                .bind(s.verified_residents)
                .bind(s.review.as_str());
        }
        query.execute(&mut *self.tx).await?;

        // The sums, in area order (two writers of one province wait for each other on its lock).
        let sql = format!(
            "INSERT INTO area_progress (area, households, residents, complete, cccd_present, cccd_valid, verified,
                 verified_residents, review_waiting, review_returned, review_approved) VALUES {}
             ON CONFLICT (area) DO UPDATE SET households = area_progress.households + excluded.households,
                 residents = area_progress.residents + excluded.residents,
                 complete = area_progress.complete + excluded.complete,
                 cccd_present = area_progress.cccd_present + excluded.cccd_present,
                 cccd_valid = area_progress.cccd_valid + excluded.cccd_valid,
                 verified = area_progress.verified + excluded.verified,
                 verified_residents = area_progress.verified_residents + excluded.verified_residents,
                 review_waiting = area_progress.review_waiting + excluded.review_waiting,
                 review_returned = area_progress.review_returned + excluded.review_returned,
                 review_approved = area_progress.review_approved + excluded.review_approved",
            value_rows(self.dialect, areas.len(), 11)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (area, d) in &areas {
            query = query
                .bind(*area)
                .bind(d.households)
                .bind(d.residents)
                .bind(d.complete)
                .bind(d.cccd_present)
                .bind(d.cccd_valid)
                .bind(d.verified)
                .bind(d.verified_residents)
                .bind(d.waiting)
                .bind(d.returned)
                .bind(d.approved);
        }
        query.execute(&mut *self.tx).await?;

        days.retain(|_, n| *n != 0);
        if !days.is_empty() {
            let sql = format!(
                "INSERT INTO area_new (area, day, households) VALUES {}
                 ON CONFLICT (area, day) DO UPDATE SET households = area_new.households + excluded.households",
                value_rows(self.dialect, days.len(), 3)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for ((area, day), n) in &days {
                query = query.bind(*area).bind(*day).bind(*n);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_midnight_in_vietnam() {
        // 2026-12-03 17:00 UTC is midnight of the 4th in Vietnam.
        let midnight = 1_796_317_200;
        assert_eq!(day_of(midnight), midnight);
        assert_eq!(day_of(midnight + 86_399), midnight);
        assert_eq!(day_of(midnight - 1), midnight - 86_400);
    }

    #[test]
    fn a_household_moves_its_figures() {
        let s = HouseholdStats { members: 3, complete: true, review: "waiting".into(), ..HouseholdStats::default() };
        let (mut from, mut to) = (AreaDelta::default(), AreaDelta::default());
        from.add(&s, -1);
        to.add(&s, 1);
        assert_eq!((from.households, from.residents, from.complete, from.waiting), (-1, -3, -1, -1));
        assert_eq!((to.households, to.residents, to.complete, to.waiting), (1, 3, 1, 1));
    }
}
