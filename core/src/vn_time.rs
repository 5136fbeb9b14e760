//! Vietnam's civil time (Asia/Ho_Chi_Minh): "today", and the days, weeks and months of
//! progress, slips and exports, wherever they are computed. Vietnam keeps UTC+7 all year
//! (no daylight saving since 1975), so a fixed offset is the zone.

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat};

/// Asia/Ho_Chi_Minh's offset from UTC, in seconds.
pub const VIETNAM_OFFSET_SECS: i32 = 7 * 3600;

/// Vietnam's offset as a chrono zone.
pub fn vietnam() -> FixedOffset {
    // 7 hours is within chrono's ±24 h range.
    FixedOffset::east_opt(VIETNAM_OFFSET_SECS).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
}

/// The time `unix` (seconds) in Vietnam.
pub fn local(unix: i64) -> DateTime<FixedOffset> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default().with_timezone(&vietnam())
}

/// The day it is in Vietnam at `unix`.
pub fn date(unix: i64) -> NaiveDate {
    local(unix).date_naive()
}

/// `unix` as RFC 3339 in Vietnam time: `2026-12-03T23:05:00+07:00`.
pub fn rfc3339(unix: i64) -> String {
    local(unix).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// The Unix time at which Vietnam's day `day` begins.
pub fn start_of(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp()) - i64::from(VIETNAM_OFFSET_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_turns_at_midnight_in_hanoi_not_in_greenwich() {
        // 2026-12-03 17:00 UTC is 2026-12-04 00:00 in Hà Nội.
        let t = DateTime::parse_from_rfc3339("2026-12-03T17:00:00Z").unwrap().timestamp();
        assert_eq!(date(t - 1), NaiveDate::from_ymd_opt(2026, 12, 3).unwrap());
        assert_eq!(date(t), NaiveDate::from_ymd_opt(2026, 12, 4).unwrap());
        assert_eq!(rfc3339(t), "2026-12-04T00:00:00+07:00");
        assert_eq!(start_of(NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()), t);
    }
}
