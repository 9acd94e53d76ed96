//! Which journal records may retire, and how far the tail may move.
//!
//! Records retire in sequence order: the superblock's tail moves past them
//! and their ring space is reused.  A record may retire only when
//!
//! * nothing refers to it any more (`refs == 0`: no extent of the changes
//!   table or of the snapshot table points into it),
//! * it is persistent itself, no reader is copying from it (`pins == 0`),
//! * and **every record that superseded any part of it is persistent**.
//!
//! The last rule closes a data-loss window: a new write `W2` carves the
//! older record `W1` out of the changes table when it is inserted, before
//! its own data reaches pmem.  If `W1` retired then and power failed before
//! `W2` was persistent, replay would find neither, and the sectors would
//! read as they were before `W1` — which was acknowledged.  Each record
//! therefore remembers the newest record that superseded part of it
//! (`superseded_by`), and the tail stops before a record whose superseder
//! is not persistent yet.
//!
//! Holes (records of writes that never persisted before a crash, rebuilt by
//! replay with `known == false`) retire freely.

/// In-core state of one journal record (slot `seq % desc_count`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rec {
    /// Sequence number this slot describes.
    pub seq: u64,
    /// Ring position just after the record's data.
    pub end: u64,
    /// Table extents (changes table and snapshot table) pointing into it.
    pub refs: u32,
    /// Readers copying from this record right now.
    pub pins: u32,
    /// Data and descriptor are durable.
    pub persisted: bool,
    /// False for a hole left by a write that never persisted (recovery).
    pub known: bool,
    /// Newest record that superseded part of this one (0: none).
    pub superseded_by: u64,
    /// First target sector the record wrote (destage finds the record's
    /// pieces in the tables from it and `sectors`).
    pub sector: u64,
    /// Number of sectors the record wrote.
    pub sectors: u32,
    /// How many times its data was copied within the journal by compaction
    /// (0 for a write; see `compact`).
    pub copies: u8,
}

impl Rec {
    /// A record just reserved: `sectors` at `sector`, its data ending at
    /// ring position `end`, not persistent yet, nothing referring to it.
    pub const fn reserved(seq: u64, end: u64, sector: u64, sectors: u32) -> Rec {
        Rec {
            seq,
            end,
            refs: 0,
            pins: 0,
            persisted: false,
            known: true,
            superseded_by: 0,
            sector,
            sectors,
            copies: 0,
        }
    }

    /// A persistent record that nothing refers to, pins or supersedes.
    pub const fn free(seq: u64, end: u64) -> Rec {
        Rec {
            seq,
            end,
            refs: 0,
            pins: 0,
            persisted: true,
            known: true,
            superseded_by: 0,
            sector: 0,
            sectors: 0,
            copies: 0,
        }
    }
}

/// How far retirement may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetirePoint {
    /// The last record that may retire and the ring position after it.
    pub through: Option<(u64, u64)>,
    /// Retirement stopped at a record that readers pin: retry on unpin.
    pub pinned: bool,
}

fn slot(recs: &[Rec], seq: u64) -> Option<&Rec> {
    let n = recs.len() as u64;
    if n == 0 {
        return None;
    }
    recs.get((seq % n) as usize).filter(|r| r.seq == seq)
}

fn is_hole(r: Option<&Rec>) -> bool {
    r.is_none_or(|r| !r.known)
}

/// The records whose data destage writes first: of the first `scan` live
/// records from the tail (`tail..next`), the persisted ones that tables
/// still refer to, oldest first.  These hold the tail back; younger data
/// is likely to be overwritten before the tail reaches it, and then never
/// needs writing at all.
pub fn oldest_referenced(recs: &[Rec], tail: u64, next: u64, scan: u64) -> impl Iterator<Item = Rec> + '_ {
    (tail..next.min(tail.saturating_add(scan)))
        .filter_map(move |s| slot(recs, s).copied())
        .filter(|r| r.known && r.persisted && r.refs > 0)
}

/// The retirement point of the live records `tail..next` (`recs` indexed
/// by `seq % recs.len()`).
pub fn retire_point(recs: &[Rec], tail: u64, next: u64) -> RetirePoint {
    retire_point_from(recs, tail, next, &mut 0)
}

/// [`retire_point`], with `floor`: every known record of `tail..floor` is
/// persistent (0 says nothing).  A record, once persistent, stays so, and
/// new records are numbered from `next`, so the caller keeps `floor` from
/// one call to the next and the search for the first record not yet
/// persistent (phase 2) resumes there instead of walking again from the
/// retirement point to the newest superseder (under overwrites, most of
/// the journal).  Advanced here as far as the search went.
pub fn retire_point_from(recs: &[Rec], tail: u64, next: u64, floor: &mut u64) -> RetirePoint {
    let mut out = RetirePoint::default();
    // Phase 1: the longest prefix of records that nothing refers to, and
    // the newest record that superseded any of them.
    let mut seq = tail;
    let mut need = 0u64;
    let mut last = None;
    while seq < next {
        let r = slot(recs, seq);
        if !is_hole(r) {
            let Some(r) = r else { break };
            if r.refs > 0 || !r.persisted {
                break;
            }
            if r.pins > 0 {
                out.pinned = true;
                break;
            }
            need = need.max(r.superseded_by);
            last = Some((seq, r.end));
        }
        seq += 1;
    }
    let Some(last) = last else {
        return out;
    };
    // Phase 2: the first record that is not persistent (every record
    // before `seq` is), looking no further than `need`.
    let mut unpersisted = u64::MAX;
    let mut s = seq.max(*floor);
    while s < next && s <= need {
        if slot(recs, s).is_some_and(|r| r.known && !r.persisted) {
            unpersisted = s;
            break;
        }
        s += 1;
    }
    *floor = (*floor).max(s);
    if need < unpersisted {
        out.through = Some(last);
        return out;
    }
    // Phase 3: the superseders of a prefix only grow with it; keep the
    // longest prefix whose superseders are all persistent.
    let mut need = 0u64;
    for s in tail..=last.0 {
        if let Some(r) = slot(recs, s).filter(|r| r.known) {
            need = need.max(r.superseded_by);
            if need >= unpersisted {
                break;
            }
            out.through = Some((s, r.end));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn rec(seq: u64, end: u64) -> Rec {
        Rec::free(seq, end)
    }

    fn table(rs: &[Rec], n: usize) -> Vec<Rec> {
        let mut v = vec![Rec::default(); n];
        for r in rs {
            v[(r.seq % n as u64) as usize] = *r;
        }
        v
    }

    /// A data-loss window once found here: W2 (seq 2) carved W1 (seq
    /// 1) wholly but is still being copied.  W1 must not retire.
    #[test]
    fn superseded_by_unpersisted_record_stays() {
        let w1 = Rec {
            superseded_by: 2,
            ..rec(1, 8)
        };
        let w2 = Rec {
            persisted: false,
            refs: 1,
            ..rec(2, 16)
        };
        let recs = table(&[w1, w2], 8);
        assert_eq!(retire_point(&recs, 1, 3).through, None);
        // Once W2 is persistent, W1 retires (W2 is still referenced).
        let recs = table(
            &[
                w1,
                Rec {
                    persisted: true,
                    ..w2
                },
            ],
            8,
        );
        assert_eq!(retire_point(&recs, 1, 3).through, Some((1, 8)));
    }

    /// Partial supersession further ahead: W1 superseded by W5 which is not
    /// persistent while W3, W4 are; W0 retires, W1 and after do not.
    #[test]
    fn prefix_up_to_unpersisted_superseder() {
        let rs = [
            rec(10, 8),
            Rec {
                superseded_by: 14,
                ..rec(11, 16)
            },
            rec(12, 24),
            Rec {
                refs: 1,
                ..rec(13, 32)
            },
            Rec {
                persisted: false,
                refs: 1,
                ..rec(14, 40)
            },
        ];
        let recs = table(&rs, 16);
        assert_eq!(retire_point(&recs, 10, 15).through, Some((10, 8)));
        let mut rs2 = rs;
        rs2[4].persisted = true;
        let recs = table(&rs2, 16);
        assert_eq!(retire_point(&recs, 10, 15).through, Some((12, 24)));
    }

    #[test]
    fn holes_pins_and_refs() {
        let hole = Rec {
            known: false,
            persisted: false,
            ..rec(3, 0)
        };
        let recs = table(&[rec(2, 8), hole, rec(4, 24)], 8);
        assert_eq!(retire_point(&recs, 2, 5).through, Some((4, 24)));
        let pinned = Rec { pins: 1, ..rec(4, 24) };
        let recs = table(&[rec(2, 8), hole, pinned], 8);
        let p = retire_point(&recs, 2, 5);
        assert_eq!(p.through, Some((2, 8)));
        assert!(p.pinned);
        let recs = table(&[Rec { refs: 1, ..rec(2, 8) }, rec(4, 24)], 8);
        assert_eq!(retire_point(&recs, 2, 5).through, None);
        assert_eq!(retire_point(&[], 2, 5), RetirePoint::default());
    }

    /// Random histories: the retirement point never passes a record with a
    /// referenced, unpersisted or pinned record before it, nor one whose
    /// superseder is unpersisted; and it is maximal.
    #[test]
    fn random_histories_against_a_model() {
        let mut rng = crate::Rng::new(0x5eed_1001);
        let mut below = |n: u64| rng.range(0, n.max(1) - 1);
        for _ in 0..20000 {
            let n = 1 + below(12) as usize;
            let tail = 100 + below(5);
            let next = tail + below(n as u64 + 1);
            let mut rs = Vec::new();
            for s in tail..next {
                let mut r = rec(s, s * 8);
                r.known = below(8) != 0;
                r.persisted = r.known && below(4) != 0;
                r.refs = u32::from(below(4) == 0);
                r.pins = u32::from(below(8) == 0);
                if below(3) == 0 && s + 1 < next {
                    r.superseded_by = s + 1 + below(next - s - 1);
                }
                rs.push(r);
            }
            let recs = table(&rs, n);
            // Model: the largest k such that for every known record up to k,
            // it is free and persisted, and all its superseders persisted.
            let persisted = |s: u64| rs.iter().find(|r| r.seq == s).is_none_or(|r| !r.known || r.persisted);
            let mut want = None;
            for r in rs.iter() {
                if !r.known {
                    continue;
                }
                if r.refs > 0 || !r.persisted || r.pins > 0 {
                    break;
                }
                if r.superseded_by != 0 && !(r.seq + 1..=r.superseded_by).all(persisted) {
                    break;
                }
                want = Some((r.seq, r.end));
            }
            assert_eq!(retire_point(&recs, tail, next).through, want, "{:?}", rs);
            // With any valid floor (at most the first known record not
            // persistent): the same point, and the floor stays valid.
            let first = rs.iter().find(|r| r.known && !r.persisted).map_or(next, |r| r.seq);
            let mut floor = tail + below(first - tail + 1);
            assert_eq!(retire_point_from(&recs, tail, next, &mut floor).through, want, "{:?}", rs);
            assert!(floor <= first, "floor {} passed {} in {:?}", floor, first, rs);
            assert_eq!(retire_point_from(&recs, tail, next, &mut floor).through, want, "again: {:?}", rs);
        }
    }

    /// Destage's order: persisted, referenced records from the tail, within
    /// the scan window; holes, unpersisted and superseded records skipped.
    #[test]
    fn oldest_referenced_from_the_tail() {
        let recs = table(
            &[
                Rec { refs: 1, ..rec(3, 8) },
                rec(4, 16),
                Rec {
                    refs: 2,
                    persisted: false,
                    ..rec(5, 24)
                },
                Rec { refs: 1, ..rec(6, 32) },
                Rec {
                    refs: 1,
                    known: false,
                    ..rec(7, 40)
                },
                Rec { refs: 3, ..rec(8, 48) },
            ],
            8,
        );
        let seqs = |tail, next, scan| {
            oldest_referenced(&recs, tail, next, scan)
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(3, 9, 100), [3, 6, 8]);
        assert_eq!(seqs(3, 9, 4), [3, 6]);
        assert_eq!(seqs(4, 8, 100), [6]);
        assert_eq!(seqs(9, 9, 100), Vec::<u64>::new());
        // A slot reused by a later record is not the one asked for.
        assert_eq!(seqs(11, 12, 100), Vec::<u64>::new());
    }
}
