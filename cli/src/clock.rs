//! The community's time for the CLI: the zone times are shown and typed in, and "today" for
//! `--overdue` and `--mine`, so that a list agrees with the office dashboard's local day.
//!
//! The zone is the community's, as the relay said it at sign-in or at the last sync (its
//! `--utc-offset-minutes`), or `GRIDSYNC_UTC_OFFSET` (`+08:00`) over it; the device's own only
//! while the relay has not said one. `GRIDSYNC_NOW` (RFC 3339) pretends it is another moment,
//! for scripts and tests that need a fixed "today".

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use gridsync_core::ZoneSource;

pub const OFFSET_ENV: &str = "GRIDSYNC_UTC_OFFSET";
pub const NOW_ENV: &str = "GRIDSYNC_NOW";

/// The zone `GRIDSYNC_UTC_OFFSET` sets over the relay's, if it is set.
pub fn override_offset() -> Result<Option<FixedOffset>> {
    match std::env::var(OFFSET_ENV) {
        Ok(text) if !text.trim().is_empty() => parse_offset(text.trim()).map(Some),
        _ => Ok(None),
    }
}

fn parse_offset(text: &str) -> Result<FixedOffset> {
    let bad = || {
        anyhow::anyhow!(
            "{OFFSET_ENV}={text} 无效 is not a time zone: write it as +08:00 (or -05:30)"
        )
    };
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let hours: i32 = hours.parse().map_err(|_| bad())?;
    let minutes: i32 = minutes.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        bail!(bad());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

/// Now, in the community's zone.
pub fn now(offset: FixedOffset) -> Result<DateTime<FixedOffset>> {
    let utc = match std::env::var(NOW_ENV) {
        Ok(text) if !text.trim().is_empty() => DateTime::parse_from_rfc3339(text.trim())
            .with_context(|| format!("{NOW_ENV}={text} 不是时间 is not an RFC 3339 time"))?
            .with_timezone(&Utc),
        _ => Utc::now(),
    };
    Ok(utc.with_timezone(&offset))
}

/// Today in the community's zone.
pub fn today(offset: FixedOffset) -> Result<NaiveDate> {
    Ok(now(offset)?.date_naive())
}

/// An RFC 3339 time as people read it in the community's zone (`2026-11-30 09:00`); other text
/// (a date) as it is.
pub fn show(text: &str, offset: FixedOffset) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t
            .with_timezone(&offset)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => text.to_string(),
    }
}

/// The zone as people write it: `UTC+08:00`.
pub fn describe(offset: FixedOffset) -> String {
    format!("UTC{offset}")
}

/// Which zone the times are in and where it comes from, for the end of what shows times.
pub fn says(offset: FixedOffset, source: ZoneSource) -> String {
    let zone = describe(offset);
    match source {
        ZoneSource::Relay => {
            format!("时间为 {zone}（服务器设定） times in {zone}, the relay's setting")
        }
        ZoneSource::Set => {
            format!("时间为 {zone}（{OFFSET_ENV} 设定） times in {zone}, set by {OFFSET_ENV}")
        }
        _ => format!(
            "时间为 {zone}（本机时区，服务器未告知社区时区，请运行 `gridsync sync`） times in {zone}, \
             this device's zone: the relay has not said the community's, run `gridsync sync`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_offsets_parse_as_written() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(parse_offset("8").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(
            parse_offset("-05:30").unwrap().local_minus_utc(),
            -(5 * 3600 + 1800)
        );
        assert!(parse_offset("Asia/Shanghai").is_err());
        assert!(parse_offset("+25:00").is_err());
    }

    #[test]
    fn test_times_show_in_the_zone_and_dates_as_written() {
        let east8 = parse_offset("+08:00").unwrap();
        assert_eq!(show("2026-11-30T22:10:00Z", east8), "2026-12-01 06:10");
        assert_eq!(show("2026-11-30", east8), "2026-11-30");
        assert_eq!(describe(east8), "UTC+08:00");
    }
}
