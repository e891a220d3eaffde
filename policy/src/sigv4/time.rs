//! SigV4's calendar: the `YYYYMMDD` scope date, the `YYYYMMDDTHHMMSSZ` request time
//! (`X-Amz-Date`) and the HTTP `Date` header it may fall back to. UTC only, proleptic
//! Gregorian, years 1970..=9999, no clock: callers convert their `SystemTime`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a day.
const DAY_SECS: i64 = 86_400;
/// The last second SigV4's four-digit years can show (9999-12-31T23:59:59Z).
const SECS_MAX: i64 = 253_402_300_799;

/// A calendar day in UTC, the date of a credential scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The date `year-month-day`, if it exists and 1970 <= year <= 9999.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let valid = (1970..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        valid.then_some(Self { year, month, day })
    }

    /// Parses `YYYYMMDD` (exactly eight digits).
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 8 {
            return None;
        }
        let year = u16::try_from(digits(&b[0..4])?).ok()?;
        let month = u8::try_from(digits(&b[4..6])?).ok()?;
        let day = u8::try_from(digits(&b[6..8])?).ok()?;
        Self::new(year, month, day)
    }

    /// The year.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month, 1..=31.
    pub fn day(&self) -> u8 {
        self.day
    }

    fn days_since_epoch(&self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        )
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

/// A request time in whole seconds since the Unix epoch (UTC), as SigV4 signs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
}

impl Timestamp {
    /// The timestamp `secs` after the epoch, if its year has four digits.
    pub fn from_unix_secs(secs: i64) -> Option<Self> {
        (0..=SECS_MAX).contains(&secs).then_some(Self { secs })
    }

    /// `time` truncated to whole seconds; `None` before 1970 or after 9999.
    pub fn from_system_time(time: SystemTime) -> Option<Self> {
        let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Self::from_unix_secs(i64::try_from(secs).ok()?)
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        // secs is in 0..=SECS_MAX by construction.
        UNIX_EPOCH + Duration::from_secs(self.secs.unsigned_abs())
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(self) -> i64 {
        self.secs
    }

    /// Parses the ISO 8601 basic form SigV4 uses: `YYYYMMDDTHHMMSSZ`, nothing else.
    pub fn parse_amz(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let date = Date::parse(text.get(0..8)?)?;
        let hour = digits(&b[9..11])?;
        let minute = digits(&b[11..13])?;
        let second = digits(&b[13..15])?;
        Self::from_parts(date, hour, minute, second)
    }

    /// Parses the ISO 8601 extended UTC form of a POST policy's `expiration`:
    /// `YYYY-MM-DDTHH:MM:SSZ` or with a fraction of a second (`…:SS.000Z`, 1 to 9
    /// digits, dropped: the instant is the whole second it falls in).
    pub fn parse_iso8601(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        if b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
            return None;
        }
        let fraction = &b[19..b.len() - 1];
        if let Some((&dot, digits_)) = fraction.split_first() {
            if dot != b'.' || !(1..=9).contains(&digits_.len()) || digits(digits_).is_none() {
                return None;
            }
        }
        let year = u16::try_from(digits(&b[0..4])?).ok()?;
        let month = u8::try_from(digits(&b[5..7])?).ok()?;
        let day = u8::try_from(digits(&b[8..10])?).ok()?;
        let date = Date::new(year, month, day)?;
        Self::from_parts(
            date,
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        )
    }

    /// Parses an HTTP `Date` in the IMF-fixdate form (`Fri, 24 May 2013 00:00:00 GMT`),
    /// the only form RFC 9110 lets senders generate.
    pub fn parse_http_date(text: &str) -> Option<Self> {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let b = text.as_bytes();
        // "Fri, 24 May 2013 00:00:00 GMT" is 29 bytes, every separator at a fixed place.
        if b.len() != 29 || &b[3..5] != b", " || !text.ends_with(" GMT") {
            return None;
        }
        let weekday = DAYS.iter().position(|d| d.as_bytes() == &b[0..3])?;
        if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
            return None;
        }
        let day = u8::try_from(digits(&b[5..7])?).ok()?;
        let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11])?;
        let year = u16::try_from(digits(&b[12..16])?).ok()?;
        let date = Date::new(year, u8::try_from(month + 1).ok()?, day)?;
        // 1970-01-01 was a Thursday (index 3).
        let weekday_of_date = (date.days_since_epoch() + 3).rem_euclid(7);
        if usize::try_from(weekday_of_date).ok()? != weekday {
            return None;
        }
        Self::from_parts(
            date,
            digits(&b[17..19])?,
            digits(&b[20..22])?,
            digits(&b[23..25])?,
        )
    }

    fn from_parts(date: Date, hour: u32, minute: u32, second: u32) -> Option<Self> {
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let secs = date.days_since_epoch() * DAY_SECS
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second);
        Self::from_unix_secs(secs)
    }

    /// The UTC calendar day of this instant.
    pub fn date(self) -> Date {
        let (year, month, day) = civil_from_days(self.secs.div_euclid(DAY_SECS));
        // secs is within years 1970..=9999, so the parts fit and the date exists.
        Date {
            year: u16::try_from(year).unwrap_or(1970),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }

    /// Seconds between `self` and `other`, whichever is later.
    pub fn abs_diff_secs(self, other: Timestamp) -> u64 {
        self.secs.abs_diff(other.secs)
    }
}

impl fmt::Display for Timestamp {
    /// `YYYYMMDDTHHMMSSZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_day = self.secs.rem_euclid(DAY_SECS);
        write!(
            f,
            "{}T{:02}{:02}{:02}Z",
            self.date(),
            in_day / 3600,
            in_day / 60 % 60,
            in_day % 60
        )
    }
}

/// The value of a run of ASCII digits (at most 9, so it cannot overflow).
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01, as (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_time_round_trips() {
        let t = Timestamp::parse_amz("20130524T000000Z").unwrap();
        assert_eq!(t.unix_secs(), 1_369_353_600);
        assert_eq!(t.to_string(), "20130524T000000Z");
        assert_eq!(t.date().to_string(), "20130524");
        let t = Timestamp::parse_amz("20240229T235959Z").unwrap();
        assert_eq!(t.to_string(), "20240229T235959Z");
        assert_eq!(
            Timestamp::from_system_time(t.to_system_time()),
            Some(t),
            "SystemTime round trip"
        );
    }

    #[test]
    fn amz_time_is_strict() {
        for bad in [
            "20130524T000000",
            "20130524t000000Z",
            "2013-05-24T00:00:00Z",
            "20130230T000000Z",
            "20230229T000000Z",
            "20130524T240000Z",
            "20130524T006000Z",
            "20130524T000060Z",
            "19691231T235959Z",
            "2013052AT000000Z",
            "+0130524T000000Z",
            "",
        ] {
            assert_eq!(Timestamp::parse_amz(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso8601_expiration_forms() {
        let t = Timestamp::parse_iso8601("2015-12-30T12:00:00.000Z").unwrap();
        assert_eq!(t.to_string(), "20151230T120000Z");
        assert_eq!(Timestamp::parse_iso8601("2015-12-30T12:00:00Z"), Some(t));
        assert_eq!(
            Timestamp::parse_iso8601("2015-12-30T12:00:00.999999999Z"),
            Some(t)
        );
        for bad in [
            "2015-12-30T12:00:00",
            "2015-12-30 12:00:00Z",
            "2015-12-30T12:00:00.Z",
            "2015-12-30T12:00:00.0000000000Z",
            "2015-12-30T12:00:00,000Z",
            "2015-12-30T12:00:00.00aZ",
            "2015-12-30T12:00:00+00:00",
            "2015-02-30T12:00:00Z",
            "2015-12-30T24:00:00Z",
            "20151230T120000Z",
            "",
        ] {
            assert_eq!(Timestamp::parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_date_is_imf_fixdate_with_the_right_weekday() {
        let t = Timestamp::parse_http_date("Fri, 24 May 2013 00:00:00 GMT").unwrap();
        assert_eq!(t.to_string(), "20130524T000000Z");
        assert_eq!(
            Timestamp::parse_http_date("Sat, 24 May 2013 00:00:00 GMT"),
            None
        );
        assert_eq!(
            Timestamp::parse_http_date("Friday, 24-May-13 00:00:00 GMT"),
            None
        );
        assert_eq!(
            Timestamp::parse_http_date("Fri, 24 May 2013 00:00:00 UTC"),
            None
        );
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = Date::new(1970, 1, 1).unwrap().days_since_epoch();
        assert_eq!(start, 0);
        for days in (0..146_097 * 2).step_by(13) {
            let t = Timestamp::from_unix_secs(days * DAY_SECS).unwrap();
            let d = t.date();
            assert_eq!(d.days_since_epoch(), days);
            assert_eq!(Date::parse(&d.to_string()), Some(d));
        }
    }
}
