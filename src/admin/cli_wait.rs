//! `--wait` of `mirrors --create` and `mirrors --promote`: polls the mirrors until they
//! caught up with their sources (or stopped), showing records and bytes to go, the
//! copy rate and an ETA: a progress bar on a terminal, a plain line every few seconds
//! otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::cli::Api;

const POLL: Duration = Duration::from_millis(500);
/// How often a plain line is printed when not on a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// What the wait is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// Every partition fetched at least once and no lag left.
    CaughtUp,
    /// The mirrors show STOPPED (promoted or failed over).
    Stopped,
}

/// Where the named mirrors stand, summed over their partitions.
#[derive(Debug, Default, PartialEq)]
struct Progress {
    /// Records on the mirrors so far.
    copied: i64,
    records_to_go: i64,
    /// None while a partition with lag has no estimate yet.
    bytes_to_go: Option<i64>,
    /// Partitions whose source end is not known yet.
    unfetched: usize,
    done: bool,
}

impl Progress {
    /// `Err` names a mirror that failed or is gone.
    fn of(mirrors: &Value, topics: &[String], until: Until) -> Result<Self, String> {
        let mut progress = Progress {
            bytes_to_go: Some(0),
            done: true,
            ..Default::default()
        };
        for topic in topics {
            let mirror = mirrors["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["mirror_topic_name"].as_str() == Some(topic))
                .ok_or_else(|| format!("mirror topic '{topic}' is gone"))?;
            let state = mirror["mirror_status"].as_str().unwrap_or("");
            if state == "FAILED" {
                let reason = mirror["reason"].as_str().unwrap_or("no reason given");
                return Err(format!("mirror topic '{topic}' FAILED: {reason}"));
            }
            let mut caught_up = true;
            for p in mirror["mirror_lags"].as_array().into_iter().flatten() {
                let lag = p["lag"].as_i64().unwrap_or(0);
                progress.copied += p["dest_log_end_offset"].as_i64().unwrap_or(0).max(0);
                progress.records_to_go += lag;
                let lag_bytes = p["lag_bytes"].as_i64().unwrap_or(-1);
                progress.bytes_to_go = match (progress.bytes_to_go, lag) {
                    (total, 0) => total,
                    (Some(total), _) if lag_bytes >= 0 => Some(total + lag_bytes),
                    _ => None,
                };
                let fetched = p["time_since_last_fetch_ms"].as_i64().unwrap_or(-1) >= 0;
                progress.unfetched += usize::from(!fetched);
                caught_up &= fetched && lag == 0;
            }
            progress.done &= match until {
                Until::CaughtUp => caught_up,
                Until::Stopped => state == "STOPPED",
            };
        }
        Ok(progress)
    }

    fn summary(&self, rate: f64) -> String {
        let bytes = match self.bytes_to_go {
            Some(b) => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
            None => "? MiB".into(),
        };
        let eta = if self.records_to_go == 0 {
            "0 s".to_string()
        } else if rate > 0.0 {
            format!("{:.0} s", self.records_to_go as f64 / rate)
        } else {
            "unknown".to_string()
        };
        let unfetched = match self.unfetched {
            0 => String::new(),
            n => format!(" ({n} partitions not fetched yet)"),
        };
        format!(
            "{} records ({bytes}) to go{unfetched}, {rate:.0} records/s, ETA {eta}",
            self.records_to_go
        )
    }
}

/// Polls `topics` of `link` until `until` holds for all of them.
pub(super) fn wait(api: &Api, link: &str, topics: &[String], until: Until) -> anyhow::Result<()> {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} records  {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let started = Instant::now();
    let mut first: Option<i64> = None;
    let mut last_line: Option<Instant> = None;
    loop {
        let mirrors = api.call("GET", &format!("/links/{link}/mirrors"), None)?;
        let progress = match Progress::of(&mirrors, topics, until) {
            Ok(progress) => progress,
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                bail!(e);
            }
        };
        let base = *first.get_or_insert(progress.copied);
        let copied = (progress.copied - base).max(0);
        let elapsed = started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            copied as f64 / elapsed
        } else {
            0.0
        };
        let summary = progress.summary(rate);
        match &bar {
            Some(bar) => {
                bar.set_length((copied + progress.records_to_go).max(0) as u64);
                bar.set_position(copied as u64);
                bar.set_message(summary.clone());
            }
            None if progress.done || last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) => {
                println!("{}: {summary}", topics.join(","));
                last_line = Some(Instant::now());
            }
            None => {}
        }
        if progress.done {
            if let Some(bar) = &bar {
                bar.finish();
            }
            let what = match until {
                Until::CaughtUp => "caught up with the source",
                Until::Stopped => "stopped",
            };
            println!("Mirror topics {} {what}.", topics.join(", "));
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Progress, Until};

    fn mirrors(state: &str, lags: &[(i64, i64, i64, i64)]) -> serde_json::Value {
        let lags: Vec<_> = lags
            .iter()
            .map(|(end, lag, lag_bytes, since)| {
                json!({ "dest_log_end_offset": end, "lag": lag, "lag_bytes": lag_bytes, "time_since_last_fetch_ms": since })
            })
            .collect();
        json!({ "data": [{ "mirror_topic_name": "t", "mirror_status": state, "mirror_lags": lags }] })
    }

    #[test]
    fn caught_up_needs_every_partition_fetched_and_no_lag() {
        let topics = ["t".to_string()];
        let behind = mirrors("ACTIVE", &[(10, 5, 500, 3), (0, 0, -1, -1)]);
        let progress = Progress::of(&behind, &topics, Until::CaughtUp).unwrap();
        assert_eq!(
            progress,
            Progress {
                copied: 10,
                records_to_go: 5,
                bytes_to_go: Some(500),
                unfetched: 1,
                done: false
            }
        );
        let summary = progress.summary(5.0);
        assert!(
            summary.contains("1 partitions not fetched yet"),
            "{summary}"
        );
        assert!(summary.contains("ETA 1 s"), "{summary}");
        let unfetched = mirrors("ACTIVE", &[(10, 0, 0, 3), (0, 0, -1, -1)]);
        assert!(
            !Progress::of(&unfetched, &topics, Until::CaughtUp)
                .unwrap()
                .done
        );
        let done = mirrors("ACTIVE", &[(10, 0, 0, 3), (0, 0, -1, 8)]);
        assert!(Progress::of(&done, &topics, Until::CaughtUp).unwrap().done);
        let unknown = mirrors("ACTIVE", &[(0, 7, -1, 3)]);
        let progress = Progress::of(&unknown, &topics, Until::CaughtUp).unwrap();
        assert_eq!(progress.bytes_to_go, None);
    }

    #[test]
    fn stopped_waits_for_the_state_and_a_failed_mirror_ends_the_wait() {
        let topics = ["t".to_string()];
        let active = mirrors("ACTIVE", &[(10, 0, 0, 3)]);
        assert!(!Progress::of(&active, &topics, Until::Stopped).unwrap().done);
        let stopped = mirrors("STOPPED", &[(10, 0, 0, 3)]);
        assert!(
            Progress::of(&stopped, &topics, Until::Stopped)
                .unwrap()
                .done
        );
        let failed = mirrors("FAILED", &[(10, 0, 0, 3)]);
        assert!(Progress::of(&failed, &topics, Until::CaughtUp).is_err());
        let gone = json!({ "data": [] });
        assert!(Progress::of(&gone, &topics, Until::CaughtUp).is_err());
    }
}
