//! Time windows: `when.during` (the decision's time is inside one of the
//! windows) and `when.outside` (inside none).
//!
//! ```yaml
//! when:
//!   during: {days: [MON-FRI], between: "09:00-18:00", timezone: Europe/Berlin}
//! ```
//!
//! The decision's time is converted to the window's zone (IANA names from
//! the database bundled into the binary; `UTC` when omitted), then its
//! local weekday must be one of `days` (every day when omitted) and its
//! local time of day within `between` (start inclusive, end exclusive; a
//! start after the end wraps past midnight: `22:00-06:00`; the whole day
//! when omitted). Local time makes daylight-saving changes behave as a
//! clock on the wall does: an office-hours window is 09:00–18:00 local on
//! both sides of a change; an hour skipped in spring is never inside a
//! window, an hour repeated in autumn is inside twice.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DAYS: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
const MINUTES_PER_DAY: u16 = 24 * 60;

/// One window as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDoc {
    #[serde(default)]
    days: Option<Vec<String>>,
    #[serde(default)]
    between: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

/// `during:`/`outside:` take one window or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WindowsDoc {
    One(WindowDoc),
    Many(Vec<WindowDoc>),
}

impl WindowsDoc {
    pub fn into_vec(self) -> Vec<WindowDoc> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

/// A compiled window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Bit `i` set: weekday `i` (Monday = 0) is in the window.
    days: u8,
    /// Minutes after local midnight: start inclusive, end exclusive.
    between: Option<(u16, u16)>,
    zone_name: String,
    zone: TimeZone,
}

impl Window {
    pub fn compile(doc: WindowDoc) -> Result<Self, String> {
        let days = match &doc.days {
            None => 0x7f,
            Some(days) if days.is_empty() => {
                return Err("days: an empty list matches no day".into());
            }
            Some(days) => days
                .iter()
                .try_fold(0u8, |mask, day| Ok::<_, String>(mask | day_mask(day)?))?,
        };
        let between = doc.between.as_deref().map(parse_between).transpose()?;
        let zone_name = doc.timezone.unwrap_or_else(|| "UTC".into());
        let zone = TimeZone::get(&zone_name)
            .map_err(|_| format!("timezone: {zone_name:?} is not an IANA time zone name"))?;
        Ok(Self {
            days,
            between,
            zone_name,
            zone,
        })
    }

    /// Whether `at` is inside the window.
    pub fn holds(&self, at: Timestamp) -> bool {
        let local = self.zone.to_datetime(at);
        let day = local.weekday().to_monday_zero_offset();
        if self.days & (1 << day) == 0 {
            return false;
        }
        let Some((start, end)) = self.between else {
            return true;
        };
        #[allow(clippy::cast_sign_loss)] // hour and minute are never negative
        let minute = (local.hour() as u16) * 60 + local.minute() as u16;
        if start < end {
            (start..end).contains(&minute)
        } else {
            minute >= start || minute < end
        }
    }

    pub fn to_json(&self) -> Value {
        let days: Vec<&str> = (0..7)
            .filter(|i| self.days & (1 << i) != 0)
            .map(|i| DAYS[i])
            .collect();
        let between = self
            .between
            .map(|(s, e)| format!("{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60));
        json!({"days": days, "between": between, "timezone": self.zone_name})
    }

    /// `MON-FRI 09:00-18:00 Europe/Berlin`, for explanations.
    pub fn describe(&self) -> String {
        let mut text = match self.days {
            0x7f => "every day".to_owned(),
            _ => (0..7)
                .filter(|i| self.days & (1 << i) != 0)
                .map(|i| DAYS[i])
                .collect::<Vec<_>>()
                .join(","),
        };
        if let Some((s, e)) = self.between {
            text.push_str(&format!(
                " {:02}:{:02}-{:02}:{:02}",
                s / 60,
                s % 60,
                e / 60,
                e % 60
            ));
        }
        text.push(' ');
        text.push_str(&self.zone_name);
        text
    }

    /// `at` in the window's zone, for explanations.
    pub fn local(&self, at: Timestamp) -> String {
        let local = self.zone.to_datetime(at);
        format!(
            "{} {} {}",
            DAYS[usize::from(local.weekday().to_monday_zero_offset().unsigned_abs())],
            local.strftime("%Y-%m-%d %H:%M"),
            self.zone_name
        )
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

fn weekday(name: &str) -> Result<u8, String> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(name.trim()))
        .map(|i| u8::try_from(i).unwrap_or(0))
        .ok_or_else(|| format!("days: {name:?} is not one of MON, TUE, WED, THU, FRI, SAT, SUN"))
}

/// `MON` or a range `MON-FRI` (wrapping: `FRI-MON` is FRI, SAT, SUN, MON).
fn day_mask(text: &str) -> Result<u8, String> {
    match text.split_once('-') {
        None => Ok(1 << weekday(text)?),
        Some((from, to)) => {
            let (from, to) = (weekday(from)?, weekday(to)?);
            let mut mask = 0u8;
            let mut day = from;
            loop {
                mask |= 1 << day;
                if day == to {
                    return Ok(mask);
                }
                day = (day + 1) % 7;
            }
        }
    }
}

fn parse_minute(text: &str) -> Result<u16, String> {
    let bad = || format!("between: {text:?} is not a time HH:MM");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `09:00-18:00`; `24:00` may end a window.
fn parse_between(text: &str) -> Result<(u16, u16), String> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("between: {text:?} is not a range HH:MM-HH:MM"))?;
    let (start, end) = (parse_minute(start)?, parse_minute(end)?);
    if start == MINUTES_PER_DAY {
        return Err("between: a window cannot start at 24:00".into());
    }
    if start == end {
        return Err(format!("between: {text:?} is empty"));
    }
    Ok((start, end.min(MINUTES_PER_DAY)))
}

/// Weekday names, for the property tests' generators.
pub fn weekday_name(day: Weekday) -> &'static str {
    DAYS[usize::from(day.to_monday_zero_offset().unsigned_abs())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(yaml: &str) -> Window {
        Window::compile(serde_norway::from_str(yaml).expect("yaml")).expect("valid window")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("RFC 3339")
    }

    #[test]
    fn office_hours_in_berlin() {
        let office = window("{days: [MON-FRI], between: '09:00-18:00', timezone: Europe/Berlin}");
        // Wednesday 2026-01-14: Berlin is UTC+1.
        assert!(office.holds(at("2026-01-14T08:00:00Z")), "09:00 local");
        assert!(!office.holds(at("2026-01-14T07:59:59Z")), "08:59 local");
        assert!(
            !office.holds(at("2026-01-14T17:00:00Z")),
            "18:00 local: end exclusive"
        );
        // Saturday.
        assert!(!office.holds(at("2026-01-17T10:00:00Z")));
        assert_eq!(
            office.local(at("2026-01-14T08:00:00Z")),
            "WED 2026-01-14 09:00 Europe/Berlin"
        );
    }

    #[test]
    fn daylight_saving_changes_keep_local_hours() {
        let office = window("{between: '09:00-18:00', timezone: Europe/Berlin}");
        // Summer (UTC+2): 09:00 local is 07:00 UTC.
        assert!(office.holds(at("2026-07-01T07:00:00Z")));
        assert!(!office.holds(at("2026-07-01T16:00:00Z")));
        // Spring forward on 2026-03-29: 02:00-03:00 local does not exist.
        let skipped = window("{between: '02:00-03:00', timezone: Europe/Berlin}");
        assert!(
            skipped.holds(at("2026-03-28T01:30:00Z")),
            "the day before, 02:30 local"
        );
        assert!(!skipped.holds(at("2026-03-29T00:59:00Z")), "01:59 local");
        assert!(
            !skipped.holds(at("2026-03-29T01:00:00Z")),
            "03:00 local, right after the gap"
        );
        // Fall back on 2026-10-25: 02:00-03:00 local happens twice.
        assert!(skipped.holds(at("2026-10-25T00:30:00Z")), "02:30 CEST");
        assert!(skipped.holds(at("2026-10-25T01:30:00Z")), "02:30 CET");
        assert!(!skipped.holds(at("2026-10-25T02:00:00Z")), "03:00 CET");
    }

    #[test]
    fn windows_wrap_past_midnight_and_across_the_week() {
        let night = window("{days: [FRI-MON], between: '22:00-06:00'}");
        assert!(night.holds(at("2026-01-16T23:00:00Z")), "Friday 23:00");
        assert!(night.holds(at("2026-01-19T05:59:00Z")), "Monday 05:59");
        assert!(!night.holds(at("2026-01-19T06:00:00Z")), "Monday 06:00");
        assert!(!night.holds(at("2026-01-20T23:00:00Z")), "Tuesday");
        let late = window("{between: '18:00-24:00'}");
        assert!(late.holds(at("2026-01-20T23:59:59Z")) && !late.holds(at("2026-01-20T00:00:00Z")));
    }

    #[test]
    fn bad_windows_are_refused_with_the_reason() {
        for (yaml, expected) in [
            ("{days: [MONDAY]}", "MONDAY"),
            ("{days: []}", "empty"),
            ("{between: '9:00-18:00'}", "HH:MM"),
            ("{between: '09:00-09:00'}", "empty"),
            ("{between: '09:60-10:00'}", "HH:MM"),
            ("{timezone: Mars/Olympus}", "IANA"),
        ] {
            let error =
                Window::compile(serde_norway::from_str(yaml).expect("yaml")).expect_err(yaml);
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }
}
