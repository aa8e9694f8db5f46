//! `rate-limit`: a tidings plugin that rejects a sender's messages beyond
//! `max` in any `window_secs` (a sliding window), telling them when they may
//! send again.
//!
//! Config: `{"max": 5, "window_secs": 10}`. Counts are per process and kept
//! in memory; a rejected message does not count.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tidings_plugin::{Error, Host, Message, Plugin, Verdict};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max: u32,
    window_secs: f64,
}

/// Sliding-window counts per sender.
#[derive(Debug)]
pub struct RateLimit {
    max: usize,
    window: Duration,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimit {
    pub fn new(max: u32, window: Duration) -> Result<Self, Error> {
        if max == 0 {
            return Err("`max` must be at least 1".into());
        }
        if window.is_zero() {
            return Err("`window_secs` must be above 0".into());
        }
        Ok(RateLimit {
            max: max as usize,
            window,
            sent: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a message from `sender` at `now`; `Err(reason)` past the limit.
    pub fn check(&self, sender: &str, now: Instant) -> Result<(), String> {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        // Forget senders whose window is empty, so memory stays bounded by
        // the active senders.
        if sent.len() > 10_000 {
            sent.retain(|_, times| times.back().is_some_and(|t| now - *t < self.window));
        }
        let times = sent.entry(sender.to_owned()).or_default();
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
        if times.len() >= self.max {
            let wait = times
                .front()
                .map_or(self.window, |first| self.window - (now - *first));
            return Err(format!(
                "rate limit: user {sender} may send {} messages per {}; try again in {:.1} s",
                self.max,
                human(self.window),
                wait.as_secs_f64().max(0.1)
            ));
        }
        times.push_back(now);
        Ok(())
    }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs == 1.0 {
        "second".to_owned()
    } else {
        format!("{secs} seconds")
    }
}

impl Plugin for RateLimit {
    const NAME: &'static std::ffi::CStr = c"rate-limit";
    const VERSION: &'static std::ffi::CStr = c"1.0.0";

    fn init(_host: Host, config_json: &str) -> Result<Self, Error> {
        let config: Config = serde_json::from_str(config_json).map_err(|e| {
            format!("config {config_json}: {e} (expected {{\"max\": N, \"window_secs\": S}})")
        })?;
        if !config.window_secs.is_finite() || config.window_secs <= 0.0 {
            return Err(
                format!("`window_secs` must be above 0, got {}", config.window_secs).into(),
            );
        }
        RateLimit::new(config.max, Duration::from_secs_f64(config.window_secs))
    }

    fn before_send(&self, message: &Message) -> Result<Verdict, Error> {
        Ok(match self.check(&message.sender_id, Instant::now()) {
            Ok(()) => Verdict::Allow,
            Err(reason) => Verdict::Reject(reason),
        })
    }
}

tidings_plugin::export_plugin!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_per_sender() {
        let limit = RateLimit::new(2, Duration::from_secs(10)).unwrap();
        let t0 = Instant::now();
        assert!(limit.check("1", t0).is_ok());
        assert!(limit.check("1", t0 + Duration::from_secs(1)).is_ok());
        let reason = limit.check("1", t0 + Duration::from_secs(2)).unwrap_err();
        assert!(
            reason.contains("user 1 may send 2 messages per 10 seconds"),
            "{reason}"
        );
        assert!(reason.contains("try again in 8.0 s"), "{reason}");
        assert!(
            limit.check("2", t0 + Duration::from_secs(2)).is_ok(),
            "per sender"
        );
        // The first one leaves the window after 10 s.
        assert!(limit.check("1", t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn config_is_checked() {
        assert!(RateLimit::init(Host::detached(), r#"{"max":0,"window_secs":1}"#).is_err());
        assert!(RateLimit::init(Host::detached(), r#"{"max":1,"window_secs":-1}"#).is_err());
        let err = RateLimit::init(Host::detached(), "{}").unwrap_err();
        assert!(err.to_string().contains("max"), "{err}");
        assert!(RateLimit::init(Host::detached(), r#"{"max":3,"window_secs":0.5}"#).is_ok());
    }
}
