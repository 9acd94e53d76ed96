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

/// The runs of set bits among chunks `first..end` of a map read a window
/// at a time (so that a query never copies or scans more of the map than
/// its answer needs), each run handed to a sink that may refuse it (no room
/// left): the answer then ends before that run and says where to go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunScan {
    first: u64,
    end: u64,
    /// Start of the run still open at the end of the last window.
    open: Option<u64>,
    /// End of the chunks fed so far.
    fed: u64,
    /// Runs accepted by the sink.
    pub runs: u64,
    /// Chunks in them.
    pub changed: u64,
    /// Where the answer stopped (the first run the sink refused).
    pub next: Option<u64>,
}

impl RunScan {
    /// A scan of chunks `first..end`.
    pub fn new(first: u64, end: u64) -> Self {
        RunScan {
            first,
            end,
            open: None,
            fed: first,
            runs: 0,
            changed: 0,
            next: None,
        }
    }

    /// Whether the scan stopped (the sink refused a run).
    pub fn stopped(&self) -> bool {
        self.next.is_some()
    }

    fn emit(&mut self, s: u64, l: u64, sink: &mut impl FnMut(u64, u64) -> bool) -> bool {
        if sink(s, l) {
            self.runs += 1;
            self.changed += l;
            true
        } else {
            self.next = Some(s);
            false
        }
    }

    /// Feeds the map bytes `map`, whose byte 0 holds chunk `base` (a
    /// multiple of 8); windows come in ascending order and without gaps.
    /// Returns whether to go on.
    pub fn feed(&mut self, map: &[u8], base: u64, sink: &mut impl FnMut(u64, u64) -> bool) -> bool {
        if self.stopped() {
            return false;
        }
        let lo = self.first.max(base);
        let hi = self.end.min(base.saturating_add((map.len() as u64).saturating_mul(8)));
        self.fed = self.fed.max(hi);
        let mut c = lo;
        while c < hi {
            let o = c - base;
            let byte = map.get((o / 8) as usize).copied().unwrap_or(0);
            // whole bytes at once where nothing changes
            if o % 8 == 0 && hi - c >= 8 && ((self.open.is_none() && byte == 0) || (self.open.is_some() && byte == 0xFF)) {
                c += 8;
                continue;
            }
            let set = byte & (1 << (o % 8)) != 0;
            match (set, self.open) {
                (true, None) => self.open = Some(c),
                (false, Some(s)) => {
                    self.open = None;
                    if !self.emit(s, c - s, sink) {
                        return false;
                    }
                }
                _ => {}
            }
            c += 1;
        }
        true
    }

    /// Ends the scan: a run still open ends with the last chunk fed
    /// (chunks beyond the map read as clear).
    pub fn finish(&mut self, sink: &mut impl FnMut(u64, u64) -> bool) {
        if let (Some(s), false) = (self.open.take(), self.stopped()) {
            self.emit(s, self.fed - s, sink);
        }
    }
}

/// Longest header line [`write_header`] writes.
pub const HEADER_MAX: usize = 224;

/// Bytes of the line of run `(s, l)` in the answer, its newline included.
pub fn run_line_len(s: u64, l: u64) -> usize {
    fn digits(mut v: u64) -> usize {
        let mut n = 1;
        while v >= 10 {
            v /= 10;
            n += 1;
        }
        n
    }
    digits(s) + 1 + digits(l) + 1
}

/// Writes the header line of the answer to `changed`:
///
/// ```text
/// current since=<S> chunk_sectors=<C> first=<F> end=<E> next=<N|-> runs=<R> changed=<K>
/// previous since=<S-1> until=<S> chunk_sectors=<C> ...
/// ```
///
/// `snapshots` is how many `snapshot` messages the journal has taken since
/// it was formatted: the current interval began with snapshot `S` (0: the
/// format), the previous one is the interval between snapshots `S - 1` and
/// `S`.  One `<start> <len>` line per run follows (chunks, ascending);
/// `next` is where to ask again when the runs did not all fit (`-`: the
/// answer is complete up to `end`).
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    out: &mut impl fmt::Write,
    which: Which,
    snapshots: u64,
    chunk_sectors: u32,
    first: u64,
    end: u64,
    scan: &RunScan,
) -> fmt::Result {
    match which {
        Which::Current => write!(out, "current since={snapshots}")?,
        Which::Previous => write!(
            out,
            "previous since={} until={snapshots}",
            snapshots.saturating_sub(1)
        )?,
    }
    write!(out, " chunk_sectors={chunk_sectors} first={first} end={end} next=")?;
    match scan.next {
        Some(n) => write!(out, "{n}")?,
        None => out.write_str("-")?,
    }
    write!(out, " runs={} changed={}", scan.runs, scan.changed)
}

/// The whole answer over an in-memory map (byte 0 = chunk `base`) within
/// `budget` bytes: what the module does a window at a time.
pub fn answer(
    out: &mut impl fmt::Write,
    which: Which,
    snapshots: u64,
    chunk_sectors: u32,
    map: &[u8],
    base: u64,
    first: u64,
    end: u64,
    budget: usize,
) -> fmt::Result {
    let room = budget.saturating_sub(HEADER_MAX + 1);
    let mut lines: [(u64, u64); 64] = [(0, 0); 64];
    let mut n = 0usize;
    let mut used = 0usize;
    let mut sink = |s: u64, l: u64| {
        let len = run_line_len(s, l);
        if used + len > room || n >= lines.len() {
            return false;
        }
        used += len;
        if let Some(x) = lines.get_mut(n) {
            *x = (s, l);
        }
        n += 1;
        true
    };
    let mut scan = RunScan::new(first, end);
    // windows of 4 bytes, to exercise the carrying of runs across windows
    let mut b = 0usize;
    while b < map.len() && scan.feed(map.get(b..(b + 4).min(map.len())).unwrap_or(&[]), base + 8 * b as u64, &mut sink) {
        b += 4;
    }
    scan.finish(&mut sink);
    write_header(out, which, snapshots, chunk_sectors, first, end, &scan)?;
    for (s, l) in lines.iter().take(n) {
        write!(out, "\n{s} {l}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    fn runs(map: &[u8], base: u64, first: u64, end: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let mut sink = |s, l| {
            v.push((s, l));
            true
        };
        let mut scan = RunScan::new(first, end);
        // one byte at a time: runs carried across every window
        for (i, b) in map.iter().enumerate() {
            scan.feed(core::slice::from_ref(b), base + 8 * i as u64, &mut sink);
        }
        scan.finish(&mut sink);
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
        assert_eq!(runs(&map, 0, 0, 1000), vec![(0, 1), (2, 8), (16, 16), (33, 1), (127, 1)]);
        assert_eq!(runs(&map, 0, 0, 128), runs(&map, 0, 0, 128));
        // a map copied from chunk 16 on
        assert_eq!(runs(&map[2..], 16, 0, 128), vec![(16, 16), (33, 1), (127, 1)]);
        // all set: one run across every window
        assert_eq!(runs(&[0xFF; 9], 0, 3, 70), vec![(3, 67)]);
        let mut s = String::new();
        answer(&mut s, Which::Previous, 3, 64, &map, 0, 0, 128, 4096).unwrap();
        assert_eq!(
            s,
            "previous since=2 until=3 chunk_sectors=64 first=0 end=128 next=- runs=5 changed=27\n0 1\n2 8\n16 16\n33 1\n127 1"
        );
        // a budget for two runs: the third is where to go on
        let mut s = String::new();
        answer(&mut s, Which::Current, 0, 8, &map, 0, 0, 128, HEADER_MAX + 1 + 4 + 4).unwrap();
        assert_eq!(s, "current since=0 chunk_sectors=8 first=0 end=128 next=16 runs=2 changed=9\n0 1\n2 8");
        // nothing changed
        let mut s = String::new();
        answer(&mut s, Which::Current, 1, 8, &[0u8; 4], 0, 0, 32, 4096).unwrap();
        assert_eq!(s, "current since=1 chunk_sectors=8 first=0 end=32 next=- runs=0 changed=0");
        // the longest header fits HEADER_MAX
        let mut scan = RunScan::new(u64::MAX - 1, u64::MAX);
        scan.runs = u64::MAX;
        scan.changed = u64::MAX;
        scan.next = Some(u64::MAX);
        let mut s = String::new();
        write_header(&mut s, Which::Previous, u64::MAX, u32::MAX, u64::MAX, u64::MAX, &scan).unwrap();
        assert!(s.len() <= HEADER_MAX, "{}", s.len());
        assert_eq!(run_line_len(127, 1), 6);
    }
}
