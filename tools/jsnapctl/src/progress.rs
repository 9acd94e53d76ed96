//! Progress of a long operation (hydration, drain) from successive status
//! samples: fraction done, rate over a sliding window, ETA, and the two
//! renderings (a bar on a terminal, plain lines elsewhere).  Pure: the
//! caller supplies the clock and the samples.

use std::collections::VecDeque;

use crate::status::fmt_bytes;

/// Rate window: the rate is taken over the samples of the last few seconds
/// (long enough to smooth the copier's steps, short enough to follow a
/// change of pace).
pub const WINDOW_SECS: f64 = 5.0;

/// Samples of (time in seconds, units done) of one operation.
#[derive(Clone, Debug)]
pub struct Tracker {
    total: u64,
    window: f64,
    samples: VecDeque<(f64, u64)>,
}

impl Tracker {
    pub fn new(total: u64) -> Tracker {
        Tracker {
            total,
            window: WINDOW_SECS,
            samples: VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub fn with_window(total: u64, window: f64) -> Tracker {
        Tracker {
            total,
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records that `done` units are done at time `t` (seconds, monotonic).
    /// `done` is clamped to the total; a total that grew is raised.
    pub fn add(&mut self, t: f64, done: u64, total: u64) {
        self.total = total.max(done);
        self.samples.push_back((t, done));
        // keep one sample at or before the window's start
        while self.samples.len() > 2 && self.samples[1].0 <= t - self.window {
            self.samples.pop_front();
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn done(&self) -> u64 {
        self.samples.back().map_or(0, |s| s.1)
    }

    /// Fraction done, 0..=1 (1 for an empty operation).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        (self.done() as f64 / self.total as f64).clamp(0.0, 1.0)
    }

    /// Units per second over the window; None until two samples at least
    /// 0.1 s apart exist.  Never negative (progress that went back counts
    /// as none).
    pub fn rate(&self) -> Option<f64> {
        let (t0, d0) = *self.samples.front()?;
        let (t1, d1) = *self.samples.back()?;
        let dt = t1 - t0;
        if dt < 0.1 {
            return None;
        }
        Some(d1.saturating_sub(d0) as f64 / dt)
    }

    /// Seconds until done at the current rate; Some(0) when done, None when
    /// the rate is unknown or zero.
    pub fn eta(&self) -> Option<f64> {
        let left = self.total.saturating_sub(self.done());
        if left == 0 {
            return Some(0.0);
        }
        match self.rate() {
            Some(r) if r > 0.0 => Some(left as f64 / r),
            _ => None,
        }
    }
}

/// `42s`, `3m07s`, `2h05m`; `--` when unknown.
pub fn fmt_eta(secs: Option<f64>) -> String {
    let Some(s) = secs.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "--".to_string();
    };
    let s = s.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A bar of `width` cells for `frac` (0..=1).
pub fn bar(frac: f64, width: usize) -> String {
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let full = ((frac * width as f64).floor() as usize).min(width);
    let mut s = String::with_capacity(width + 2);
    s.push('[');
    s.push_str(&"#".repeat(full));
    if full < width {
        s.push('>');
        s.push_str(&".".repeat(width - full - 1));
    }
    s.push(']');
    s
}

/// How progress units become bytes in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// chunks of this many bytes (hydration)
    Chunks(u64),
    /// bytes (drain)
    Bytes,
}

fn bytes_of(unit: Unit, n: u64) -> u64 {
    match unit {
        Unit::Chunks(b) => n.saturating_mul(b),
        Unit::Bytes => n,
    }
}

/// The amounts and the rate, without the bar: `45.2% 1234/32768 chunks
/// 12.3 MiB/s ETA 42s` (`extra` appended).
pub fn summary(t: &Tracker, unit: Unit, extra: &str) -> String {
    let amounts = match unit {
        Unit::Chunks(_) => format!("{}/{} chunks", t.done(), t.total()),
        Unit::Bytes => format!("{}/{}", fmt_bytes(t.done()), fmt_bytes(t.total())),
    };
    let rate = match t.rate() {
        Some(r) => format!("{}/s", fmt_bytes(bytes_of(unit, r.round() as u64))),
        None => "--/s".to_string(),
    };
    let pct = crate::status::pct(t.done(), t.total());
    let mut s = format!("{pct} {amounts} {rate} ETA {}", fmt_eta(t.eta()));
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

/// One line for a terminal (redrawn in place with `\r`).
pub fn tty_line(label: &str, t: &Tracker, unit: Unit, extra: &str) -> String {
    format!(
        "{label} {} {}",
        bar(t.fraction(), 30),
        summary(t, unit, extra)
    )
}

/// One plain progress line (not a terminal).
pub fn plain_line(label: &str, t: &Tracker, unit: Unit, extra: &str) -> String {
    format!("{label}: {}", summary(t, unit, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_rate_eta() {
        let mut t = Tracker::new(1000);
        assert_eq!(t.rate(), None);
        assert_eq!(t.eta(), None);
        t.add(0.0, 0, 1000);
        assert_eq!(t.rate(), None);
        t.add(2.0, 200, 1000);
        assert_eq!(t.rate(), Some(100.0));
        assert_eq!(t.eta(), Some(8.0));
        assert!((t.fraction() - 0.2).abs() < 1e-9);
        t.add(4.0, 600, 1000);
        assert_eq!(t.rate(), Some(150.0)); // (600 - 0) / 4 s, all in the window
        t.add(10.0, 900, 1000);
        // window 5 s: the oldest kept sample is the last one at or before t-5 = 5 (t=4)
        assert_eq!(t.rate(), Some(50.0));
        assert_eq!(t.eta(), Some(2.0));
        t.add(11.0, 1000, 1000);
        assert_eq!(t.eta(), Some(0.0));
        assert_eq!(t.fraction(), 1.0);
    }

    #[test]
    fn stalled_backwards_and_empty() {
        let mut t = Tracker::with_window(100, 5.0);
        t.add(0.0, 50, 100);
        t.add(1.0, 50, 100);
        assert_eq!(t.rate(), Some(0.0));
        assert_eq!(t.eta(), None); // stalled: unknown, not infinite
        t.add(2.0, 40, 100); // went back (a drain whose journal refilled)
        assert_eq!(t.rate(), Some(0.0));
        let mut e = Tracker::new(0);
        e.add(0.0, 0, 0);
        assert_eq!(e.fraction(), 1.0);
        assert_eq!(e.eta(), Some(0.0));
        // a total that grows (more written while draining) is raised
        let mut g = Tracker::new(10);
        g.add(0.0, 20, 10);
        assert_eq!(g.total(), 20);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_eta(None), "--");
        assert_eq!(fmt_eta(Some(f64::INFINITY)), "--");
        assert_eq!(fmt_eta(Some(0.0)), "0s");
        assert_eq!(fmt_eta(Some(41.6)), "42s");
        assert_eq!(fmt_eta(Some(187.0)), "3m07s");
        assert_eq!(fmt_eta(Some(7500.0)), "2h05m");
        assert_eq!(bar(0.0, 10), "[>.........]");
        assert_eq!(bar(0.5, 10), "[#####>....]");
        assert_eq!(bar(1.0, 10), "[##########]");
        assert_eq!(bar(2.0, 4), "[####]");
        assert_eq!(bar(f64::NAN, 4), "[>...]");
        let mut t = Tracker::new(32768);
        t.add(0.0, 0, 32768);
        t.add(1.0, 320, 32768);
        // 320 chunks/s of 32 KiB = 10 MiB/s, 32448 left = 101 s
        assert_eq!(
            plain_line("hydrate prod", &t, Unit::Chunks(32768), ""),
            "hydrate prod: 1.0% 320/32768 chunks 10.0 MiB/s ETA 1m41s"
        );
        let mut d = Tracker::new(8 << 20);
        d.add(0.0, 0, 8 << 20);
        d.add(2.0, 4 << 20, 8 << 20);
        assert_eq!(
            tty_line("drain", &d, Unit::Bytes, "pending 7"),
            format!(
                "drain {} 50.0% 4.00 MiB/8.00 MiB 2.00 MiB/s ETA 2s pending 7",
                bar(0.5, 30)
            )
        );
    }
}
