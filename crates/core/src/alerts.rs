//! Spike detectors: sliding windows over failed authentications (per source IP and per
//! principal), authorization denials (per principal), failed tests and refused resolves (per
//! credential) and failed logins that workers report at the target systems (per credential).
//! Crossing a threshold appends an `alert.*` event — forwarded like any other — once per
//! window. Any attempt to resolve a disabled, revoked, expired or deleted credential raises
//! `alert.resolve_refused` at once.
//!
//! Windows are per server node (in memory); on several PostgreSQL nodes each node counts what
//! it sees, so a threshold is a per-node rate.

use crate::actions::Action;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One threshold: `count` events within `window_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// How many events…
    pub count: u32,
    /// …within how many seconds.
    pub window_secs: u64,
}

/// Detector thresholds (`[alerts]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Failed authentications from one source IP.
    pub auth_failures_per_ip: Threshold,
    /// Failed authentications of one principal (revoked/expired tokens, disabled principal).
    pub auth_failures_per_principal: Threshold,
    /// Authorization denials of one principal.
    pub denials_per_principal: Threshold,
    /// Failed Test connection runs of one credential.
    pub test_failures_per_credential: Threshold,
    /// Failed logins reported by workers for one credential.
    pub target_auth_failures_per_credential: Threshold,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            auth_failures_per_ip: Threshold {
                count: 20,
                window_secs: 60,
            },
            auth_failures_per_principal: Threshold {
                count: 10,
                window_secs: 60,
            },
            denials_per_principal: Threshold {
                count: 20,
                window_secs: 60,
            },
            test_failures_per_credential: Threshold {
                count: 5,
                window_secs: 300,
            },
            target_auth_failures_per_credential: Threshold {
                count: 3,
                window_secs: 300,
            },
        }
    }
}

/// Which window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Failed authentication, keyed by source IP.
    AuthFailureIp,
    /// Failed authentication, keyed by principal.
    AuthFailurePrincipal,
    /// Denial, keyed by principal.
    Denial,
    /// Failed test, keyed by credential.
    TestFailure,
    /// Failed login at a target, keyed by credential.
    TargetAuthFailure,
}

impl Signal {
    /// The alert action this signal raises.
    pub fn action(self) -> Action {
        match self {
            Signal::AuthFailureIp => Action::AlertAuthFailures,
            Signal::AuthFailurePrincipal => Action::AlertAuthFailures,
            Signal::Denial => Action::AlertDenials,
            Signal::TestFailure => Action::AlertTestFailures,
            Signal::TargetAuthFailure => Action::AlertTargetAuthFailures,
        }
    }

    fn threshold(self, c: &AlertConfig) -> Threshold {
        match self {
            Signal::AuthFailureIp => c.auth_failures_per_ip,
            Signal::AuthFailurePrincipal => c.auth_failures_per_principal,
            Signal::Denial => c.denials_per_principal,
            Signal::TestFailure => c.test_failures_per_credential,
            Signal::TargetAuthFailure => c.target_auth_failures_per_credential,
        }
    }
}

#[derive(Default)]
struct Window {
    hits: VecDeque<Instant>,
    fired_at: Option<Instant>,
}

/// The detectors.
#[derive(Default)]
pub struct Detectors {
    config: AlertConfig,
    windows: Mutex<HashMap<(Signal, String), Window>>,
}

impl std::fmt::Debug for Detectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detectors")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Detectors {
    /// Detectors with thresholds.
    pub fn new(config: AlertConfig) -> Detectors {
        Detectors {
            config,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event; returns the count when the threshold is crossed (once per window).
    pub fn observe(&self, signal: Signal, key: &str) -> Option<u32> {
        self.observe_at(signal, key, Instant::now())
    }

    /// [`Detectors::observe`] at a given instant (tests control time with it).
    pub fn observe_at(&self, signal: Signal, key: &str, now: Instant) -> Option<u32> {
        let t = signal.threshold(&self.config);
        if t.count == 0 {
            return None;
        }
        let window = Duration::from_secs(t.window_secs.max(1));
        let mut map = self.windows.lock().ok()?;
        // Keep memory bounded under a flood of distinct keys (e.g. spoofed IPs).
        if map.len() > 100_000 {
            map.retain(|_, w| w.hits.back().is_some_and(|h| now.duration_since(*h) < window));
        }
        let w = map.entry((signal, key.to_owned())).or_default();
        w.hits.push_back(now);
        // Only the latest `count` hits decide whether `count` fell within the window: keep no
        // more (a flood of 30,000 failures a second would otherwise grow this by millions of
        // entries, copied under the lock every time the deque doubles).
        while w.hits.len() > t.count as usize {
            w.hits.pop_front();
        }
        while w.hits.front().is_some_and(|h| now.duration_since(*h) >= window) {
            w.hits.pop_front();
        }
        let n = w.hits.len() as u32;
        let quiet = w.fired_at.is_none_or(|f| now.duration_since(f) >= window);
        if n >= t.count && quiet {
            w.fired_at = Some(now);
            return Some(n);
        }
        None
    }

    /// The configuration.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_fires_once_per_window_and_normal_load_stays_quiet() {
        let d = Detectors::new(AlertConfig {
            auth_failures_per_ip: Threshold {
                count: 5,
                window_secs: 60,
            },
            ..AlertConfig::default()
        });
        let t0 = Instant::now();
        // Normal load: 4 failures spread over 5 minutes never fire.
        for i in 0..4u64 {
            assert_eq!(
                d.observe_at(Signal::AuthFailureIp, "10.0.0.1", t0 + Duration::from_secs(i * 70)),
                None
            );
        }
        // A burst of 8 within seconds fires exactly once.
        let t1 = t0 + Duration::from_secs(1000);
        let fired: Vec<_> = (0..8u64)
            .filter_map(|i| d.observe_at(Signal::AuthFailureIp, "10.0.0.2", t1 + Duration::from_millis(i * 100)))
            .collect();
        assert_eq!(fired, vec![5]);
        // Another IP is counted separately.
        assert_eq!(d.observe_at(Signal::AuthFailureIp, "10.0.0.3", t1), None);
        // After the window, a new burst fires again.
        let t2 = t1 + Duration::from_secs(61);
        let fired: Vec<_> = (0..5u64)
            .filter_map(|i| d.observe_at(Signal::AuthFailureIp, "10.0.0.2", t2 + Duration::from_millis(i)))
            .collect();
        assert_eq!(fired.len(), 1);
    }

    #[test]
    fn a_flood_keeps_only_the_hits_that_decide() {
        let d = Detectors::new(AlertConfig::default());
        let t0 = Instant::now();
        let fired = (0..100_000u64)
            .filter(|i| {
                d.observe_at(Signal::AuthFailureIp, "10.9.9.9", t0 + Duration::from_micros(i * 30))
                    .is_some()
            })
            .count();
        assert_eq!(fired, 1, "one alert per window");
        let map = d.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = map.values().map(|w| w.hits.len()).max().unwrap_or(0);
        assert_eq!(kept, AlertConfig::default().auth_failures_per_ip.count as usize);
    }
}
