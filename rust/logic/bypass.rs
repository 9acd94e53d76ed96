//! The journal bypass for large writes (feature `bypass <sectors>`): when
//! a write may go straight to production instead of through the journal,
//! and the bypassed writes in flight.
//!
//! A bypassed write is durable on production (FUA) when it completes; no
//! journal record describes it.  That is safe only when
//!
//! * no snapshot is active: nothing needs production's old data;
//! * no record that recovery would replay (`tail..next`, destaged or not)
//!   overlaps it: replay would otherwise write older data over it;
//! * no other bypassed write overlapping it is in flight (two writes to one
//!   block racing on the disk would leave either).
//!
//! Writes that arrive while it is in flight are journaled as usual (they
//! are newer, and so replayed over it); destage holds back every extent
//! that overlaps a bypassed write in flight, so that the device never
//! receives the two out of order.  `snapshot` stops new bypasses and waits
//! for those in flight before it takes its boundary.

use super::retire::Rec;

/// Bypassed writes in flight at most, per volume.
pub const SLOTS: usize = 32;

/// Live records above which no write bypasses: the decision scans them
/// under the state spinlock.
pub const MAX_LIVE: u64 = 2048;

/// The bypassed writes in flight: each holds a slot (its range) from the
/// decision until its completion is reaped.
///
/// Invariants: bit `i` of `active` is set exactly for the slots in use,
/// and `ranges[i]` is the range (`start`, `len`) of slot `i` while it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    ranges: [(u64, u64); SLOTS],
    active: u32,
}

impl Default for Slots {
    fn default() -> Self {
        Self::new()
    }
}

fn overlap(a: (u64, u64), start: u64, len: u64) -> bool {
    a.0 < start.saturating_add(len) && start < a.0.saturating_add(a.1)
}

impl Slots {
    /// No write in flight.
    pub const fn new() -> Self {
        Slots {
            ranges: [(0, 0); SLOTS],
            active: 0,
        }
    }

    /// Whether no bypassed write is in flight.
    pub fn is_empty(&self) -> bool {
        self.active == 0
    }

    /// Number of bypassed writes in flight.
    pub fn count(&self) -> u32 {
        self.active.count_ones()
    }

    /// Whether a write in flight overlaps `len` sectors at `start`.
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        self.ranges
            .iter()
            .enumerate()
            .any(|(i, r)| self.active & (1 << i) != 0 && overlap(*r, start, len))
    }

    /// Takes a free slot for `len` sectors at `start`: its tag (never 0).
    pub fn claim(&mut self, start: u64, len: u64) -> Option<usize> {
        let i = (!self.active).trailing_zeros() as usize;
        let r = self.ranges.get_mut(i)?;
        *r = (start, len);
        self.active |= 1 << i;
        Some(i + 1)
    }

    /// Frees the slots whose tags' bits are set in `done` (see [`tag_bit`]).
    pub fn reap(&mut self, done: u32) {
        self.active &= !done;
    }
}

/// The completion bit of a slot's tag (0 for a tag that no slot gives).
pub fn tag_bit(tag: usize) -> u32 {
    match tag.checked_sub(1) {
        Some(i) if i < SLOTS => 1 << i,
        _ => 0,
    }
}

/// Whether a record that recovery would replay (`tail..next`, in `recs`
/// indexed by `seq % recs.len()`) overlaps `len` sectors at `start`.  A slot
/// that does not describe its seq counts as overlapping (nothing is known
/// of it); a hole (a write that never persisted) does not, as replay skips
/// it.
pub fn replay_overlaps(recs: &[Rec], tail: u64, next: u64, start: u64, len: u64) -> bool {
    let n = recs.len() as u64;
    if n == 0 {
        return tail < next;
    }
    (tail..next).any(|seq| match recs.get((seq % n) as usize) {
        Some(r) if r.seq == seq => r.known && overlap((r.sector, u64::from(r.sectors)), start, len),
        _ => true,
    })
}

/// What the bypass decision looks at, besides the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    /// First target sector of the write.
    pub start: u64,
    /// Length of the write in sectors.
    pub len: u64,
    /// The `bypass` feature's threshold (0: off).
    pub min: u32,
    /// No snapshot at all (an active one may need the old data; an
    /// invalid one is in the middle of being committed, or waits for `drop`).
    pub snapshot_none: bool,
    /// `snapshot` is waiting for the bypassed writes in flight.
    pub blocked: bool,
}

/// Decides whether the write `ask` bypasses the journal: its tag (a slot
/// now held) if so.
pub fn decide(slots: &mut Slots, recs: &[Rec], tail: u64, next: u64, ask: Ask) -> Option<usize> {
    if ask.min == 0
        || ask.len < u64::from(ask.min)
        || !ask.snapshot_none
        || next.saturating_sub(tail) > MAX_LIVE
        || ask.blocked
        || slots.overlaps(ask.start, ask.len)
        || replay_overlaps(recs, tail, next, ask.start, ask.len)
    {
        return None;
    }
    slots.claim(ask.start, ask.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, sector: u64, sectors: u32) -> Rec {
        Rec {
            sector,
            sectors,
            ..Rec::free(seq, 0)
        }
    }

    fn ask(start: u64, len: u64) -> Ask {
        Ask {
            start,
            len,
            min: 256,
            snapshot_none: true,
            blocked: false,
        }
    }

    #[test]
    fn slots_claim_reap() {
        let mut s = Slots::new();
        assert!(s.is_empty());
        let tags: [usize; SLOTS] = core::array::from_fn(|i| s.claim(i as u64 * 10, 10).unwrap());
        assert_eq!(tags[0], 1);
        assert_eq!(tags[SLOTS - 1], SLOTS);
        assert_eq!(s.claim(1000, 1), None);
        assert_eq!(s.count(), SLOTS as u32);
        assert!(s.overlaps(15, 1));
        assert!(s.overlaps(319, 5));
        assert!(!s.overlaps(320, 5));
        s.reap(tag_bit(2));
        assert!(!s.overlaps(10, 10));
        assert!(s.overlaps(9, 2) && s.overlaps(20, 1));
        assert_eq!(s.claim(500, 8), Some(2));
        assert!(s.overlaps(507, 1) && !s.overlaps(508, 1));
        s.reap(u32::MAX);
        assert!(s.is_empty() && !s.overlaps(0, u64::MAX));
        assert_eq!(tag_bit(0), 0);
        assert_eq!(tag_bit(SLOTS + 1), 0);
        assert_eq!(tag_bit(SLOTS), 1 << (SLOTS - 1));
        // Ranges at the end of the sector space do not wrap.
        assert_eq!(s.claim(u64::MAX - 4, 8), Some(1));
        assert!(s.overlaps(u64::MAX - 1, 1) && !s.overlaps(0, 8));
    }

    #[test]
    fn replay_overlap_rules() {
        let mut recs = [Rec::free(0, 0); 8];
        recs[5] = rec(5, 100, 8);
        recs[6] = Rec {
            known: false,
            ..rec(6, 200, 8)
        };
        recs[7] = rec(7, 300, 8);
        // Records 5..8 are live.
        assert!(replay_overlaps(&recs, 5, 8, 104, 1));
        assert!(replay_overlaps(&recs, 5, 8, 0, 101));
        assert!(!replay_overlaps(&recs, 5, 8, 108, 92));
        // A hole is never replayed.
        assert!(!replay_overlaps(&recs, 5, 8, 200, 8));
        assert!(replay_overlaps(&recs, 5, 8, 307, 100));
        // Retired records do not count.
        assert!(!replay_overlaps(&recs, 6, 8, 100, 8));
        // A slot that describes another seq counts as overlapping.
        assert!(replay_overlaps(&recs, 5, 9, 1000, 8));
        assert!(!replay_overlaps(&[], 3, 3, 0, 8));
        assert!(replay_overlaps(&[], 3, 4, 0, 8));
    }

    #[test]
    fn live_record_cap() {
        let holes: [Rec; 4096] = core::array::from_fn(|i| Rec {
            known: false,
            ..Rec::free(i as u64, 0)
        });
        let mut s = Slots::new();
        let n = MAX_LIVE;
        assert_eq!(decide(&mut s, &holes, 0, n, ask(0, 256)), Some(1));
        assert_eq!(decide(&mut s, &holes, 0, n + 1, ask(1000, 256)), None);
        assert_eq!(decide(&mut s, &holes, 1, n + 1, ask(1000, 256)), Some(2));
    }

    #[test]
    fn decisions() {
        let recs = [rec(0, 0, 8), rec(1, 4096, 2048)];
        let mut s = Slots::new();
        assert_eq!(decide(&mut s, &recs, 0, 2, ask(8, 256)), Some(1));
        // Below the threshold, or the feature off.
        assert_eq!(decide(&mut s, &recs, 0, 2, ask(1000, 255)), None);
        assert_eq!(
            decide(
                &mut s,
                &recs,
                0,
                2,
                Ask {
                    min: 0,
                    ..ask(1000, 512)
                }
            ),
            None
        );
        // A snapshot active; `snapshot` waiting.
        assert_eq!(
            decide(
                &mut s,
                &recs,
                0,
                2,
                Ask {
                    snapshot_none: false,
                    ..ask(1000, 256)
                }
            ),
            None
        );
        assert_eq!(
            decide(
                &mut s,
                &recs,
                0,
                2,
                Ask {
                    blocked: true,
                    ..ask(1000, 256)
                }
            ),
            None
        );
        // Overlapping one in flight, or a live record.
        assert_eq!(decide(&mut s, &recs, 0, 2, ask(263, 256)), None);
        assert_eq!(decide(&mut s, &recs, 0, 2, ask(4000, 256)), None);
        assert_eq!(decide(&mut s, &recs, 0, 2, ask(0, 256)), None);
        // Once record 0 retired, its range is free; the slot of the first
        // write is still held.
        assert_eq!(decide(&mut s, &recs, 1, 2, ask(264, 256)), Some(2));
        assert_eq!(decide(&mut s, &recs, 1, 2, ask(4, 8)), None);
        assert_eq!(
            decide(
                &mut s,
                &recs,
                1,
                2,
                Ask {
                    min: 8,
                    ..ask(4, 8)
                }
            ),
            None
        );
        s.reap(tag_bit(1));
        assert_eq!(
            decide(
                &mut s,
                &recs,
                1,
                2,
                Ask {
                    min: 8,
                    ..ask(4, 8)
                }
            ),
            Some(1)
        );
        assert_eq!(s.count(), 2);
    }
}
