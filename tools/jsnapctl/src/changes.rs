//! The answer of the jsnap target's `changed` message (README, "Changed-block
//! tracking"): a header line
//! `<interval> since=S [until=U] chunk_sectors=C first=F end=E next=N|- runs=R changed=K`
//! and one `<start> <len>` line (chunks) per run.

use crate::status::json_str;
use std::fmt::Write;

/// Runs gathered from one or more pages.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `(first chunk, chunks)`, ascending.
    pub runs: Vec<(u64, u64)>,
    /// The snapshot the interval began with (0: the journal's format); the
    /// same on every page, or the interval changed between two pages.
    pub since: Option<u64>,
}

impl Answer {
    /// Adds one page; returns where the next page starts (`None`: done).
    pub fn add_page(&mut self, text: &str) -> Result<Option<u64>, String> {
        let mut lines = text.lines();
        let head = lines.next().ok_or("empty answer")?;
        let mut words = head.split_whitespace();
        match words.next() {
            Some("current" | "previous") => {}
            _ => return Err(format!("no interval in '{head}'")),
        }
        let mut next = None;
        let mut runs = None;
        let mut since = None;
        for w in words {
            let (k, v) = w.split_once('=').ok_or(format!("bad token '{w}'"))?;
            match k {
                "next" if v == "-" => next = Some(None),
                "next" => next = Some(Some(v.parse::<u64>().map_err(|_| format!("bad next '{v}'"))?)),
                "runs" => runs = Some(v.parse::<usize>().map_err(|_| format!("bad runs '{v}'"))?),
                "since" => since = Some(v.parse::<u64>().map_err(|_| format!("bad since '{v}'"))?),
                _ => {}
            }
        }
        let next = next.ok_or("no next= in the header")?;
        let since = since.ok_or("no since= in the header")?;
        match self.since {
            Some(s) if s != since => {
                return Err(format!(
                    "the interval changed between two pages (since={s}, then since={since}): a snapshot was taken meanwhile"
                ))
            }
            _ => self.since = Some(since),
        }
        let mut n = 0;
        for l in lines {
            let (s, len) = l
                .split_once(' ')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                .ok_or(format!("bad run '{l}'"))?;
            if let Some(&(ps, pl)) = self.runs.last() {
                if s < ps + pl {
                    return Err(format!("run {s} overlaps or precedes run {ps}+{pl}"));
                }
            }
            self.runs.push((s, len));
            n += 1;
        }
        if runs != Some(n) {
            return Err(format!("header says runs={runs:?}, {n} lines follow"));
        }
        Ok(next)
    }

    /// Run `(a, l)` in units of `unit` sectors (1: chunks); in sectors the
    /// last run ends at the volume's end, `len` sectors.
    pub fn unit_run(&self, a: u64, l: u64, unit: u64, len: u64) -> (u64, u64) {
        if unit == 1 {
            (a, l)
        } else {
            (a * unit, ((a + l) * unit).min(len).saturating_sub(a * unit))
        }
    }

    /// Chunks in all runs.
    pub fn changed(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }

    /// The answer as one JSON object; runs are `[start, count]` in units
    /// of `unit` sectors (chunks when `unit` is 1).
    pub fn to_json(&self, which: &str, chunk: u64, first: u64, end: u64, unit: u64, len: u64) -> String {
        let mut s = format!(
            "{{\"interval\": {}, \"since\": {}, \"chunk_sectors\": {chunk}, \"first\": {first}, \"end\": {end}, \"changed\": {}, \"unit\": {}, \"runs\": [",
            json_str(which),
            self.since.unwrap_or(0),
            self.changed(),
            json_str(if unit == 1 { "chunks" } else { "sectors" })
        );
        for (i, &(a, l)) in self.runs.iter().enumerate() {
            let (a, n) = self.unit_run(a, l, unit, len);
            let _ = write!(s, "{}[{a}, {n}]", if i > 0 { ", " } else { "" });
        }
        s.push_str("]}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_join() {
        let mut a = Answer::default();
        assert_eq!(
            a.add_page("current since=2 chunk_sectors=8 first=0 end=100 next=16 runs=2 changed=9\n0 1\n2 8"),
            Ok(Some(16))
        );
        assert_eq!(
            a.add_page("current since=2 chunk_sectors=8 first=16 end=100 next=- runs=1 changed=4\n16 4"),
            Ok(None)
        );
        assert_eq!(a.runs, vec![(0, 1), (2, 8), (16, 4)]);
        assert_eq!(a.changed(), 13);
        assert_eq!(a.since, Some(2));
        // a page of another interval is refused
        let mut b = Answer::default();
        b.add_page("previous since=1 until=2 chunk_sectors=8 first=0 end=100 next=16 runs=0 changed=0").unwrap();
        assert!(b.add_page("previous since=2 until=3 chunk_sectors=8 first=16 end=100 next=- runs=0 changed=0").is_err());
        let j: serde_json::Value = serde_json::from_str(&a.to_json("current", 8, 0, 100, 1, 800)).unwrap();
        assert_eq!(j["since"], 2);
        assert_eq!(j["runs"][2][0], 16);
        assert_eq!(j["changed"], 13);
        assert_eq!(j["unit"], "chunks");
        let j: serde_json::Value = serde_json::from_str(&a.to_json("previous", 8, 0, 100, 8, 150)).unwrap();
        assert_eq!(j["runs"][1][1], 64);
        // the last run clipped at the volume's end (150 sectors)
        assert_eq!(j["runs"][2], serde_json::json!([128, 22]));
    }

    #[test]
    fn bad_pages() {
        for p in [
            "",
            "snapshot next=-",
            "current runs=0",
            "current next=- runs=0",
            "current since=0 next=- runs=1",
            "current since=0 next=- runs=0\n1 2",
            "current next=x runs=0",
            "current since=0 next=- runs=2\n4 2\n5 1",
            "current since=0 next=- runs=1\n4",
        ] {
            assert!(Answer::default().add_page(p).is_err(), "{p:?}");
        }
    }
}
