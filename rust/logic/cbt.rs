//! Changed-block tracking: which chunks of the volume were written in the
//! current interval (since the last `snapshot`, or since format) and in the
//! previous one (between the two last `snapshot` messages).
//!
//! An interval is a range of journal sequence numbers: record `seq` belongs
//! to the current interval when `seq >= cur_seq`, to the previous one when
//! `prev_seq <= seq < cur_seq` (and the previous interval is known).  Each
//! interval has a bitmap, one bit per chunk, laid out as the validity map
//! (`validity.rs`).  The write path sets the bits of a write's chunks in
//! core when it takes the write's sequence number, so the in-core maps are
//! always complete; the pmem copies lag behind, and are brought up to date
//! (the dirty pages of both maps) before the journal tail moves past any
//! record.  Replay marks the records still in the journal again, so the
//! persistent map plus the live records are the exact set after a crash.
//!
//! `snapshot` turns the current interval into the previous one (its map
//! slot is kept) and starts the new current interval on the other slot,
//! which the caller has zeroed (with the previous interval declared unknown
//! first, so that a crash in between never pairs the zeroed slot with a
//! known interval).  `drop` changes nothing here: tracking counts from the
//! last `snapshot` taken, whether or not it still exists.

use super::validity::OutOfRange;
use core::fmt;

/// Bytes of map per dirty bit: the unit in which maps are persisted.
pub const PAGE_BYTES: usize = 4096;

/// Flags word of the superblock: bit 0 = slot of the current map.
pub const FLAG_CUR_SLOT: u32 = 1;
/// Flags word of the superblock: bit 1 = the previous interval is known.
pub const FLAG_PREV_VALID: u32 = 2;

/// The two intervals, as the superblock records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intervals {
    /// First sequence number of the current interval.
    pub cur_seq: u64,
    /// First sequence number of the previous interval (meaningful only
    /// with `prev_valid`).
    pub prev_seq: u64,
    /// Map slot (0 or 1) holding the current interval.
    pub cur_slot: u8,
    /// The previous interval is known (a `snapshot` was taken since format,
    /// and the slot holds it).
    pub prev_valid: bool,
}

/// Which interval a record, or a query, is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Since the last `snapshot` (or format).
    Current,
    /// Between the two last `snapshot` messages.
    Previous,
}

impl Intervals {
    /// The intervals of a journal just formatted: everything from its
    /// first record on is current.
    pub const fn fresh(first_seq: u64) -> Self {
        Intervals {
            cur_seq: first_seq,
            prev_seq: 0,
            cur_slot: 0,
            prev_valid: false,
        }
    }

    /// The superblock's flags word.
    pub fn flags(&self) -> u32 {
        u32::from(self.cur_slot & 1) | if self.prev_valid { FLAG_PREV_VALID } else { 0 }
    }

    /// Decodes the superblock's fields; `None` for unknown flag bits or a
    /// previous interval that starts after the current one.
    pub fn from_fields(cur_seq: u64, prev_seq: u64, flags: u32) -> Option<Self> {
        if flags & !(FLAG_CUR_SLOT | FLAG_PREV_VALID) != 0 {
            return None;
        }
        let iv = Intervals {
            cur_seq,
            prev_seq,
            cur_slot: (flags & FLAG_CUR_SLOT) as u8,
            prev_valid: flags & FLAG_PREV_VALID != 0,
        };
        (!iv.prev_valid || prev_seq <= cur_seq).then_some(iv)
    }

    /// The interval record `seq` counts in, if any.
    pub fn of(&self, seq: u64) -> Option<Which> {
        if seq >= self.cur_seq {
            Some(Which::Current)
        } else if self.prev_valid && seq >= self.prev_seq {
            Some(Which::Previous)
        } else {
            None
        }
    }

    /// The map slot of interval `w`.
    pub fn slot(&self, w: Which) -> u8 {
        match w {
            Which::Current => self.cur_slot & 1,
            Which::Previous => 1 - (self.cur_slot & 1),
        }
    }

    /// The previous interval forgotten (before its slot is zeroed).
    pub fn without_prev(&self) -> Self {
        Intervals {
            prev_valid: false,
            ..*self
        }
    }

    /// The intervals once a `snapshot` took `snap_seq` as its boundary: the
    /// current interval becomes the previous one, on its slot, and the new
    /// current interval starts at `snap_seq` on the other slot.
    pub fn after_snapshot(&self, snap_seq: u64) -> Self {
        Intervals {
            cur_seq: snap_seq,
            prev_seq: self.cur_seq,
            cur_slot: 1 - (self.cur_slot & 1),
            prev_valid: true,
        }
    }

    /// The intervals to keep after replay handed out `next_seq` as the
    /// next sequence number (see `epoch::snap_seq_after_replay`): a
    /// boundary above it would put new writes into the wrong interval; no
    /// valid record lies between them, so lowering it changes the interval
    /// of no replayed record.
    pub fn after_replay(&self, next_seq: u64) -> Self {
        let cur_seq = self.cur_seq.min(next_seq);
        Intervals {
            cur_seq,
            prev_seq: self.prev_seq.min(cur_seq),
            ..*self
        }
    }
}

/// Chunks `first..=last` of a write of `nr` sectors at `sector`, if `nr > 0`.
pub fn chunks_of(sector: u64, nr: u64, chunk_sectors: u32) -> Option<(u64, u64)> {
    let cs = u64::from(chunk_sectors.max(1));
    let last = sector.checked_add(nr.checked_sub(1)?)?;
    Some((sector / cs, last / cs))
}

/// Sets the bits of chunks `first..=last` in `map` and the dirty bits of
/// the pages they lie in (`dirty`: one bit per [`PAGE_BYTES`] of map).
/// Returns how many bits were newly set.  Refuses chunks beyond either map
/// without changing anything.
pub fn mark(map: &mut [u8], dirty: &mut [u8], first: u64, last: u64) -> Result<u64, OutOfRange> {
    if first > last {
        return Ok(0);
    }
    let last_byte = usize::try_from(last / 8).map_err(|_| OutOfRange)?;
    if last_byte >= map.len() || (last_byte / PAGE_BYTES) / 8 >= dirty.len() {
        return Err(OutOfRange);
    }
    let mut set = 0;
    let mut c = first;
    while c <= last {
        let byte = (c / 8) as usize;
        // whole bytes at once where the range covers them
        let (mask, next) = if c % 8 == 0 && last - c >= 7 {
            (0xFFu8, c + 8)
        } else {
            (1u8 << (c % 8), c + 1)
        };
        if let Some(b) = map.get_mut(byte) {
            let new = mask & !*b;
            if new != 0 {
                *b |= new;
                set += u64::from(new.count_ones());
                let page = byte / PAGE_BYTES;
                if let Some(d) = dirty.get_mut(page / 8) {
                    *d |= 1 << (page % 8);
                }
            }
        }
        c = next;
    }
    Ok(set)
}

/// Bytes of a dirty-page bitmap for a map of `map_bytes`.
pub fn dirty_bytes(map_bytes: usize) -> usize {
    map_bytes.div_ceil(PAGE_BYTES).div_ceil(8)
}

/// Takes the first dirty page at or after `from` out of `dirty` (clears
/// its bit) and returns its index.
pub fn take_dirty(dirty: &mut [u8], from: usize) -> Option<usize> {
    let mut p = from;
    while let Some(b) = dirty.get_mut(p / 8) {
        let pending = *b & (0xFFu8 << (p % 8));
        if pending != 0 {
            let bit = pending.trailing_zeros() as usize;
            *b &= !(1 << bit);
            return Some(p / 8 * 8 + bit);
        }
        p = (p / 8 + 1) * 8;
    }
    None
}

/// Calls `f(start, len)` for each run of set bits among chunks
/// `first..end` of `map`, whose byte 0 holds chunk `base` (a multiple of
/// 8), in order, until `f` returns `false`.  Chunks beyond the map read as
/// clear.
fn for_each_run(map: &[u8], base: u64, first: u64, end: u64, mut f: impl FnMut(u64, u64) -> bool) {
    let bit = |c: u64| {
        c.checked_sub(base)
            .and_then(|o| map.get((o / 8) as usize).map(|b| b & (1 << (o % 8)) != 0))
            .unwrap_or(false)
    };
    let mut c = first.max(base);
    let end = end.min(base.saturating_add((map.len() as u64).saturating_mul(8)));
    let mut open: Option<u64> = None;
    while c < end {
        // skip clear bytes quickly outside a run
        if open.is_none() && (c - base) % 8 == 0 && end - c >= 8 {
            if map.get(((c - base) / 8) as usize) == Some(&0) {
                c += 8;
                continue;
            }
        }
        match (bit(c), open) {
            (true, None) => open = Some(c),
            (false, Some(s)) => {
                open = None;
                if !f(s, c - s) {
                    return;
                }
            }
            _ => {}
        }
        c += 1;
    }
    if let Some(s) = open {
        f(s, end - s);
    }
}

fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Longest header line [`report`] writes (with its newline).
pub const HEADER_MAX: usize = 192;

/// What [`report`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Runs listed.
    pub runs: u64,
    /// Chunks in them.
    pub changed: u64,
    /// First chunk not covered by the answer (`None`: the answer reaches
    /// the end of the range asked for).
    pub next: Option<u64>,
}

/// Plans the answer to `changed` over chunks `first..end` of `map` (byte 0
/// = chunk `base`) within `budget` bytes of output: the runs that fit
/// whole, and where to continue.
pub fn plan_report(map: &[u8], base: u64, first: u64, end: u64, budget: usize) -> Report {
    let room = budget.saturating_sub(HEADER_MAX + 1);
    let mut used = 0usize;
    let mut rep = Report {
        runs: 0,
        changed: 0,
        next: None,
    };
    for_each_run(map, base, first, end, |s, l| {
        let line = digits(s) + 1 + digits(l) + 1;
        if used + line > room {
            rep.next = Some(s);
            return false;
        }
        used += line;
        rep.runs += 1;
        rep.changed += l;
        true
    });
    rep
}

/// Writes the answer to `changed` planned by [`plan_report`]:
///
/// ```text
/// <interval> chunk_sectors=<C> first=<F> end=<E> next=<N|-> runs=<R> changed=<K>
/// <start> <len>          (one line per run, in chunks, ascending)
/// ```
///
/// `next` is where to ask again when the runs did not all fit (`-`: the
/// answer is complete up to `end`).
#[allow(clippy::too_many_arguments)]
pub fn write_report(
    out: &mut impl fmt::Write,
    which: Which,
    chunk_sectors: u32,
    map: &[u8],
    base: u64,
    first: u64,
    end: u64,
    rep: &Report,
) -> fmt::Result {
    let name = match which {
        Which::Current => "current",
        Which::Previous => "previous",
    };
    write!(out, "{name} chunk_sectors={chunk_sectors} first={first} end={end} next=")?;
    match rep.next {
        Some(n) => write!(out, "{n}")?,
        None => out.write_str("-")?,
    }
    write!(out, " runs={} changed={}", rep.runs, rep.changed)?;
    let stop = rep.next.unwrap_or(end);
    let mut left = rep.runs;
    let mut res = Ok(());
    for_each_run(map, base, first, stop, |s, l| {
        if left == 0 {
            return false;
        }
        left -= 1;
        res = write!(out, "\n{s} {l}");
        res.is_ok()
    });
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    fn runs(map: &[u8], base: u64, first: u64, end: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for_each_run(map, base, first, end, |s, l| {
            v.push((s, l));
            true
        });
        v
    }

    #[test]
    fn intervals() {
        let f = Intervals::fresh(1);
        assert_eq!(f.of(0), None);
        assert_eq!(f.of(1), Some(Which::Current));
        let s = f.after_snapshot(10);
        assert_eq!((s.cur_seq, s.prev_seq, s.cur_slot, s.prev_valid), (10, 1, 1, true));
        assert_eq!(s.of(0), None);
        assert_eq!(s.of(1), Some(Which::Previous));
        assert_eq!(s.of(9), Some(Which::Previous));
        assert_eq!(s.of(10), Some(Which::Current));
        assert_eq!(s.slot(Which::Current), 1);
        assert_eq!(s.slot(Which::Previous), 0);
        assert_eq!(s.without_prev().of(5), None);
        let t = s.after_snapshot(20);
        assert_eq!((t.cur_seq, t.prev_seq, t.cur_slot), (20, 10, 0));
        for iv in [f, s, t, t.without_prev()] {
            assert_eq!(Intervals::from_fields(iv.cur_seq, iv.prev_seq, iv.flags()), Some(iv));
        }
        assert_eq!(Intervals::from_fields(5, 6, FLAG_PREV_VALID), None);
        assert_eq!(Intervals::from_fields(5, 1, 4), None);
        // replay lowers the boundaries to next_seq, never raises them
        let r = s.after_replay(7);
        assert_eq!((r.cur_seq, r.prev_seq), (7, 1));
        assert_eq!(s.after_replay(50), s);
        assert_eq!(s.after_replay(0).prev_seq, 0);
    }

    #[test]
    fn chunk_ranges() {
        assert_eq!(chunks_of(0, 8, 8), Some((0, 0)));
        assert_eq!(chunks_of(7, 2, 8), Some((0, 1)));
        assert_eq!(chunks_of(8, 0, 8), None);
        assert_eq!(chunks_of(u64::MAX, 2, 8), None);
    }

    #[test]
    fn mark_and_dirty() {
        let mut map = vec![0u8; 3 * PAGE_BYTES];
        let mut dirty = vec![0u8; dirty_bytes(map.len())];
        assert_eq!(dirty.len(), 1);
        assert_eq!(mark(&mut map, &mut dirty, 3, 20), Ok(18));
        assert_eq!(mark(&mut map, &mut dirty, 0, 20), Ok(3));
        assert_eq!(dirty[0], 1);
        let c = (2 * PAGE_BYTES * 8) as u64;
        assert_eq!(mark(&mut map, &mut dirty, c + 1, c + 1), Ok(1));
        assert_eq!(dirty[0], 0b101);
        assert_eq!(mark(&mut map, &mut dirty, 5, 4), Ok(0));
        let before = map.clone();
        assert_eq!(mark(&mut map, &mut dirty, 0, (3 * PAGE_BYTES * 8) as u64), Err(OutOfRange));
        assert_eq!(map, before);
        assert_eq!(take_dirty(&mut dirty, 0), Some(0));
        assert_eq!(take_dirty(&mut dirty, 0), Some(2));
        assert_eq!(take_dirty(&mut dirty, 0), None);
        assert_eq!(runs(&map, 0, 0, 1 << 20), vec![(0, 21), (c + 1, 1)]);
    }

    #[test]
    fn runs_and_report() {
        let mut map = vec![0u8; 16];
        let mut dirty = vec![0u8; 1];
        for (a, b) in [(0, 0), (2, 9), (16, 31), (33, 33), (127, 127)] {
            mark(&mut map, &mut dirty, a, b).unwrap();
        }
        assert_eq!(runs(&map, 0, 0, 128), vec![(0, 1), (2, 8), (16, 16), (33, 1), (127, 1)]);
        assert_eq!(runs(&map, 0, 5, 20), vec![(5, 5), (16, 4)]);
        assert_eq!(runs(&map, 0, 0, 1000), runs(&map, 0, 0, 128));
        // a map copied from chunk 16 on
        assert_eq!(runs(&map[2..], 16, 0, 128), vec![(16, 16), (33, 1), (127, 1)]);
        let rep = plan_report(&map, 0, 0, 128, 4096);
        assert_eq!(rep, Report { runs: 5, changed: 27, next: None });
        let mut s = String::new();
        write_report(&mut s, Which::Previous, 64, &map, 0, 0, 128, &rep).unwrap();
        assert_eq!(
            s,
            "previous chunk_sectors=64 first=0 end=128 next=- runs=5 changed=27\n0 1\n2 8\n16 16\n33 1\n127 1"
        );
        // a budget for two runs: the third is where to go on
        let rep = plan_report(&map, 0, 0, 128, HEADER_MAX + 1 + 4 + 4);
        assert_eq!(rep, Report { runs: 2, changed: 9, next: Some(16) });
        let mut s = String::new();
        write_report(&mut s, Which::Current, 8, &map, 0, 0, 128, &rep).unwrap();
        assert_eq!(s, "current chunk_sectors=8 first=0 end=128 next=16 runs=2 changed=9\n0 1\n2 8");
        assert!(s.len() < HEADER_MAX + 1 + 8);
        // nothing changed
        let rep = plan_report(&[0u8; 4], 0, 0, 32, 4096);
        assert_eq!(rep, Report { runs: 0, changed: 0, next: None });
    }
}
