//! Times and days as the person reads them, in their time zone (the system's, or `TZ`).
//! Only `Clock::local` and `now_ms` read the system clock; tests give their own `now`.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// Turns server timestamps (ms) into local days and times.
pub struct Clock {
    /// The zone every day and time is shown in.
    zone: TimeZone,
    /// Today, where the person is.
    today: Date,
}

impl Clock {
    /// The system's time zone, today.
    pub fn local() -> Self {
        Self::new(TimeZone::system(), Timestamp::now())
    }

    /// A clock in `zone`, at `now`. Today stays the day of `now`: the chat makes a new clock
    /// for each draw, so Today moves at midnight.
    pub fn new(zone: TimeZone, now: Timestamp) -> Self {
        let today = zone.to_datetime(now).date();
        Self { zone, today }
    }

    /// A server timestamp (ms) as a local date and time; one out of range shows as the epoch.
    fn date_time(&self, ms: i64) -> jiff::civil::DateTime {
        self.zone
            .to_datetime(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    /// The day of a timestamp.
    pub fn day(&self, ms: i64) -> Date {
        self.date_time(ms).date()
    }

    /// The time of day of a timestamp, as `HH:MM`.
    pub fn time(&self, ms: i64) -> String {
        self.date_time(ms).strftime("%H:%M").to_string()
    }

    /// A day's separator label: today, yesterday, or the date in English (`Friday 8 January
    /// 2027`).
    pub fn day_label(&self, day: Date) -> String {
        if day == self.today {
            "Today".into()
        } else if self.today.yesterday().ok() == Some(day) {
            "Yesterday".into()
        } else {
            day.strftime("%A %-d %B %Y").to_string()
        }
    }
}

/// Now, in ms since the epoch (0 when the system clock is before it), on the same scale as
/// the server's timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    use super::Clock;

    #[test]
    fn days_and_times_are_local() {
        // 2026-12-07 18:30 UTC is 2026-12-08 03:30 in Seoul.
        let now: Timestamp = "2026-12-07T18:30:00Z".parse().unwrap();
        let ms = now.as_millisecond();
        let utc = Clock::new(TimeZone::UTC, now);
        assert_eq!(utc.time(ms), "18:30");
        assert_eq!(utc.day_label(utc.day(ms)), "Today");
        assert_eq!(utc.day_label(utc.day(ms - 86_400_000)), "Yesterday");
        assert_eq!(
            utc.day_label(utc.day(ms - 3 * 86_400_000)),
            "Friday 4 December 2026"
        );
        let seoul = Clock::new(TimeZone::fixed(jiff::tz::offset(9)), now);
        assert_eq!(seoul.time(ms), "03:30");
        assert_eq!(seoul.day(ms).to_string(), "2026-12-08");
    }
}
