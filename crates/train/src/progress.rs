//! What a run shows while an epoch runs: a progress bar on a terminal, a plain line every
//! `--log-every` steps otherwise (a log file), or nothing when progress is off; and [`say`],
//! which stamps every line with the time when stderr is not a terminal.
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints a line of the run's story to stderr, prefixed with the UTC time when stderr is not
/// a terminal (a log file or a pipe, where there is no bar and the time tells the pace).
pub fn say(line: impl std::fmt::Display) {
    if std::io::stderr().is_terminal() {
        eprintln!("{line}");
    } else {
        eprintln!("[{}] {line}", utc_now());
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The current UTC time as `2026-12-02 14:03:59`.
fn utc_now() -> String {
    utc_time(unix_seconds() as i64)
}

/// `secs` since the Unix epoch as a UTC date and time (the civil calendar from a day count:
/// 400-year eras of 146097 days, years starting in March so the leap day comes last).
fn utc_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A duration as `1h02m`, `3m05s` or `42s`.
pub fn short_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// The progress display of one epoch.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    /// Plain lines when there is no bar: every this many steps (0: none).
    lines: u64,
    epoch: usize,
    epochs: usize,
    steps_per_epoch: usize,
}

impl EpochProgress {
    /// The display of epoch `epoch` (1-based) of `epochs`, starting `skip` steps in; without a
    /// terminal, a line every `every` steps.
    pub fn new(
        show: bool,
        every: u64,
        steps_per_epoch: usize,
        skip: usize,
        epoch: usize,
        epochs: usize,
    ) -> Self {
        let bar = (show && std::io::stderr().is_terminal())
            .then(|| progress_bar(steps_per_epoch as u64, skip as u64, epoch, epochs));
        EpochProgress {
            bar,
            lines: if show { every } else { 0 },
            epoch,
            epochs,
            steps_per_epoch,
        }
    }

    /// After step `in_epoch` of the epoch: `status` is the running loss, accuracy and rate.
    pub fn update(&self, in_epoch: u64, status: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(in_epoch);
            bar.set_message(status);
        } else if self.lines > 0 && in_epoch.is_multiple_of(self.lines) {
            say(format!(
                "epoch {}/{} step {in_epoch}/{} {status}",
                self.epoch, self.epochs, self.steps_per_epoch
            ));
        }
    }

    /// Leaves the bar where it stopped (the run stops mid-epoch).
    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    /// Clears the bar at the end of the epoch (the epoch's summary line replaces it).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(len: u64, pos: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar.set_position(pos);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_match_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        // 2000-02-29 (a leap day in a year divisible by 400), and the day after.
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_time(951_868_799), "2000-02-29 23:59:59");
        assert_eq!(utc_time(951_868_800), "2000-03-01 00:00:00");
        // `date -u -d @1796221439`: 2026-12-02 14:23:59.
        assert_eq!(utc_time(1_796_221_439), "2026-12-02 14:23:59");
        assert_eq!(utc_time(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(42.4), "42s");
        assert_eq!(short_duration(185.0), "3m05s");
        assert_eq!(short_duration(3720.0), "1h02m");
        assert_eq!(short_duration(-5.0), "0s");
    }
}
