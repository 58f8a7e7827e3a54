//! Delivery windows: when an institution takes batches, in Japan time, e.g.
//! `weekdays 08:00-19:00` or `mon,tue,wed 09:00-17:00`. Outside the window
//! nothing is sent.

use chrono::{Datelike, Duration, NaiveTime, TimeZone, Weekday};

use super::DomainError;
use super::time::{Millis, jst, to_utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryWindow {
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
}

fn bad(raw: &str) -> DomainError {
    DomainError::new(
        "invalid_delivery_window",
        format!(
            "delivery window '{raw}' must look like 'weekdays 08:00-19:00', 'daily 00:00-24:00' or 'mon,wed,fri 09:00-17:00'"
        ),
    )
}

fn parse_time(raw: &str, whole: &str) -> Result<NaiveTime, DomainError> {
    if raw == "24:00" {
        return Ok(NaiveTime::from_hms_opt(23, 59, 59).expect("valid time"));
    }
    NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| bad(whole))
}

impl DeliveryWindow {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let (days_part, times) = raw.trim().split_once(' ').ok_or_else(|| bad(raw))?;
        let (start, end) = times.trim().split_once('-').ok_or_else(|| bad(raw))?;
        let (start, end) = (parse_time(start.trim(), raw)?, parse_time(end.trim(), raw)?);
        if start >= end {
            return Err(bad(raw));
        }
        let mut days = [false; 7];
        match days_part {
            "daily" => days = [true; 7],
            "weekdays" => days[..5].fill(true),
            list => {
                for d in list.split(',') {
                    let wd: Weekday = d.trim().parse().map_err(|_| bad(raw))?;
                    days[wd.num_days_from_monday() as usize] = true;
                }
            }
        }
        Ok(Self { days, start, end })
    }

    pub fn is_open(&self, at: Millis) -> bool {
        let local = to_utc(at).with_timezone(&jst());
        let day = local.weekday().num_days_from_monday() as usize;
        let t = local.time();
        self.days[day] && t >= self.start && t < self.end
    }

    /// The next instant at or after `at` when the window is open.
    pub fn next_open(&self, at: Millis) -> Millis {
        if self.is_open(at) {
            return at;
        }
        let local = to_utc(at).with_timezone(&jst());
        for offset in 0..8 {
            let date = local.date_naive() + Duration::days(offset);
            let day = date.weekday().num_days_from_monday() as usize;
            if !self.days[day] {
                continue;
            }
            let opens = jst()
                .from_local_datetime(&date.and_time(self.start))
                .single()
                .expect("JST has no gaps")
                .timestamp_millis();
            if opens >= at {
                return opens;
            }
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn jst_ms(y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
        jst()
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_millis()
    }

    #[test]
    fn weekdays_window() {
        let w = DeliveryWindow::parse("weekdays 08:00-19:00").unwrap();
        // 2026-11-23 is a Monday.
        assert!(w.is_open(jst_ms(2026, 11, 23, 8, 0)));
        assert!(!w.is_open(jst_ms(2026, 11, 23, 19, 0)));
        assert!(!w.is_open(jst_ms(2026, 11, 28, 10, 0)), "Saturday");
        assert_eq!(
            w.next_open(jst_ms(2026, 11, 27, 20, 0)),
            jst_ms(2026, 11, 30, 8, 0)
        );
        assert_eq!(
            w.next_open(jst_ms(2026, 11, 23, 7, 0)),
            jst_ms(2026, 11, 23, 8, 0)
        );
    }

    #[test]
    fn parses_lists_and_rejects_nonsense() {
        let w = DeliveryWindow::parse("mon,wed 09:00-17:00").unwrap();
        assert!(w.is_open(jst_ms(2026, 11, 25, 9, 30)));
        assert!(!w.is_open(jst_ms(2026, 11, 24, 9, 30)));
        assert!(
            DeliveryWindow::parse("daily 00:00-24:00")
                .unwrap()
                .is_open(jst_ms(2026, 11, 29, 23, 30))
        );
        for bad in [
            "",
            "weekdays",
            "weekdays 19:00-08:00",
            "someday 08:00-09:00",
            "daily 8-9",
        ] {
            assert_eq!(
                DeliveryWindow::parse(bad).unwrap_err().code,
                "invalid_delivery_window",
                "{bad}"
            );
        }
    }
}
