//! Time conventions: instants are UTC milliseconds since the epoch; calendar
//! dates are `NaiveDate`; Japan (JST, UTC+9, no DST) is for display only.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};

use super::DomainError;

pub type Millis = i64;

pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

pub fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("valid offset")
}

pub fn to_utc(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// RFC 3339 in UTC with a `Z`, as used on the wire and in the API.
pub fn rfc3339(ms: Millis) -> String {
    to_utc(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The calendar date in Japan at an instant: due dates are Japanese days.
pub fn jst_date(ms: Millis) -> NaiveDate {
    to_utc(ms).with_timezone(&jst()).date_naive()
}

pub fn parse_date(field: &str, raw: &str) -> Result<NaiveDate, DomainError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        DomainError::new(
            "invalid_date",
            format!("{field}: '{raw}' is not a date in the form YYYY-MM-DD"),
        )
    })
}

/// The Japanese era form used on paper (和暦), e.g. 令和8年11月23日.
pub fn wareki(date: NaiveDate) -> String {
    use chrono::Datelike;
    let eras = [
        (NaiveDate::from_ymd_opt(2019, 5, 1), "令和"),
        (NaiveDate::from_ymd_opt(1989, 1, 8), "平成"),
        (NaiveDate::from_ymd_opt(1926, 12, 25), "昭和"),
        (NaiveDate::from_ymd_opt(1912, 7, 30), "大正"),
    ];
    for (start, name) in eras {
        let start = start.expect("valid era start");
        if date >= start {
            let year = date.year() - start.year() + 1;
            let year = if year == 1 {
                "元".to_owned()
            } else {
                year.to_string()
            };
            return format!("{name}{year}年{}月{}日", date.month(), date.day());
        }
    }
    date.format("%Y年%-m月%-d日").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wareki_eras() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(wareki(d(2026, 11, 23)), "令和8年11月23日");
        assert_eq!(wareki(d(2019, 5, 1)), "令和元年5月1日");
        assert_eq!(wareki(d(2019, 4, 30)), "平成31年4月30日");
        assert_eq!(wareki(d(1989, 1, 7)), "昭和64年1月7日");
    }

    #[test]
    fn jst_date_crosses_midnight_before_utc() {
        // 2026-11-22T15:30Z is already the 23rd in Japan.
        let ms = Utc
            .with_ymd_and_hms(2026, 11, 22, 15, 30, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(jst_date(ms), NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
    }
}
