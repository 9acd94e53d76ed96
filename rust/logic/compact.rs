//! Compaction of the journal tail: when destage must free the oldest
//! records and little of them is still live, it copies the live pieces to
//! the head of the ring as new records (pmem to pmem) instead of writing
//! them to production, and the tail moves past the old ones.
//!
//! The journal is a ring, so a live record at the tail holds the space of
//! every younger record back.  Under overwrites of a working set smaller
//! than the journal, most of the tail is dead (superseded) and the few live
//! pieces would otherwise each cost a write to production (and a flush);
//! copying them within pmem costs a memory copy.  When most of the tail is
//! live, compaction would free little and copy much, and destage writes
//! to production as before.
//!
//! **Why a copy is a valid newer record.**  A piece is copied only while
//! it is, whole, the newest data of its sectors (checked under the lock
//! that hands out sequence numbers, so every write to those sectors after
//! the check gets a higher one).  The copy gets the next sequence number:
//! replay applies it after the original and before every later write, and
//! both hold the same bytes, so every crash point replays to the same
//! content.  The table switches to the copy only once it is persistent, and
//! only where the original is still the newest data; the original retires
//! after that, through the usual superblock commit.
//!
//! **Which.**  A piece whose data was already copied [`MAX_COPIES`] times,
//! or of another changed-block interval, is written to production in the
//! same round instead.
//!
//! **When.**  Only with no snapshot at all (a copy's sequence number must
//! not move data across a snapshot boundary), not while a `drain` waits
//! (it asks for everything on production), and only for records of the
//! current changed-block interval (a copy is marked at replay in the
//! interval of its new sequence number; [`same_interval`]).

use super::retire::Rec;

/// What destage found at the tail: the records a batch would let retire,
/// and the live pieces in them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailSpan {
    /// Known records from the tail through the last one the batch takes
    /// pieces of.
    pub records: u64,
    /// Their sectors.
    pub sectors: u64,
    /// Pieces the batch holds (each becomes one record when copied).
    pub pieces: u64,
    /// Their sectors.
    pub live_sectors: u64,
}

impl TailSpan {
    /// Adds a piece of `len` sectors.
    pub fn add_piece(&mut self, len: u64) {
        self.pieces += 1;
        self.live_sectors += len;
    }
}

/// The known records of `tail..=last` (`recs` indexed by
/// `seq % recs.len()`): their number and sectors.
pub fn span_of(recs: &[Rec], tail: u64, last: u64) -> (u64, u64) {
    let n = recs.len() as u64;
    if n == 0 {
        return (0, 0);
    }
    let mut out = (0, 0);
    for seq in tail..=last {
        if let Some(r) = recs
            .get((seq % n) as usize)
            .filter(|r| r.seq == seq && r.known)
        {
            out.0 += 1;
            out.1 += u64::from(r.sectors);
        }
    }
    out
}

/// Whether the batch should be copied within the journal: at most
/// `max_live_pct` percent of the span's sectors, and of its records (each
/// copy takes a descriptor slot), are live.  `max_live_pct == 0`: never.
pub fn should_compact(span: &TailSpan, max_live_pct: u32) -> bool {
    let pct = u128::from(max_live_pct);
    max_live_pct > 0
        && span.pieces > 0
        && u128::from(span.live_sectors) * 100 <= u128::from(span.sectors) * pct
        && u128::from(span.pieces) * 100 <= u128::from(span.records) * pct
}

/// The conditions of the whole journal under which a copy is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allow {
    /// `compact` is not 0.
    pub enabled: bool,
    /// No snapshot (neither active, invalid nor being dropped).
    pub snapshot_none: bool,
    /// A `drain` is waiting.
    pub draining: bool,
}

impl Allow {
    /// Whether compaction may run at all now.
    pub fn ok(&self) -> bool {
        self.enabled && self.snapshot_none && !self.draining
    }
}

/// How many times the data of one write may be copied within the journal:
/// data still live after that many laps of the ring is cold, and goes to
/// production (otherwise a block written once among hot ones would be
/// copied on every lap, and production would never receive it).
pub const MAX_COPIES: u8 = 2;

/// Whether a piece of a record whose data was copied `copies` times may be
/// copied again.
pub fn may_copy(copies: u8) -> bool {
    copies < MAX_COPIES
}

/// Whether a record of `seq` may be copied to `new_seq`: both lie in the
/// same changed-block interval (`interval` maps a seq to its interval, or
/// `None` when changed-block tracking does not cover it), so replaying the
/// copy marks only chunks its original already marked.
pub fn same_interval<I: PartialEq>(
    seq: u64,
    new_seq: u64,
    interval: impl Fn(u64) -> Option<I>,
) -> bool {
    interval(seq) == interval(new_seq)
}

/// How full the journal is, in percent of its ring sectors or descriptor
/// slots (the fuller of the two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fill {
    /// In use, dead records included: what writers can no longer have.
    pub used_pct: u64,
    /// What the extents of the tables need: the data destage must still
    /// write out (dm-writecache's "blocks in use").
    pub live_pct: u64,
}

/// Ring use at which destage runs even though the live data is below
/// `high`: 1.8 times `high`, at most four fifths of the way from `high` to
/// full (90% for the default 50; 9% for watermarks of 5, which keep
/// destage running all the time).
///
/// The watermarks are about live data, as dm-writecache's are about its
/// blocks in use.  A ring also fills with dead records (overwritten data),
/// and reclaiming them costs a copy or a production write of each live
/// piece among them; the older the tail, the fewer of those (uniform
/// overwrites of `w` blocks: a share of about `exp(-age / w)` is still
/// live).  So dead records are left to accumulate up to this point, and a
/// burst arriving then finds a tail that is mostly dead, which compaction
/// frees at memory speed.
pub fn ring_high(high: u32) -> u64 {
    let h = u64::from(high.min(100));
    (h * 9 / 5).min(h + (100 - h) * 4 / 5)
}

/// What started destage; it decides where destage stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Live data at the high watermark (or writers outrunning destage):
    /// destage runs until the journal is down to the low watermark, dead
    /// records included (records destaged but not yet retired count until
    /// they retire, so a stream keeps destage going as deep as before).
    Live,
    /// The ring at [`ring_high`] with little live data: destage runs until
    /// the live data is down to `low` and the ring as far below its bound
    /// as `low` is below `high`.
    Ring,
}

/// Whether destage starts, and why: the live data reached `high`, or the
/// ring [`ring_high`].
pub fn destage_trigger(f: Fill, high: u32) -> Option<Trigger> {
    if f.live_pct >= u64::from(high) {
        Some(Trigger::Live)
    } else if f.used_pct >= ring_high(high) {
        Some(Trigger::Ring)
    } else {
        None
    }
}

/// Whether destage starts (writers wake the worker).
pub fn destage_starts(f: Fill, high: u32) -> bool {
    destage_trigger(f, high).is_some()
}

/// Whether destage started by `t` stops.
pub fn destage_stops(f: Fill, high: u32, low: u32, t: Trigger) -> bool {
    match t {
        Trigger::Live => f.used_pct <= u64::from(low),
        Trigger::Ring => {
            let gap = u64::from(high.saturating_sub(low));
            f.live_pct <= u64::from(low) && f.used_pct <= ring_high(high).saturating_sub(gap)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(records: u64, sectors: u64, pieces: u64, live: u64) -> TailSpan {
        TailSpan {
            records,
            sectors,
            pieces,
            live_sectors: live,
        }
    }

    #[test]
    fn threshold_is_inclusive_on_both_counts() {
        assert!(should_compact(&span(10, 80, 5, 40), 50));
        assert!(!should_compact(&span(10, 80, 5, 41), 50));
        assert!(!should_compact(&span(10, 80, 6, 8), 50));
        assert!(should_compact(&span(10, 80, 1, 8), 50));
    }

    #[test]
    fn off_or_empty_never_compacts() {
        assert!(!should_compact(&span(10, 80, 1, 8), 0));
        assert!(!should_compact(&span(10, 80, 0, 0), 50));
        assert!(!should_compact(&span(0, 0, 0, 0), 90));
    }

    #[test]
    fn all_live_destages() {
        for pct in 1..=90 {
            assert!(!should_compact(&span(64, 64 * 8, 64, 64 * 8), pct));
        }
    }

    #[test]
    fn no_overflow() {
        assert!(should_compact(&span(u64::MAX, u64::MAX, 1, 1), 90));
        assert!(!should_compact(&span(1, 1, u64::MAX, u64::MAX), 90));
    }

    #[test]
    fn span_counts_known_records_of_the_lap() {
        let mut recs = [Rec::default(); 8];
        for seq in 8..16u64 {
            recs[(seq % 8) as usize] = Rec {
                sectors: 8,
                ..Rec::free(seq, 0)
            };
        }
        recs[10 % 8].known = false;
        assert_eq!(span_of(&recs, 8, 11), (3, 24));
        assert_eq!(span_of(&recs, 8, 8), (1, 8));
        // A slot of another lap is not counted.
        assert_eq!(span_of(&recs, 16, 17), (0, 0));
        assert_eq!(span_of(&[], 0, 5), (0, 0));
    }

    #[test]
    fn allowed_only_without_snapshot_or_drain() {
        let a = Allow {
            enabled: true,
            snapshot_none: true,
            draining: false,
        };
        assert!(a.ok());
        assert!(!Allow {
            enabled: false,
            ..a
        }
        .ok());
        assert!(!Allow {
            snapshot_none: false,
            ..a
        }
        .ok());
        assert!(!Allow {
            draining: true,
            ..a
        }
        .ok());
    }

    #[test]
    fn copies_are_bounded() {
        assert!(may_copy(0) && may_copy(MAX_COPIES - 1));
        assert!(!may_copy(MAX_COPIES) && !may_copy(u8::MAX));
    }

    #[test]
    fn intervals() {
        let iv = |s: u64| {
            if s < 100 {
                Some(0)
            } else if s < 200 {
                Some(1)
            } else {
                None
            }
        };
        assert!(same_interval(150, 199, iv));
        assert!(!same_interval(99, 100, iv));
        assert!(!same_interval(150, 250, iv));
        assert!(same_interval(250, 300, iv));
    }

    fn fill(used_pct: u64, live_pct: u64) -> Fill {
        Fill { used_pct, live_pct }
    }

    #[test]
    fn ring_high_lies_between_high_and_full() {
        assert_eq!(ring_high(50), 90);
        assert_eq!(ring_high(5), 9);
        assert_eq!(ring_high(2), 3);
        assert_eq!(ring_high(1), 1);
        assert_eq!(ring_high(80), 96);
        assert_eq!(ring_high(95), 99);
        assert_eq!(ring_high(100), 100);
        assert_eq!(ring_high(200), 100);
        for h in 1..=100 {
            assert!(ring_high(h) >= u64::from(h) && ring_high(h) <= 100);
        }
    }

    #[test]
    fn fresh_data_keeps_the_old_watermarks() {
        // Nothing overwritten: live equals used, and destage starts at
        // `high` and stops at `low` as it did before.
        assert!(!destage_starts(fill(49, 49), 50));
        assert!(destage_starts(fill(50, 50), 50));
        assert_eq!(destage_trigger(fill(50, 50), 50), Some(Trigger::Live));
        assert!(!destage_stops(fill(46, 46), 50, 45, Trigger::Live));
        assert!(destage_stops(fill(45, 45), 50, 45, Trigger::Live));
        // Destaged records not yet retired keep it going.
        assert!(!destage_stops(fill(60, 30), 50, 45, Trigger::Live));
    }

    #[test]
    fn dead_records_wait_for_the_ring_bound() {
        // An overwritten working set: little live, the ring fills.
        assert!(!destage_starts(fill(89, 27), 50));
        assert_eq!(destage_trigger(fill(90, 27), 50), Some(Trigger::Ring));
        assert!(!destage_stops(fill(86, 27), 50, 45, Trigger::Ring));
        assert!(destage_stops(fill(85, 27), 50, 45, Trigger::Ring));
        // Live data above `low` keeps it running whatever the ring.
        assert!(!destage_stops(fill(60, 46), 50, 45, Trigger::Ring));
    }

    #[test]
    fn watermarks_of_the_tests() {
        // `high_watermark 5 low_watermark 1`: live data of 5%, or a ring
        // 9% full, starts it; it stops at 1% live and 5% in use.
        assert!(destage_starts(fill(5, 5), 5));
        assert!(destage_starts(fill(9, 0), 5));
        assert!(!destage_starts(fill(8, 4), 5));
        assert!(destage_stops(fill(5, 1), 5, 1, Trigger::Ring));
        assert!(!destage_stops(fill(6, 1), 5, 1, Trigger::Ring));
        assert!(!destage_stops(fill(5, 2), 5, 1, Trigger::Ring));
        assert!(destage_stops(fill(1, 1), 5, 1, Trigger::Live));
        assert!(!destage_stops(fill(2, 1), 5, 1, Trigger::Live));
        // A full ring always starts it.
        for h in 1..=100 {
            assert!(destage_starts(fill(100, 0), h));
        }
    }

}
