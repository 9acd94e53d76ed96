//! Recovery planning: which journal records to re-apply after a crash or a
//! reload, and the exact journal accounting to continue from.
//!
//! The caller decodes every descriptor slot, verifies each record's data
//! ([`super::format::Descriptor::verify_data`]) and passes the valid ones
//! here. Records never persisted (torn or never written: holes) are simply
//! absent. Live records are those with `tail_seq <= seq < tail_seq +
//! desc_count`; anything else is a stale slot from an earlier lap. Live
//! records must lie in the ring in seq order, inside the live region that
//! starts at `tail_pos`; a record that does not is corrupt and recovery
//! stops rather than apply it. Planning is allocation-free and idempotent.

use super::format::Descriptor;
use super::ring::{JournalSpace, Ring, RingError};
use super::sort::heapsort_by_key;

/// A decoded, data-verified journal record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    /// Sequence number.
    pub seq: u64,
    /// First target sector.
    pub sector: u64,
    /// Length of the write in sectors.
    pub nr_sectors: u32,
    /// Ring position of the data.
    pub ring_pos: u64,
    /// Sectors the record's reservation occupies from `ring_pos`
    /// (at least `nr_sectors`; more if the writer rounds reservations up).
    pub ring_len: u64,
}

impl RecordInfo {
    /// The record described by `d`, whose reservation was `ring_len` sectors.
    pub fn from_descriptor(d: &Descriptor, ring_len: u64) -> Self {
        RecordInfo {
            seq: d.seq,
            sector: d.sector,
            nr_sectors: d.nr_sectors,
            ring_pos: d.ring_pos,
            ring_len,
        }
    }
}

/// Why recovery cannot proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Zero-sized ring or descriptor table, or `tail_pos` outside the ring.
    BadArgs,
    /// A live record that overlaps another, duplicates its seq, or lies
    /// outside the live region of the ring.
    Corrupt {
        /// The offending record.
        seq: u64,
    },
}

/// The outcome of [`plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The first `count` entries of the slice are the records to re-apply,
    /// sorted by seq.
    pub count: usize,
    /// Sequence number for the next record: newest live seq + 1, or
    /// `tail_seq` when there is none.
    pub next_seq: u64,
    /// Ring position just after the newest live record.
    pub head: u64,
    /// Ring sectors from `tail_pos` to `head` (skipped areas and holes included).
    pub used: u64,
    /// The superblock's tail, unchanged.
    pub tail_seq: u64,
    /// The superblock's ring tail, unchanged.
    pub tail_pos: u64,
    /// Ring size.
    pub ring_sectors: u64,
    /// Number of descriptor slots.
    pub desc_count: u32,
}

impl ReplayPlan {
    /// The journal accounting to continue with, exactly as before the crash
    /// for every persisted record.
    pub fn space(&self) -> Result<JournalSpace, RingError> {
        let ring = Ring::new(self.ring_sectors, self.tail_pos, self.used)?;
        JournalSpace::new(ring, self.desc_count, self.tail_seq, self.next_seq)
    }
}

/// Plans recovery from the valid `records` (in any order) and the
/// superblock's `tail_seq`/`tail_pos`. Moves the live records to the front
/// of the slice, sorted by seq; the rest of the slice is left over.
pub fn plan(
    records: &mut [RecordInfo],
    tail_seq: u64,
    tail_pos: u64,
    ring_sectors: u64,
    desc_count: u32,
) -> Result<ReplayPlan, ReplayError> {
    if ring_sectors == 0 || desc_count == 0 || tail_pos >= ring_sectors {
        return Err(ReplayError::BadArgs);
    }
    let is_live = |r: &RecordInfo| {
        r.seq
            .checked_sub(tail_seq)
            .is_some_and(|d| d < u64::from(desc_count))
    };
    let mut count = 0;
    for i in 0..records.len() {
        if records.get(i).is_some_and(is_live) {
            records.swap(count, i);
            count += 1;
        }
    }
    let live = records.get_mut(..count).unwrap_or_default();
    heapsort_by_key(live, |r| r.seq);

    // Walk the live region from tail_pos, measuring positions as circular
    // offsets from it: each record must start at or after the end of the
    // previous one and end before the region laps the tail.
    let mut used = 0u64;
    let mut prev_seq = None;
    for r in live.iter() {
        let corrupt = ReplayError::Corrupt { seq: r.seq };
        let ring_end = r.ring_pos.checked_add(r.ring_len).ok_or(corrupt)?;
        if prev_seq == Some(r.seq)
            || r.ring_len < u64::from(r.nr_sectors)
            || r.nr_sectors == 0
            || r.ring_len > ring_sectors / 2
            || ring_end > ring_sectors
        {
            return Err(corrupt);
        }
        let offset = if r.ring_pos >= tail_pos {
            r.ring_pos - tail_pos
        } else {
            ring_sectors - tail_pos + r.ring_pos
        };
        let end = offset.checked_add(r.ring_len).ok_or(corrupt)?;
        if offset < used || end > ring_sectors || r.seq == u64::MAX {
            return Err(corrupt);
        }
        used = end;
        prev_seq = Some(r.seq);
    }
    let head = if used >= ring_sectors - tail_pos {
        used - (ring_sectors - tail_pos)
    } else {
        tail_pos + used
    };
    Ok(ReplayPlan {
        count,
        next_seq: prev_seq.map_or(tail_seq, |s| s + 1), // s < u64::MAX, checked above
        head,
        used,
        tail_seq,
        tail_pos,
        ring_sectors,
        desc_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn rec(seq: u64, ring_pos: u64, len: u64) -> RecordInfo {
        RecordInfo {
            seq,
            sector: seq.wrapping_mul(100),
            nr_sectors: len as u32,
            ring_pos,
            ring_len: len,
        }
    }

    fn seqs(records: &[RecordInfo], p: &ReplayPlan) -> Vec<u64> {
        records[..p.count].iter().map(|r| r.seq).collect()
    }

    #[test]
    fn empty_journal() {
        let p = plan(&mut [], 7, 30, 100, 8).unwrap();
        assert_eq!((p.count, p.next_seq, p.head, p.used), (0, 7, 30, 0));
        let js = p.space().unwrap();
        assert_eq!(
            js,
            JournalSpace::new(Ring::new(100, 30, 0).unwrap(), 8, 7, 7).unwrap()
        );
        assert_eq!(plan(&mut [], 0, 100, 100, 8), Err(ReplayError::BadArgs));
        assert_eq!(plan(&mut [], 0, 0, 0, 8), Err(ReplayError::BadArgs));
        assert_eq!(plan(&mut [], 0, 0, 100, 0), Err(ReplayError::BadArgs));
    }

    /// Recovery reconstructs exactly the accounting the writer had,
    /// including a skipped end-of-ring area.
    #[test]
    fn wrap_around_matches_the_live_allocator() {
        let mut js = JournalSpace::new(Ring::new(100, 0, 0).unwrap(), 8, 50, 50).unwrap();
        let mut written = Vec::new();
        for n in [30, 30, 25] {
            let (seq, r) = js.reserve(n).unwrap();
            written.push((seq, r));
        }
        js.retire_through(51, js.ring().end_of(&written[1].1))
            .unwrap();
        for n in [20, 40] {
            let (seq, r) = js.reserve(n).unwrap();
            written.push((seq, r));
        }
        assert_eq!(written[3].1.skipped, 15); // 85..100 skipped
        let mut records: Vec<RecordInfo> =
            written.iter().map(|(s, r)| rec(*s, r.pos, r.len)).collect();
        records.reverse();
        let p = plan(&mut records, js.tail_seq(), js.tail_pos(), 100, 8).unwrap();
        assert_eq!(seqs(&records, &p), [52, 53, 54]);
        assert_eq!((p.next_seq, p.head, p.used), (55, 60, 100));
        assert_eq!(p.space().unwrap(), js);
    }

    #[test]
    fn torn_tail_and_holes_are_skipped() {
        // 10@0..10, 11@10..30, 12@30..35 (hole), 13@35..45, 14 torn.
        let all = [rec(10, 0, 10), rec(11, 10, 20), rec(13, 35, 10)];
        let mut records = all;
        let p = plan(&mut records, 10, 0, 100, 8).unwrap();
        assert_eq!(seqs(&records, &p), [10, 11, 13]);
        assert_eq!((p.next_seq, p.head, p.used), (14, 45, 45));
        let mut js = p.space().unwrap();
        assert_eq!(js.pending(), 4);
        // Retiring through 11 then 13 frees the hole with 13.
        js.retire_through(11, 30).unwrap();
        js.retire_through(13, 45).unwrap();
        assert_eq!(
            (js.ring().used(), js.tail_pos(), js.tail_seq()),
            (0, 45, 14)
        );
        // Torn first record: the region before the next one stays accounted.
        let mut records = [rec(11, 10, 20)];
        let p = plan(&mut records, 10, 0, 100, 8).unwrap();
        assert_eq!((p.count, p.next_seq, p.used), (1, 12, 30));
    }

    #[test]
    fn stale_records_are_ignored() {
        // desc_count 4, tail 20: live seqs are 20..24.
        let mut records = [
            rec(17, 60, 10),
            rec(21, 10, 5),
            rec(24, 70, 5),
            rec(20, 0, 10),
            rec(3, 15, 1),
            rec(u64::MAX, 0, 1),
        ];
        let p = plan(&mut records, 20, 0, 100, 4).unwrap();
        assert_eq!(seqs(&records, &p), [20, 21]);
        assert_eq!((p.next_seq, p.used), (22, 15));
        let mut rest: Vec<u64> = records[p.count..].iter().map(|r| r.seq).collect();
        rest.sort_unstable();
        assert_eq!(rest, [3, 17, 24, u64::MAX]);
    }

    #[test]
    fn replay_twice_gives_the_same_plan() {
        let mut records = [
            rec(9, 90, 5),
            rec(12, 10, 5),
            rec(10, 95, 5),
            rec(1, 0, 1),
            rec(11, 0, 10),
        ];
        let first = plan(&mut records, 9, 90, 100, 16).unwrap();
        let after_first = records;
        let second = plan(&mut records, 9, 90, 100, 16).unwrap();
        assert_eq!(first, second);
        assert_eq!(records[..first.count], after_first[..first.count]);
        assert_eq!(seqs(&records, &first), [9, 10, 11, 12]);
        assert_eq!((first.head, first.used), (15, 25));
    }

    #[test]
    fn full_ring_recovers_as_full() {
        let mut records = [rec(0, 40, 50), rec(1, 90, 10), rec(2, 0, 40)];
        let p = plan(&mut records, 0, 40, 100, 8).unwrap();
        assert_eq!((p.head, p.used), (40, 100));
        let mut js = p.space().unwrap();
        assert_eq!(js.reserve(1), Err(RingError::Full));
        js.retire_through(2, 40).unwrap();
        assert_eq!(js.ring().used(), 0);
    }

    #[test]
    fn corrupt_records_are_rejected() {
        let bad: [&[RecordInfo]; 8] = [
            &[rec(5, 0, 10), rec(6, 5, 10)],  // overlaps its predecessor
            &[rec(5, 20, 10), rec(6, 0, 10)], // older position than seq 5
            &[rec(5, 0, 10), rec(5, 10, 10)], // duplicate seq
            &[rec(5, 95, 10)],                // crosses the ring end
            &[rec(5, 30, 10), rec(6, 5, 10)], // laps the tail (tail at 10)
            &[rec(5, 0, 60)],                 // more than half the ring
            &[RecordInfo {
                ring_len: 4,
                ..rec(5, 0, 10)
            }], // shorter than its data
            &[rec(5, u64::MAX, 2)],           // position overflows
        ];
        for (i, case) in bad.iter().enumerate() {
            let mut records = case.to_vec();
            let tail = if i == 4 { 10 } else { 0 };
            let got = plan(&mut records, 5, tail, 100, 8);
            assert!(
                matches!(got, Err(ReplayError::Corrupt { .. })),
                "case {i}: {got:?}"
            );
        }
        let mut last = [rec(u64::MAX, 0, 1)];
        assert_eq!(
            plan(&mut last, u64::MAX - 1, 0, 100, 8),
            Err(ReplayError::Corrupt { seq: u64::MAX })
        );
        let mut zero = [RecordInfo {
            nr_sectors: 0,
            ring_len: 0,
            ..rec(5, 0, 1)
        }];
        assert_eq!(
            plan(&mut zero, 5, 0, 100, 8),
            Err(ReplayError::Corrupt { seq: 5 })
        );
        let d = Descriptor {
            flags: 0,
            seq: 3,
            sector: 9,
            ring_pos: 4,
            nr_sectors: 2,
            data_crc: 0,
        };
        assert_eq!(
            RecordInfo::from_descriptor(&d, 8),
            RecordInfo {
                seq: 3,
                sector: 9,
                nr_sectors: 2,
                ring_pos: 4,
                ring_len: 8
            }
        );
    }

    /// Random journals built with the live allocator recover exactly.
    #[test]
    fn random_journals_recover_exactly() {
        let mut rng = crate::Rng::new(5);
        for _ in 0..300 {
            let size = rng.range(16, 200);
            let desc_count = rng.range(1, 12) as u32;
            let start = rng.range(0, size - 1);
            let mut js =
                JournalSpace::new(Ring::new(size, start, 0).unwrap(), desc_count, 1000, 1000)
                    .unwrap();
            let mut live: Vec<(u64, crate::ring::Reservation)> = Vec::new();
            for _ in 0..rng.range(0, 60) {
                if rng.next().is_multiple_of(3) && !live.is_empty() {
                    let k = rng.range(0, live.len() as u64 - 1) as usize;
                    let (seq, r) = live[k];
                    js.retire_through(seq, js.ring().end_of(&r)).unwrap();
                    live.drain(..=k);
                } else if let Ok((seq, r)) = js.reserve(rng.range(1, size / 2)) {
                    live.push((seq, r));
                }
            }
            let mut records: Vec<RecordInfo> =
                live.iter().map(|(s, r)| rec(*s, r.pos, r.len)).collect();
            // Stale slots from retired records come along too.
            records.push(rec(js.tail_seq().saturating_sub(1), 0, 1));
            let p = plan(&mut records, js.tail_seq(), js.tail_pos(), size, desc_count).unwrap();
            assert_eq!(p.count, live.len());
            assert_eq!(p.space().unwrap(), js);
        }
    }
}
