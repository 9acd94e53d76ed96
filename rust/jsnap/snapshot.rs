// SPDX-License-Identifier: GPL-2.0

//! The snapshot: `snapshot`/`drop`/`hydrate` messages, preserving chunks
//! (copy-on-write at destage) and invalidating the snapshot.  The copier is
//! in [`super::hydrate`], what views ask of the volume in [`super::views`].
//!
//! # Snapshot content
//!
//! For chunk `c` the snapshot holds:
//! * if `c` is preserved (its validity bit is set): the store's copy;
//! * otherwise: production, overlaid with the pre-snapshot journal data of
//!   `c` (extents with `seq < snap_seq` in the changes table, and the pieces
//!   of such extents that newer writes superseded, kept in `snap_table`).
//!
//! Production is only overwritten with post-snapshot data after `c` is
//! preserved: the destage worker, the copier and view writes all preserve
//! under the chunk's exclusive lock, and snapshot reads of unpreserved
//! chunks hold it shared, so a reader never sees a half-preserved chunk.
//!
//! # Preserving a chunk (in this order)
//!
//! 1. copy the chunk from production to the same offset of the store;
//! 2. write the pre-snapshot journal data of the chunk over it;
//! 3. flush the store;
//! 4. persist the chunk's validity bit, then set it in core;
//! 5. only then may production be overwritten.
//!
//! A chunk that cannot be preserved (store errors) keeps production
//! untouched while the worker retries; after `MAX_PRESERVE_FAILURES`
//! consecutive failures the snapshot is declared invalid (persistently) and
//! destage proceeds without it.

use super::changes::first_overlap;
use super::{changed, metadata, Jsnap, State};
use crate::ffi::devices::Devices;
use crate::ffi::dmdev::DmDev;
use crate::ffi::io;
use crate::logic::epoch;
use crate::logic::extent::{self, Extent};
use crate::logic::format::SnapState;
use crate::logic::sort;
use crate::logic::validity;
use kernel::prelude::*;
use kernel::sync::ArcBorrow;

/// Consecutive preservation failures after which the snapshot is invalid.
const MAX_PRESERVE_FAILURES: u32 = 8;

/// `snapshot`: O(1); the snapshot holds every write with a sequence number
/// below the current `next_seq`, i.e. every write completed before now.
/// With `bypass`, the writes bypassing the journal in flight are waited for
/// first (bounded: `EBUSY` if production does not complete them).
pub(crate) fn take(this: ArcBorrow<'_, Jsnap>) -> Result {
    if !this.has_store {
        pr_err!("dm-jsnap: snapshot refused: the target has no store device\n");
        return Err(EINVAL);
    }
    // O(1): no destage batch is waited for (a batch collected before the
    // snapshot holds only pre-snapshot records, which need no preservation;
    // a view waits for such a batch when it attaches), and the validity map
    // is already zero (format, replay without a snapshot and `drop` clear it).
    let _msg = this.msg.lock();
    // Refusals first, before the changed-block flip forgets anything.
    may_take(&this.state.lock())?;
    // No write bypasses the journal from here on, and none is in flight.
    let _bypass = super::bypass::BypassBlock::wait(&this)?;
    let mut taken = None;
    // The boundary is taken, and the changed-block intervals flipped, in
    // one critical section with every write's seq (`changed`).
    let res = changed::flip_around(
        &this,
        |st| {
            may_take(st)?;
            let snap_seq = st.journal.space.next_seq();
            st.snapshot.snap = SnapState::Active;
            st.snapshot.snap_seq = snap_seq;
            st.snapshot.snap_id += 1;
            st.snapshot.preserved = 0;
            st.snapshot.hydrate = false;
            st.snapshot.hydrate_cursor = 0;
            st.snapshot.preserve_failures = 0;
            taken = Some(snap_seq);
            Ok(snap_seq)
        },
        |iv, snap_seq| {
            this.commit_sb(|sb| {
                sb.snap_state = SnapState::Active;
                sb.snap_seq = snap_seq;
                sb.snap_id += 1;
                sb.hydrate = false;
                // The store this snapshot lives on: a reload checks it.
                sb.store_devt = this.store_devt;
                sb.cbt = iv;
            })
        },
    );
    let Some(snap_seq) = taken else {
        return res;
    };
    if let Err(e) = res {
        let mut st = this.state.lock();
        st.snapshot.snap = SnapState::None;
        st.snapshot.snap_id += 1;
        clear_snap_table(&mut st);
        drop(st);
        // Chunks may have been preserved meanwhile: keep the maps zero.
        clear_map(&this)?;
        return Err(e);
    }
    pr_info!("dm-jsnap: snapshot taken at journal seq {}\n", snap_seq);
    Ok(())
}

/// Whether `snapshot` may be taken now (`EBUSY`, with the reason logged,
/// if not).
fn may_take(st: &State) -> Result {
    if !st.loaded || st.suspended {
        return Err(EBUSY);
    }
    if st.snapshot.views > 0 {
        pr_err!("dm-jsnap: snapshot refused: a jsnap-view is open\n");
        return Err(EBUSY);
    }
    if st.snapshot.snap != SnapState::None {
        pr_err!("dm-jsnap: snapshot refused: a snapshot exists (drop it first)\n");
        return Err(EBUSY);
    }
    Ok(())
}

/// Zeroes the validity map, in pmem and in core; the snapshot is `None`
/// (nobody sets bits).  The in-core map is cleared outside the state lock.
fn clear_map(this: &Jsnap) -> Result {
    let g = this.geometry;
    // No marking writes a word of the old snapshot after the zeroes.
    let _io = this.validity_io.lock();
    metadata::zero_validity(this.devs()?.pmem()?, &g)?;
    let mut map = core::mem::take(&mut this.state.lock().snapshot.validity);
    map.fill(0);
    let mut st = this.state.lock();
    st.snapshot.validity = map;
    st.snapshot.preserved = 0;
    Ok(())
}

fn clear_snap_table(st: &mut State) {
    while let Some(x) = st.journal.snap_table.cursor_front().map(|c| *c.current().1) {
        st.journal.remove_snap_piece(&x);
    }
}

/// `drop`: forget the snapshot.
pub(crate) fn drop_snapshot(this: ArcBorrow<'_, Jsnap>) -> Result {
    let _msg = this.msg.lock();
    let mut st = this.state.lock();
    if !st.loaded || st.suspended {
        return Err(EBUSY);
    }
    if st.snapshot.views > 0 {
        pr_err!("dm-jsnap: drop refused: a jsnap-view is open\n");
        return Err(EBUSY);
    }
    if st.snapshot.snap == SnapState::None {
        pr_err!("dm-jsnap: drop refused: there is no snapshot\n");
        return Err(EINVAL);
    }
    // The superblock says `none` first.  Until then the snapshot stays
    // active in core: destage keeps preserving its chunks and no write
    // bypasses the journal, so a power cut before the commit brings back
    // an intact snapshot (forgetting it first let destage overwrite
    // unpreserved chunks under a snapshot that the reload restores).  No
    // view attaches and no invalidation is recorded meanwhile.
    let hydrate = st.snapshot.hydrate;
    st.snapshot.dropping = true;
    st.snapshot.hydrate = false;
    drop(st);
    crate::fault::flip_window(3);
    let committed = this.commit_sb(|sb| {
        sb.snap_state = SnapState::None;
        sb.hydrate = false;
    });
    let mut st = this.state.lock();
    st.snapshot.dropping = false;
    if let Err(e) = committed {
        st.snapshot.hydrate = hydrate;
        return Err(e);
    }
    st.snapshot.snap = SnapState::None;
    // Steps computed for this snapshot no longer mark anything.
    st.snapshot.snap_id += 1;
    clear_snap_table(&mut st);
    drop(st);
    clear_map(&this)?;
    Jsnap::kick(this);
    pr_info!("dm-jsnap: snapshot dropped\n");
    Ok(())
}

/// `hydrate on|off`: start or stop the background copier.
pub(crate) fn set_hydrate(this: ArcBorrow<'_, Jsnap>, on: bool) -> Result {
    let _msg = this.msg.lock();
    let mut st = this.state.lock();
    if !st.loaded || st.suspended {
        return Err(EBUSY);
    }
    if on && st.snapshot.snap != SnapState::Active {
        pr_err!("dm-jsnap: hydrate refused: no active snapshot\n");
        return Err(EINVAL);
    }
    st.snapshot.hydrate = on;
    drop(st);
    this.commit_sb(|sb| sb.hydrate = on)?;
    if on {
        Jsnap::kick(this);
    }
    Ok(())
}

/// Size of one dm-kcopyd job when preserving chunks (128 KiB).
const COPY_JOB_SECTORS: u64 = 256;

impl Jsnap {
    /// The chunk that holds `sector` (no division-by-zero panic path: the
    /// table line refused a zero chunk size).
    pub(crate) fn chunk_of(&self, sector: u64) -> u64 {
        sector.checked_div(u64::from(self.chunk_sectors)).unwrap_or(0)
    }

    /// Range of sectors of chunk `c`.
    pub(crate) fn chunk_range(&self, c: u64) -> (u64, u64) {
        self.run_range(c, 1)
    }

    /// Range of sectors of the `n` chunks from `c` on.
    pub(crate) fn run_range(&self, c: u64, n: u64) -> (u64, u64) {
        let cs = u64::from(self.chunk_sectors);
        (c * cs, ((c + n) * cs).min(self.len))
    }

    /// Appends the pre-snapshot journal pieces inside `start..end`
    /// (disjoint) to `pins`, pinned: each one's record is persistent
    /// (waited for, as the read path does) and its ring space is not reused
    /// before `pins` is dropped.
    pub(super) fn pin_snapshot_pieces(&self, start: u64, end: u64, pins: &mut Pinned<'_>) -> Result {
        // At most one piece per sector, and at most one per extent, in
        // each of the two tables.
        let sectors = usize::try_from(end - start).map_err(|_| EINVAL)?;
        let base = pins.pieces.len();
        let mut st = self.state.lock();
        loop {
            pins.pieces.truncate(base);
            let extents = usize::try_from(st.journal.extents + st.journal.snap_extents).unwrap_or(usize::MAX);
            let room = extents.min(sectors.saturating_mul(2));
            if pins.pieces.capacity() - base < room {
                drop(st);
                pins.pieces.reserve(room, GFP_KERNEL)?;
                st = self.state.lock();
                continue;
            }
            let mut busy = None;
            let epoch = st.snapshot.epoch();
            for (table, all) in [(&st.journal.changes, false), (&st.journal.snap_table, true)] {
                let mut pos = start;
                while pos < end {
                    let Some(x) = first_overlap(table, pos, end) else {
                        break;
                    };
                    pos = x.end();
                    if !all && !epoch.in_snapshot(x.seq) {
                        continue;
                    }
                    if busy.is_none() && !self.is_persisted(&st, x.seq) {
                        busy = Some(x.seq);
                    }
                    if let Some(p) = extent::intersect(&x, start, end) {
                        pins.pieces.push(p, GFP_NOWAIT).map_err(|_| ENOMEM)?;
                    }
                }
            }
            let Some(seq) = busy else {
                break;
            };
            // A pre-snapshot write to these sectors is still being copied.
            self.wait_persisted(&mut st, seq);
        }
        for i in base..pins.pieces.len() {
            let seq = pins.pieces[i].seq;
            if let Some(r) = st.journal.rec(seq) {
                r.pins += 1;
            }
        }
        pins.pinned = pins.pieces.len();
        Ok(())
    }

    /// Preserves chunk `c`; the caller holds its exclusive chunk lock.
    pub(crate) fn preserve_chunk(&self, c: u64) -> Result {
        self.preserve_chunks(&[c])
    }

    /// Preserves `chunks` with one store flush; the caller holds their
    /// exclusive chunk locks.  If the snapshot is dropped (and maybe a new
    /// one taken) meanwhile, nothing is marked: the copy was made for the
    /// old snapshot.
    pub(crate) fn preserve_chunks(&self, all: &[u64]) -> Result {
        // Only chunks not preserved yet: a preserved chunk's store copy is
        // final (a view may have written it).  The caller's exclusive locks
        // keep this decision valid.
        let mut todo: KVVec<u64> = KVVec::with_capacity(all.len(), GFP_KERNEL)?;
        let id = {
            let st = self.state.lock();
            if st.snapshot.snap != SnapState::Active {
                return Ok(());
            }
            for &c in all {
                if !st.snapshot.is_preserved(c) {
                    todo.push(c, GFP_NOWAIT)?;
                }
            }
            st.snapshot.snap_id
        };
        // Ascending, once each (marking them needs that).
        let n = sort::sort_dedup(&mut todo);
        todo.truncate(n);
        if todo.is_empty() {
            // Nothing to copy.  Pieces kept for these chunks cannot be
            // needed (they are freed when their chunks are preserved), but
            // `preserve_snap_pieces` must make progress even if one were.
            let mut st = self.state.lock();
            if st.snapshot.snap == SnapState::Active && st.snapshot.snap_id == id {
                self.free_snap_pieces(&mut st, all);
            }
            return Ok(());
        }
        let chunks = &todo[..];
        let d = self.devs()?;
        let store = self.store(&d)?;
        let res = self.copy_to_store(&d, store, chunks);
        crate::fault::preserve_window();
        let mut clock = crate::prof::Clock::start();
        let mut st = self.state.lock();
        if st.snapshot.snap != SnapState::Active || st.snapshot.snap_id != id {
            // Dropped meanwhile: these chunks are not the new snapshot's.
            return Ok(());
        }
        if let Err(e) = res {
            // Out of memory says nothing about the store: retried with
            // back-off, never counted towards invalidation.
            if e != ENOMEM {
                st.snapshot.preserve_failures += 1;
                st.destage.errors += 1;
                st.destage.degraded = true;
            }
            let give_up = st.snapshot.preserve_failures >= MAX_PRESERVE_FAILURES;
            drop(st);
            pr_warn!(
                "dm-jsnap: cannot preserve chunks from {} ({:?})\n",
                chunks.first().copied().unwrap_or(0),
                e
            );
            if give_up {
                self.invalidate(id);
            }
            return Err(e);
        }
        st.snapshot.preserve_failures = 0;
        drop(st);
        self.mark_preserved(d.pmem()?, id, chunks)?;
        clock.mark(crate::prof::Stage::PresMark);
        Ok(())
    }

    /// Copies `chunks` (sorted) from production to the store, then the
    /// pre-snapshot journal data over them, and flushes the store: steps 1
    /// to 3 of preserving them.
    fn copy_to_store(&self, d: &Devices<'_>, store: &DmDev, chunks: &[u64]) -> Result {
        let mut clock = crate::prof::Clock::start();
        // Copy production to the store with dm-kcopyd: consecutive
        // chunks together, cut into jobs of COPY_JOB_SECTORS so that
        // several are in flight; all jobs of the batch at once.
        let mut runs: KVVec<(u64, u64)> = KVVec::with_capacity(chunks.len(), GFP_KERNEL)?;
        for (c0, n) in sort::runs(chunks) {
            let (cs, ce) = self.run_range(c0, n);
            let mut pos = cs;
            while pos < ce {
                let n = (ce - pos).min(COPY_JOB_SECTORS);
                runs.push((pos, n), GFP_KERNEL)?;
                pos += n;
            }
        }
        self.kc.copy_many(self.prod(&d)?, store, &runs)?;
        clock.mark(crate::prof::Stage::PresCopy);
        // Then the pre-snapshot journal data over it, all pieces at
        // once (they are disjoint), pinned while they are copied: one
        // look-up per run of consecutive chunks.
        let mut pins = Pinned::new(self);
        for (c0, n) in sort::runs(chunks) {
            let (cs, ce) = self.run_range(c0, n);
            self.pin_snapshot_pieces(cs, ce, &mut pins)?;
        }
        if !pins.pieces.is_empty() {
            let mut over: KVVec<(u64, usize, u64)> =
                KVVec::with_capacity(pins.pieces.len(), GFP_KERNEL)?;
            for p in pins.pieces.iter() {
                over.push((p.start, self.ring_off(p.ring_pos), p.len), GFP_KERNEL)?;
            }
            self.io.write_many_from_pmem(store, d.pmem()?, &over)?;
        }
        drop(pins);
        clock.mark(crate::prof::Stage::PresOverlay);
        let res = io::flush(store);
        clock.mark(crate::prof::Stage::PresFlush);
        res
    }

    /// Persists the validity bits of `chunks` (ascending; their store copy
    /// is durable) for snapshot `id`, then sets them in core and frees the
    /// superseded pre-snapshot pieces that only those chunks still needed.
    /// The caller holds the chunks' exclusive locks: nobody overwrites
    /// production there before the bits are durable.
    ///
    /// The words are written under the state lock and fenced outside it (a
    /// fence never waits under a spinlock); in core the bits are set only
    /// once durable, so nothing decides on a bit that a power cut could
    /// still take back (a piece freed, a superseded piece dropped).
    /// `validity_io` keeps other markings from writing the same words
    /// meanwhile.  Returns `false` if snapshot `id` is gone (nothing set in
    /// core; words written before it went stay on pmem until the map is
    /// zeroed: `drop` zeroes it, and a new snapshot needs a `drop` first).
    pub(super) fn mark_preserved(&self, pmem: &crate::ffi::pmem::Pmem, id: u64, chunks: &[u64]) -> Result<bool> {
        let _io = self.validity_io.lock();
        let live = |st: &State| st.snapshot.snap == SnapState::Active && st.snapshot.snap_id == id;
        {
            let st = self.state.lock();
            if !live(&st) {
                return Ok(false);
            }
            metadata::write_preserved(pmem, &self.geometry, &st.snapshot.validity, chunks)?;
        }
        pmem.fence();
        let mut st = self.state.lock();
        if !live(&st) {
            // Dropped (its `clear_map` waits for `validity_io`) or made
            // invalid meanwhile.
            return Ok(false);
        }
        let added = validity::set_many(&mut st.snapshot.validity, chunks, |_, _| {});
        st.snapshot.preserved += added;
        self.free_snap_pieces(&mut st, chunks);
        let complete = added > 0 && st.snapshot.preserved >= st.snapshot.nr_chunks;
        drop(st);
        drop(_io);
        if complete {
            // Every chunk preserved: the snapshot is a full copy (status
            // `hydration=done` if the copier is on), as dm-clone signals.
            self.table_event();
        }
        Ok(true)
    }

    /// Raises a device-mapper event on this volume's table (`dmsetup
    /// wait`): the snapshot became a full copy, or invalid.
    fn table_event(&self) {
        if let Ok(d) = self.devs() {
            if let Ok(p) = self.prod(&d) {
                p.table_event();
            }
        }
    }

    /// Frees the superseded pre-snapshot pieces inside `chunks` that no
    /// unpreserved chunk needs any more.
    fn free_snap_pieces(&self, st: &mut State, chunks: &[u64]) {
        if st.journal.snap_table.cursor_front().is_none() {
            return;
        }
        for (c0, n) in sort::runs(chunks) {
            let (cs, ce) = self.run_range(c0, n);
            let mut pos = cs;
            while pos < ce {
                let Some(x) = first_overlap(&st.journal.snap_table, pos, ce) else {
                    break;
                };
                pos = x.end();
                if !epoch::piece_needed(&x, self.chunk_sectors, |k| st.snapshot.is_preserved(k)) {
                    st.journal.remove_snap_piece(&x);
                }
            }
        }
    }

    /// Declares the snapshot invalid (persistently): preservation is
    /// impossible, and production must not be held back forever.
    fn invalidate(&self, id: u64) {
        let mut st = self.state.lock();
        if st.snapshot.snap != SnapState::Active || st.snapshot.snap_id != id || st.snapshot.dropping {
            // Dropped (and maybe taken again) meanwhile, or being dropped:
            // not this one.
            return;
        }
        st.snapshot.snap = SnapState::Invalid;
        st.snapshot.hydrate = false;
        clear_snap_table(&mut st);
        drop(st);
        pr_err!("dm-jsnap: snapshot INVALID: chunks cannot be preserved on the store\n");
        if self.commit_sb(|sb| {
            sb.snap_state = SnapState::Invalid;
            sb.hydrate = false;
        })
        .is_err()
        {
            pr_err!("dm-jsnap: cannot record the invalid snapshot in the superblock\n");
        }
        self.table_event();
    }
}

/// Journal pieces pinned by [`Jsnap::pin_snapshot_pieces`]; unpinned on
/// drop.  Retirement stopped at a pinned record is retried by the worker's
/// loop, or by [`Jsnap::kick_retire`] from other contexts.
pub(crate) struct Pinned<'a> {
    j: &'a Jsnap,
    pub(super) pieces: KVVec<Extent>,
    pinned: usize,
}

impl<'a> Pinned<'a> {
    pub(super) fn new(j: &'a Jsnap) -> Self {
        Self {
            j,
            pieces: KVVec::new(),
            pinned: 0,
        }
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let mut st = self.j.state.lock();
        for p in self.pieces.iter().take(self.pinned) {
            if let Some(r) = st.journal.rec(p.seq) {
                r.pins = r.pins.saturating_sub(1);
            }
        }
    }
}
