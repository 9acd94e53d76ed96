// SPDX-License-Identifier: GPL-2.0

//! Changed-block tracking: the in-core maps of the current and previous
//! intervals, their persistence, the `snapshot` flip and the `changed`
//! message.  The rules are `logic::cbt`; the on-pmem layout and the commit
//! protocol are `logic::format` (item 5).
//!
//! The maps live under the `state` lock (the write path marks them in the
//! critical section that gives a write its seq).  Their pmem slots are
//! written only under `cbt_io`, which is held from the flush of the dirty
//! pages through the superblock commit that moves the journal tail, and by
//! `snapshot` from the moment it forgets the previous interval through the
//! commit that starts the new one: no retire can persist a page into a slot
//! whose role is changing.

use super::{Jsnap, State};
use crate::ffi::dm::Out;
use crate::ffi::pmem::Pmem;
use crate::logic::cbt::{self, Intervals, Which, PAGE_BYTES};
use crate::logic::format::{Geometry, Superblock};
use core::fmt::Write;
use kernel::prelude::*;
use kernel::sync::ArcBorrow;

/// The maps of both intervals (none when the journal predates them).
pub(crate) struct CbtState {
    /// The journal has changed-block maps.
    pub(super) enabled: bool,
    pub(super) iv: Intervals,
    cur: KVVec<u8>,
    prev: KVVec<u8>,
    cur_dirty: KVVec<u8>,
    prev_dirty: KVVec<u8>,
    /// Pages that may hold bits on pmem (one bit per page, as `dirty`):
    /// what `snapshot` zeroes when it discards a map, so that it costs the
    /// pages written, not the size of the map.
    cur_touched: KVVec<u8>,
    prev_touched: KVVec<u8>,
}

impl CbtState {
    /// Maps for a journal of geometry `g` (allocated at table load).
    pub(super) fn new(g: &Geometry) -> Result<Self> {
        let enabled = g.cbt_offset != 0;
        let (mb, db) = if enabled {
            let mb = g.map_bytes as usize;
            (mb, cbt::dirty_bytes(mb))
        } else {
            (0, 0)
        };
        Ok(Self {
            enabled,
            iv: Intervals::fresh(1),
            cur: KVVec::from_elem(0u8, mb, GFP_KERNEL)?,
            prev: KVVec::from_elem(0u8, mb, GFP_KERNEL)?,
            cur_dirty: KVVec::from_elem(0u8, db, GFP_KERNEL)?,
            prev_dirty: KVVec::from_elem(0u8, db, GFP_KERNEL)?,
            cur_touched: KVVec::from_elem(0u8, db, GFP_KERNEL)?,
            prev_touched: KVVec::from_elem(0u8, db, GFP_KERNEL)?,
        })
    }

    /// An empty placeholder (the allocations moved elsewhere).
    pub(super) fn none() -> Self {
        Self {
            enabled: false,
            iv: Intervals::fresh(1),
            cur: KVVec::new(),
            prev: KVVec::new(),
            cur_dirty: KVVec::new(),
            prev_dirty: KVVec::new(),
            cur_touched: KVVec::new(),
            prev_touched: KVVec::new(),
        }
    }

    fn maps(&mut self, w: Which) -> (&mut KVVec<u8>, &mut KVVec<u8>) {
        match w {
            Which::Current => (&mut self.cur, &mut self.cur_dirty),
            Which::Previous => (&mut self.prev, &mut self.prev_dirty),
        }
    }

    /// Marks the chunks of record `seq` (`nr` sectors at `sector`) in the
    /// map of its interval.
    pub(super) fn mark(&mut self, seq: u64, sector: u64, nr: u64, chunk_sectors: u32) {
        if !self.enabled {
            return;
        }
        let Some(w) = self.iv.of(seq) else {
            return;
        };
        if let Some((first, last)) = cbt::chunks_of(sector, nr, chunk_sectors) {
            let (map, dirty) = self.maps(w);
            // Records lie inside the target (checked at write and replay).
            if cbt::mark(map, dirty, first, last).is_ok_and(|n| n > 0) {
                let touched = match w {
                    Which::Current => &mut self.cur_touched,
                    Which::Previous => &mut self.prev_touched,
                };
                let pages = (first / 8) as usize / PAGE_BYTES..=(last / 8) as usize / PAGE_BYTES;
                for p in pages {
                    if let Some(b) = touched.get_mut(p / 8) {
                        *b |= 1 << (p % 8);
                    }
                }
            }
        }
    }

    /// Loads the persistent maps of `sb` (at replay); every page clean.
    /// A map that cannot be read (poisoned pmem) does not keep the volume
    /// down: the current one then reads as all changed (over-reporting is
    /// safe for a backup, under-reporting is not) and is written whole at
    /// the next retire; the previous one is unknown from then on (`changed
    /// previous` refused; the next `snapshot` forgets it on pmem too).
    pub(super) fn load(&mut self, pmem: &Pmem, sb: &Superblock) {
        self.iv = sb.cbt;
        if !self.enabled {
            return;
        }
        let g = &sb.geometry;
        let mut lost_prev = false;
        for w in [Which::Current, Which::Previous] {
            let slot = self.iv.slot(w);
            let known = w == Which::Current || sb.cbt.prev_valid;
            let (map, dirty) = self.maps(w);
            dirty.fill(0);
            let read = match g.cbt_slot_offset(slot) {
                Some(off) if known => pmem.read(off as usize, map),
                _ => {
                    map.fill(0);
                    Ok(())
                }
            };
            if read.is_err() {
                pr_err!("dm-jsnap: the {:?} changed-block map is unreadable (poisoned pmem?)\n", w);
                match w {
                    Which::Current => {
                        map.fill(0xFF);
                        dirty.fill(0xFF);
                    }
                    Which::Previous => {
                        map.fill(0);
                        lost_prev = true;
                    }
                }
            }
            // Which pages of the slot may hold bits: those of the map read
            // (all of them if it was unreadable); for a slot not read, none
            // if no snapshot was taken since the format (nothing ever wrote
            // it), else all (a flip cut short may have left some).
            let unknown = read.is_err() || (!known && sb.snap_id != 0);
            let pages: KVec<bool> = match (known, unknown) {
                (_, true) => KVec::new(),
                (false, false) => KVec::new(),
                (true, false) => {
                    let mut v = KVec::new();
                    for page in map.chunks(PAGE_BYTES) {
                        let _ = v.push(page.iter().any(|&b| b != 0), GFP_KERNEL);
                    }
                    v
                }
            };
            let touched = match w {
                Which::Current => &mut self.cur_touched,
                Which::Previous => &mut self.prev_touched,
            };
            touched.fill(if unknown { 0xFF } else { 0 });
            for (p, _) in pages.iter().enumerate().filter(|(_, &t)| t) {
                if let Some(b) = touched.get_mut(p / 8) {
                    *b |= 1 << (p % 8);
                }
            }
        }
        if lost_prev {
            self.iv.prev_valid = false;
        }
    }
}

/// Persists every dirty page of both maps (the caller holds `cbt_io`).
pub(super) fn flush_dirty(this: &Jsnap, pmem: &Pmem, page: &mut [u8; PAGE_BYTES]) -> Result {
    let mut wrote = false;
    for w in [Which::Current, Which::Previous] {
        let mut from = 0;
        loop {
            let mut st = this.state.lock();
            let slot = st.cbt.iv.slot(w);
            let (map, dirty) = st.cbt.maps(w);
            let Some(p) = cbt::take_dirty(dirty, from) else {
                break;
            };
            let start = p * PAGE_BYTES;
            let n = map.len().saturating_sub(start).min(PAGE_BYTES);
            if n == 0 {
                break; // past the map (a revert marks every bit dirty)
            }
            if let Some(src) = map.get(start..start + n) {
                page[..n].copy_from_slice(src);
            }
            drop(st);
            let off = this.geometry.cbt_slot_offset(slot).ok_or(EINVAL)? as usize + start;
            if let Err(e) = pmem.write(off, &page[..n]) {
                // Dirty again: the next retire tries once more.
                let mut st = this.state.lock();
                let (_, dirty) = st.cbt.maps(w);
                if let Some(b) = dirty.get_mut(p / 8) {
                    *b |= 1 << (p % 8);
                }
                return Err(e);
            }
            wrote = true;
            from = p + 1;
        }
    }
    if wrote {
        pmem.fence();
    }
    Ok(())
}

impl Jsnap {
    /// Commits the superblock with `f` applied after persisting the dirty
    /// pages of the changed-block maps: every commit that moves the tail
    /// goes through here, so no record leaves the journal before its
    /// chunks are in the persistent map of its interval.
    pub(super) fn commit_sb_tracked(&self, f: impl FnOnce(&mut Superblock)) -> Result {
        let mut page = self.cbt_io.lock();
        let d = self.devs()?;
        let pmem = d.pmem()?;
        if self.geometry.cbt_offset != 0 {
            flush_dirty(self, pmem, &mut page)?;
        }
        let mut sbg = self.sb.lock();
        sbg.commit(pmem, f)
    }
}

/// The part of `snapshot` that turns the current interval into the
/// previous one, around the snapshot's own superblock commit `commit`
/// (which must also store the intervals and the boundary it is given).  `take_boundary`
/// runs under the state lock and returns the snapshot's boundary, or an
/// error to refuse (nothing is changed then).
pub(super) fn flip_around(
    this: &Jsnap,
    take_boundary: impl FnOnce(&mut State) -> Result<u64>,
    commit: impl FnOnce(Intervals, u64) -> Result,
) -> Result {
    let _io = this.cbt_io.lock();
    let d = this.devs()?;
    let pmem = d.pmem()?;
    let g = this.geometry;
    let (enabled, old) = {
        let st = this.state.lock();
        (st.cbt.enabled, st.cbt.iv)
    };
    // Take the (discarded) previous interval's buffers out, to be the new
    // current interval's once zeroed.
    let mut spare = (KVVec::new(), KVVec::new(), KVVec::new());
    if enabled {
        // What the superblock says (the in-core interval may have been
        // forgotten at load, its map unreadable).
        let on_pmem = this.sb.lock().sb.cbt.prev_valid;
        if on_pmem {
            // Forget it on pmem before its slot is zeroed.
            let mut sbg = this.sb.lock();
            sbg.commit(pmem, |sb| sb.cbt = old.without_prev())?;
        }
        {
            let mut st = this.state.lock();
            st.cbt.iv = old.without_prev();
            spare.0 = core::mem::take(&mut st.cbt.prev);
            spare.1 = core::mem::take(&mut st.cbt.prev_dirty);
            spare.2 = core::mem::take(&mut st.cbt.prev_touched);
        }
        let off = g.cbt_slot_offset(old.slot(Which::Previous)).ok_or(EINVAL)? as usize;
        if spare.0.len() != g.map_bytes as usize {
            spare.0 = KVVec::from_elem(0u8, g.map_bytes as usize, GFP_KERNEL)?;
            spare.2 = KVVec::from_elem(0xFFu8, cbt::dirty_bytes(g.map_bytes as usize), GFP_KERNEL)?;
        }
        // Zero the pages that may hold bits, on pmem and in core: the cost
        // is the pages written in that interval, not the map's size.
        let mut p = 0;
        while let Some(q) = cbt::take_dirty(&mut spare.2, p) {
            let start = q * PAGE_BYTES;
            let n = spare.0.len().saturating_sub(start).min(PAGE_BYTES);
            if n == 0 {
                break;
            }
            pmem.zero(off + start, n)?;
            if let Some(page) = spare.0.get_mut(start..start + n) {
                page.fill(0);
            }
            p = q + 1;
        }
        spare.2.fill(0);
        pmem.fence();
        spare.1.fill(0);
    }
    crate::fault::flip_window(1);
    let mut st = this.state.lock();
    let boundary = match take_boundary(&mut st) {
        Ok(b) => b,
        Err(e) => {
            if enabled {
                // Refused: the interval stays current (the previous one is
                // forgotten if it was known: its slot is zero now).
                st.cbt.prev = spare.0;
                st.cbt.prev_dirty = spare.1;
                st.cbt.prev_touched = spare.2;
            }
            return Err(e);
        }
    };
    let new = old.after_snapshot(boundary);
    if enabled {
        let c = &mut st.cbt;
        c.prev = core::mem::replace(&mut c.cur, spare.0);
        c.prev_dirty = core::mem::replace(&mut c.cur_dirty, spare.1);
        c.prev_touched = core::mem::replace(&mut c.cur_touched, spare.2);
        c.iv = new;
    }
    drop(st);
    let res = commit(if enabled { new } else { old }, boundary);
    crate::fault::flip_window(2);
    if res.is_err() && enabled {
        // The superblock still names the old current slot: the old
        // interval's map becomes current again, and the marks the new one
        // got meanwhile are folded into it a page per lock hold (writers
        // mark the current map only, and OR-ing twice is harmless), every
        // page to be persisted again.
        let mut newer = {
            let mut st = this.state.lock();
            let c = &mut st.cbt;
            core::mem::swap(&mut c.cur, &mut c.prev);
            core::mem::swap(&mut c.cur_dirty, &mut c.prev_dirty);
            c.cur_dirty.fill(0xFF);
            c.prev_dirty.fill(0);
            // (both slots' content is no longer known page by page)
            c.cur_touched.fill(0xFF);
            c.prev_touched.fill(0xFF);
            c.iv = old.without_prev();
            core::mem::take(&mut c.prev)
        };
        let mut at = 0;
        while at < newer.len() {
            let n = (newer.len() - at).min(PAGE_BYTES);
            let mut st = this.state.lock();
            for (a, b) in st.cbt.cur.iter_mut().skip(at).zip(newer.iter().skip(at).take(n)) {
                *a |= *b;
            }
            drop(st);
            at += n;
        }
        newer.fill(0);
        this.state.lock().cbt.prev = newer;
    }
    res
}

/// Bytes of map a `changed` query copies out of the state lock at a time
/// (a window: the answer never reads more of the map than it needs).
const WINDOW_BYTES: usize = 16 * PAGE_BYTES;

/// `changed [current|previous] [<first_chunk> [<nr_chunks>]]`: the runs
/// of chunks written in the interval, as `logic::cbt::write_header` lays
/// them out, as many as the caller's buffer holds.
pub(super) fn report(
    this: ArcBorrow<'_, Jsnap>,
    which: Which,
    first: u64,
    count: Option<u64>,
    out: &mut Out<'_>,
) -> Result {
    let _msg = this.msg.lock();
    let (enabled, nr_chunks, known) = {
        let st = this.state.lock();
        if !st.loaded {
            return Err(EBUSY);
        }
        (
            st.cbt.enabled,
            st.snapshot.nr_chunks,
            which == Which::Current || st.cbt.iv.prev_valid,
        )
    };
    if !enabled {
        pr_err!("dm-jsnap: changed refused: this journal was formatted without changed-block maps (format it again to track changes)\n");
        return Err(EOPNOTSUPP);
    }
    if !known {
        pr_err!("dm-jsnap: changed previous refused: no snapshot was taken since the journal was formatted, or the last one was cut short\n");
        return Err(ENODATA);
    }
    if first >= nr_chunks {
        pr_err!("dm-jsnap: changed: first chunk {} is beyond the last chunk {}\n", first, nr_chunks.saturating_sub(1));
        return Err(EINVAL);
    }
    let end = match count {
        Some(0) => {
            pr_err!("dm-jsnap: changed: the chunk count must be at least 1\n");
            return Err(EINVAL);
        }
        Some(n) => first.saturating_add(n).min(nr_chunks),
        None => nr_chunks,
    };
    // The interval's number (the snapshot it began with): `snapshot` holds
    // `msg`, so it cannot change during the query.
    let snapshots = this.sb.lock().sb.snap_id;
    let room = out.capacity().saturating_sub(cbt::HEADER_MAX + 1);
    let limit = room.min(1 << 20);
    let mut text = KVVec::with_capacity(limit, GFP_KERNEL)?;
    let mut window = KVVec::from_elem(0u8, WINDOW_BYTES, GFP_KERNEL)?;
    let mut scan = cbt::RunScan::new(first, end);
    let mut sink = |s: u64, l: u64| -> bool {
        let len = cbt::run_line_len(s, l);
        if text.len() + len > limit {
            return false;
        }
        let mut line = LineBuf::default();
        let _ = write!(line, "\n{s} {l}");
        text.extend_from_slice(line.bytes(), GFP_NOWAIT).is_ok()
    };
    // Windows of the map holding first..end, each copied a page per lock
    // hold (writers mark the current map meanwhile: any bit set before the
    // message is in the answer).
    let mut at = (first / 8) as usize;
    let hi = end.div_ceil(8) as usize;
    while at < hi && !scan.stopped() {
        let n = (hi - at).min(WINDOW_BYTES);
        let mut done = 0;
        while done < n {
            let k = (n - done).min(PAGE_BYTES);
            let mut st = this.state.lock();
            let (map, _) = st.cbt.maps(which);
            if let (Some(dst), Some(src)) = (window.get_mut(done..done + k), map.get(at + done..at + done + k)) {
                dst.copy_from_slice(src);
            }
            drop(st);
            done += k;
        }
        scan.feed(&window[..n], at as u64 * 8, &mut sink);
        at += n;
    }
    scan.finish(&mut sink);
    cbt::write_header(out, which, snapshots, this.chunk_sectors, first, end, &scan)
        .and_then(|()| out.write_str(core::str::from_utf8(&text).unwrap_or("")))
        .map_err(|_| EINVAL)
}

/// One run's line, formatted without allocating.
struct LineBuf {
    b: [u8; 48],
    n: usize,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self { b: [0; 48], n: 0 }
    }
}

impl LineBuf {
    fn bytes(&self) -> &[u8] {
        &self.b[..self.n]
    }
}

impl core::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.n + s.len();
        self.b
            .get_mut(self.n..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}
