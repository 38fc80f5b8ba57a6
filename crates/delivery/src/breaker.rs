//! A circuit breaker per destination host. It opens when most of the recent
//! attempts failed, so a dead endpoint stops taking connections and worker
//! time; after a pause one probe is let through (half-open), and its result
//! closes or re-opens the circuit. Pure: time is passed in.

use chrono::{DateTime, Duration, Utc};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// How many recent results are remembered.
    pub window: usize,
    /// No opinion before this many results.
    pub min_results: usize,
    /// Opens when failures / results reaches this.
    pub failure_ratio: f64,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: 20,
            min_results: 10,
            failure_ratio: 0.8,
            open_for: Duration::seconds(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open {
        until: DateTime<Utc>,
    },
    /// One probe is out; everyone else waits for its result.
    HalfOpen,
}

impl State {
    /// For the `/metrics` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(&self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open { .. } => 1,
            State::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Not now; try again at this time.
    No(DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    recent: VecDeque<bool>,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: State::Closed,
            recent: VecDeque::new(),
        }
    }
}

impl Breaker {
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether an attempt may start now. In the open state, the first call
    /// after the pause becomes the probe.
    pub fn admit(&mut self, _cfg: &BreakerConfig, now: DateTime<Utc>) -> Admit {
        match self.state {
            State::Closed => Admit::Yes,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Admit::Yes
            }
            State::Open { until } => Admit::No(until),
            // The probe's answer is awaited; check again shortly.
            State::HalfOpen => Admit::No(now + Duration::seconds(1)),
        }
    }

    /// Records an attempt's result (`ok`: the receiver answered without a
    /// server error).
    pub fn record(&mut self, cfg: &BreakerConfig, ok: bool, now: DateTime<Utc>) {
        if self.state == State::HalfOpen {
            if ok {
                self.state = State::Closed;
                self.recent.clear();
            } else {
                self.state = State::Open {
                    until: now + cfg.open_for,
                };
            }
            return;
        }
        self.recent.push_back(ok);
        while self.recent.len() > cfg.window {
            self.recent.pop_front();
        }
        let failed = self.recent.iter().filter(|ok| !**ok).count();
        if self.state == State::Closed
            && self.recent.len() >= cfg.min_results
            && failed as f64 >= cfg.failure_ratio * self.recent.len() as f64
        {
            self.state = State::Open {
                until: now + cfg.open_for,
            };
            self.recent.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let cfg = BreakerConfig::default();
        let t0 = Utc::now();
        let mut b = Breaker::default();
        for _ in 0..9 {
            b.record(&cfg, false, t0);
        }
        assert_eq!(b.state(), State::Closed, "needs min_results");
        b.record(&cfg, false, t0);
        assert_eq!(
            b.state(),
            State::Open {
                until: t0 + cfg.open_for
            }
        );
        assert_eq!(b.admit(&cfg, t0), Admit::No(t0 + cfg.open_for));
        let later = t0 + cfg.open_for;
        assert_eq!(b.admit(&cfg, later), Admit::Yes, "the probe");
        assert_eq!(b.state(), State::HalfOpen);
        assert!(matches!(b.admit(&cfg, later), Admit::No(_)), "one probe");
        b.record(&cfg, false, later);
        assert_eq!(
            b.state(),
            State::Open {
                until: later + cfg.open_for
            }
        );
        let again = later + cfg.open_for;
        assert_eq!(b.admit(&cfg, again), Admit::Yes);
        b.record(&cfg, true, again);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn mostly_healthy_stays_closed() {
        let cfg = BreakerConfig::default();
        let t0 = Utc::now();
        let mut b = Breaker::default();
        for i in 0..100 {
            b.record(&cfg, i % 3 != 0, t0);
        }
        assert_eq!(b.state(), State::Closed);
    }
}
