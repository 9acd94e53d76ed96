//! Overlap algebra of the changes table.
//!
//! The changes table maps target sectors to journal data: an ordered map of
//! non-overlapping [`Extent`]s keyed by start sector. A new write covering
//! `[start, end)` replaces whatever older extents it overlaps; [`carve`]
//! says what is left of each. Reads take the pieces in range with
//! [`intersect`]; destage batches ring-contiguous pieces with
//! [`merge_adjacent`]. [`insert`] applies a write to the tables.

use super::epoch::Epoch;
use super::retire::Rec;

/// Target sectors `[start, start + len)` whose newest data is in the journal:
/// sector `x` is at ring position `ring_pos + (x - start)`, written by record
/// `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First target sector.
    pub start: u64,
    /// Number of sectors.
    pub len: u64,
    /// Sequence number of the journal record holding the data.
    pub seq: u64,
    /// Ring position of the data of `start`.
    pub ring_pos: u64,
}

impl Extent {
    /// One past the last sector.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }

    /// Sub-extent `[start, end)`, which must lie inside `self`.
    fn slice(&self, start: u64, end: u64) -> Extent {
        Extent {
            start,
            len: end - start,
            seq: self.seq,
            ring_pos: self.ring_pos.saturating_add(start - self.start),
        }
    }
}

/// What is left of an existing extent once a newer write covers a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carve {
    /// No overlap: the extent stays as it is.
    Untouched,
    /// Fully covered: remove the extent.
    Covered,
    /// One piece is left (to the left or to the right of the write).
    Trimmed(Extent),
    /// The write is strictly inside: a left and a right piece are left.
    Split(Extent, Extent),
}

/// What remains of `existing` after a newer write covers `[start, end)`.
/// A right-hand remainder has its `ring_pos` shifted accordingly.
pub fn carve(existing: &Extent, start: u64, end: u64) -> Carve {
    let (e_start, e_end) = (existing.start, existing.end());
    if start >= end || end <= e_start || start >= e_end {
        return Carve::Untouched;
    }
    let left = (start > e_start).then(|| existing.slice(e_start, start));
    let right = (end < e_end).then(|| existing.slice(end, e_end));
    match (left, right) {
        (None, None) => Carve::Covered,
        (Some(piece), None) | (None, Some(piece)) => Carve::Trimmed(piece),
        (Some(l), Some(r)) => Carve::Split(l, r),
    }
}

/// The part of `extent` inside `[start, end)`, if any, with `ring_pos`
/// adjusted to its first sector.
pub fn intersect(extent: &Extent, start: u64, end: u64) -> Option<Extent> {
    let from = extent.start.max(start);
    let to = extent.end().min(end);
    (from < to).then(|| extent.slice(from, to))
}

/// Merges `b` into `a` when `b` follows `a` both on the target and in the
/// ring, so both can be destaged with one copy. Sequence numbers may differ;
/// the merged run carries the newest.
pub fn merge_adjacent(a: &Extent, b: &Extent) -> Option<Extent> {
    if a.start.checked_add(a.len)? != b.start || a.ring_pos.checked_add(a.len)? != b.ring_pos {
        return None;
    }
    Some(Extent {
        start: a.start,
        len: a.len.checked_add(b.len)?,
        seq: a.seq.max(b.seq),
        ring_pos: a.ring_pos,
    })
}

/// Which of the two tables an extent goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The changes table: target sector → newest journal extent.
    Changes,
    /// The snapshot table: pre-snapshot data carved by newer writes, kept
    /// while a chunk it touches is not preserved.
    Snap,
}

/// The tables and record states that [`insert`] changes, as the caller
/// holds them (the kernel: rbtrees with reserved nodes, under `state`).
pub trait Tables {
    /// The first extent of the changes table overlapping `start..end`.
    fn first_overlap(&self, start: u64, end: u64) -> Option<Extent>;
    /// Removes the changes-table extent that starts at `start`; false if
    /// there is none.
    fn remove(&mut self, start: u64) -> bool;
    /// Inserts `ext` into table `which`; false when no node is left for it
    /// (the caller reserved too few: the piece is lost and not counted).
    fn insert(&mut self, which: Which, ext: Extent) -> bool;
    /// Replaces, in place, the changes-table extent that starts at
    /// `ext.start` and has its length by `ext`, and returns it; `None` (and
    /// nothing changed) if there is none.
    fn replace(&mut self, ext: Extent) -> Option<Extent>;
    /// The state of record `seq`, if its slot holds it.
    fn rec(&mut self, seq: u64) -> Option<&mut Rec>;
    /// Whether chunk `c` is preserved (holds its snapshot copy).
    fn preserved(&self, c: u64) -> bool;
}

/// Table nodes [`insert`] may need beyond the one it frees per carved
/// extent: the new extent and a split remainder, plus two kept pieces when
/// a snapshot is active.
pub const fn nodes_needed(snapshot: bool) -> usize {
    if snapshot {
        4
    } else {
        2
    }
}

/// Inserts `ext` (the newest record) into the changes table, carving the
/// older extents it overlaps ([`carve`]); pre-snapshot data that the
/// snapshot still needs moves to the snapshot table
/// ([`Epoch::kept_piece`]).
///
/// Keeps these invariants, checked against a per-sector model on the host:
/// the changes table stays non-overlapping and maps each sector to the
/// newest write covering it; every record's `refs` is the number of pieces
/// of both tables pointing into it; a record whose piece was carved has
/// `superseded_by >= ext.seq` (it may retire only once `ext` is
/// persistent, see [`super::retire`]).
pub fn insert(t: &mut impl Tables, ext: Extent, epoch: Epoch, chunk_sectors: u32) {
    let (start, end) = (ext.start, ext.end());
    if ext.len > 0 {
        // The same sectors as one extent (a repeated overwrite, the common
        // case): the new extent takes the old one's node in place, and
        // nothing else overlaps (the table does not overlap).  The same
        // outcome as carving it (`Covered`) below, in one lookup, without
        // the tree's rebalancing.
        if let Some(old) = t.replace(ext) {
            supersede(t, &old, &ext, epoch, chunk_sectors, -1);
            if let Some(r) = t.rec(ext.seq) {
                r.refs = r.refs.saturating_add(1);
            }
            return;
        }
    }
    while let Some(old) = t.first_overlap(start, end) {
        if !t.remove(old.start) {
            break;
        }
        if let Some(r) = t.rec(old.seq) {
            r.superseded_by = r.superseded_by.max(ext.seq);
        }
        let (a, b) = match carve(&old, start, end) {
            Carve::Covered => (None, None),
            Carve::Trimmed(x) => (Some(x), None),
            Carve::Split(x, y) => (Some(x), Some(y)),
            Carve::Untouched => {
                // Only for an empty `ext`: put `old` back and stop.
                t.insert(Which::Changes, old);
                break;
            }
        };
        // `old` itself no longer counts; each piece inserted does.
        let mut delta: i64 = -1;
        for piece in [a, b].into_iter().flatten() {
            if t.insert(Which::Changes, piece) {
                delta += 1;
            }
        }
        supersede_kept(t, &old, &ext, epoch, chunk_sectors, delta);
    }
    if t.insert(Which::Changes, ext) {
        if let Some(r) = t.rec(ext.seq) {
            r.refs = r.refs.saturating_add(1);
        }
    }
}

/// Marks `old` superseded by `ext` (carved out of the changes table
/// whole), then [`supersede_kept`].
fn supersede(
    t: &mut impl Tables,
    old: &Extent,
    ext: &Extent,
    epoch: Epoch,
    chunk_sectors: u32,
    delta: i64,
) {
    if let Some(r) = t.rec(old.seq) {
        r.superseded_by = r.superseded_by.max(ext.seq);
    }
    supersede_kept(t, old, ext, epoch, chunk_sectors, delta);
}

/// Moves what the snapshot still needs of the carved `old` to the snapshot
/// table, and adds to `old`'s record `delta` (its pieces still in the
/// changes table, minus the one it had) plus the kept piece.
fn supersede_kept(
    t: &mut impl Tables,
    old: &Extent,
    ext: &Extent,
    epoch: Epoch,
    chunk_sectors: u32,
    mut delta: i64,
) {
    let kept = epoch.kept_piece(old, ext, chunk_sectors, |c| t.preserved(c));
    if let Some(m) = kept {
        if t.insert(Which::Snap, m) {
            delta += 1;
        }
    }
    if let Some(r) = t.rec(old.seq) {
        r.refs = add_refs(r.refs, delta);
    }
}

/// `refs + delta`, clamped to the `u32` range.
fn add_refs(refs: u32, delta: i64) -> u32 {
    u32::try_from((i64::from(refs) + delta).max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn ext(start: u64, len: u64, seq: u64, ring_pos: u64) -> Extent {
        Extent {
            start,
            len,
            seq,
            ring_pos,
        }
    }

    const E: Extent = Extent {
        start: 10,
        len: 10,
        seq: 5,
        ring_pos: 100,
    };

    #[test]
    fn carve_every_relative_position() {
        use Carve::*;
        let cases = [
            ("before", 0, 5, Untouched),
            ("adjacent-left", 0, 10, Untouched),
            ("overlap-left", 5, 15, Trimmed(ext(15, 5, 5, 105))),
            ("left-aligned", 10, 13, Trimmed(ext(13, 7, 5, 103))),
            (
                "inside",
                12,
                15,
                Split(ext(10, 2, 5, 100), ext(15, 5, 5, 105)),
            ),
            ("single sector", 19, 20, Trimmed(ext(10, 9, 5, 100))),
            ("exact", 10, 20, Covered),
            ("covering", 5, 25, Covered),
            ("right-aligned", 15, 20, Trimmed(ext(10, 5, 5, 100))),
            ("overlap-right", 15, 25, Trimmed(ext(10, 5, 5, 100))),
            ("adjacent-right", 20, 25, Untouched),
            ("after", 25, 30, Untouched),
            ("empty range", 12, 12, Untouched),
            ("reversed range", 15, 12, Untouched),
        ];
        for (name, s, e, want) in cases {
            assert_eq!(carve(&E, s, e), want, "{name}");
        }
        let top = ext(u64::MAX - 4, 4, 1, 0);
        assert_eq!(
            carve(&top, u64::MAX - 2, u64::MAX),
            Carve::Trimmed(ext(u64::MAX - 4, 2, 1, 0))
        );
    }

    #[test]
    fn intersect_every_relative_position() {
        let cases = [
            (0, 5, None),
            (0, 10, None),
            (5, 15, Some(ext(10, 5, 5, 100))),
            (12, 15, Some(ext(12, 3, 5, 102))),
            (10, 20, Some(E)),
            (5, 25, Some(E)),
            (15, 25, Some(ext(15, 5, 5, 105))),
            (20, 25, None),
            (25, 30, None),
            (12, 12, None),
        ];
        for (s, e, want) in cases {
            assert_eq!(intersect(&E, s, e), want, "[{s}, {e})");
        }
    }

    #[test]
    fn merge_needs_target_and_ring_contiguity() {
        let b = ext(20, 4, 9, 110);
        assert_eq!(merge_adjacent(&E, &b), Some(ext(10, 14, 9, 100)));
        assert_eq!(merge_adjacent(&b, &E), None);
        assert_eq!(merge_adjacent(&E, &ext(20, 4, 1, 111)), None);
        assert_eq!(merge_adjacent(&E, &ext(21, 4, 1, 110)), None);
        assert_eq!(
            merge_adjacent(&E, &ext(20, 4, 1, 110)),
            Some(ext(10, 14, 5, 100))
        );
        assert_eq!(
            merge_adjacent(&ext(0, u64::MAX, 1, 0), &ext(u64::MAX, 1, 1, u64::MAX)),
            None
        );
        assert_eq!(
            merge_adjacent(&ext(u64::MAX, 1, 1, 0), &ext(0, 1, 1, 1)),
            None
        );
    }

    /// Applies a write to a table the way the changes table does.
    fn apply(table: &mut Vec<Extent>, new: Extent) {
        let mut next = Vec::new();
        for e in table.iter() {
            match carve(e, new.start, new.end()) {
                Carve::Untouched => next.push(*e),
                Carve::Covered => {}
                Carve::Trimmed(p) => next.push(p),
                Carve::Split(l, r) => next.extend([l, r]),
            }
        }
        next.push(new);
        next.sort_by_key(|e| e.start);
        *table = next;
    }

    #[test]
    fn random_writes_match_a_per_sector_model() {
        const SECTORS: u64 = 256;
        let mut rng = crate::Rng::new(99);
        for _ in 0..100 {
            let mut table = Vec::new();
            let mut model: Vec<Option<(u64, u64)>> = vec![None; SECTORS as usize];
            for seq in 1..60 {
                let start = rng.range(0, SECTORS - 1);
                let len = rng.range(1, (SECTORS - start).min(40));
                let ring_pos = rng.range(0, 10_000);
                apply(&mut table, ext(start, len, seq, ring_pos));
                for x in start..start + len {
                    model[x as usize] = Some((seq, ring_pos + x - start));
                }
                let mut seen: Vec<Option<(u64, u64)>> = vec![None; SECTORS as usize];
                for w in table.windows(2) {
                    assert!(w[0].end() <= w[1].start, "overlap {w:?}");
                }
                for e in &table {
                    assert!(e.len > 0);
                    for x in e.start..e.end() {
                        seen[x as usize] = Some((e.seq, e.ring_pos + x - e.start));
                    }
                }
                assert_eq!(seen, model);
                // A read of a random range assembles exactly the model's pieces.
                let (rs, re) = (rng.range(0, SECTORS - 1), rng.range(0, SECTORS));
                let mut got: Vec<Option<(u64, u64)>> = vec![None; SECTORS as usize];
                for p in table.iter().filter_map(|e| intersect(e, rs, re)) {
                    assert!(p.start >= rs && p.end() <= re);
                    for x in p.start..p.end() {
                        got[x as usize] = Some((p.seq, p.ring_pos + x - p.start));
                    }
                }
                for x in 0..SECTORS {
                    let want = if x >= rs && x < re {
                        model[x as usize]
                    } else {
                        None
                    };
                    assert_eq!(got[x as usize], want);
                }
            }
        }
    }
}
