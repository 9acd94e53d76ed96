// SPDX-License-Identifier: GPL-2.0

//! The off-line secondary task: the destage kworker.
//!
//! One run: queue the worker that journals deferred writes (its own queue:
//! production keeps writing while they are copied into pmem), then, while
//! the live data in the journal is above the low watermark after crossing
//! the high one, or the ring, dead records included, is near full
//! (`compact::ring_high`), or while writers keep finding the journal full,
//! or a `drain` is waiting, or writers are deferred, destage a batch:
//!
//! 1. collect up to `destage_batch` persisted extents: the pieces of the
//!    oldest records that the tables still refer to, which hold the tail
//!    back (data overwritten before the tail reaches it is never written),
//!    else a sweep in sector order from a rotating cursor; sorted by sector
//!    (under the lock; only the worker removes extents, and only the worker
//!    retires records, so the ring data stays put);
//!    with no snapshot, when at most `compact`% of the oldest records is
//!    still live, their live pieces are copied to the head of the journal
//!    instead of steps 2-4 (see `compact`);
//! 2. **preserve before overwrite** — the snapshot hook: chunks that the
//!    snapshot still needs are copied to the store first (see `preserve`);
//! 3. write the extents from pmem to production, merging runs that are
//!    adjacent both on the target and in the ring, then flush production;
//! 4. drop from the table the pieces of those records that are still there
//!    (newer writes that arrived meanwhile stay);
//! 5. retire every record nothing refers to: commit the superblock's new
//!    tail, then free the ring space and wake deferred writers.
//!
//! Errors leave the extents in the table (and the data in the journal),
//! count in `errors`, set `state=degraded` and are retried with back-off.

use super::changes::first_overlap;
use super::write::Journaled;
use super::{Jsnap, State, MAX_RECORD_SECTORS};
use crate::ffi::io;
use crate::logic::compact::{self, Trigger};
use crate::logic::extent::{self, Extent};
use crate::logic::retire;
use crate::logic::sort;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::time::Delta;

/// Back-off after a failed batch, doubled up to the maximum.
const BACKOFF_MS_MIN: i64 = 100;
const BACKOFF_MS_MAX: i64 = 5000;

/// How long after a writer last found the journal full destage goes on
/// below the low watermark.
const OUTRUN_MS: i64 = 100;

/// Whether the worker should destage now.
fn wanted(st: &mut State, high: u32, low: u32, no_destage: bool) -> bool {
    if st.stopping || st.suspended {
        return false;
    }
    if !st.journal.deferred.is_empty() {
        // Writers wait: for space, or for memory for their table nodes.
        return true;
    }
    if st.destage.drains > 0 {
        return st.journal.space.pending() > 0;
    }
    if no_destage {
        return false;
    }
    let fill = st.journal.fill();
    // Writers that found the journal full a moment ago outrun destage (a
    // stream larger than the journal): stopping at the low watermark would
    // only leave production idle until they fill the journal again, so
    // destage goes on below it while they keep doing so.
    let outrun = st
        .destage
        .outrun_at
        .is_some_and(|t| t.elapsed() < Delta::from_millis(OUTRUN_MS));
    // The watermarks are about live data; dead records wait for the ring
    // bound (`compact::ring_high`).  What started destage decides where it
    // stops; live data (or outrunning writers) takes it deeper than the
    // ring bound does.
    let trigger = if outrun {
        Some(Trigger::Live)
    } else {
        compact::destage_trigger(fill, high)
    };
    match (st.destage.destaging, trigger) {
        (_, Some(Trigger::Live)) | (None, Some(Trigger::Ring)) => st.destage.destaging = trigger,
        (Some(t), _) if compact::destage_stops(fill, high, low, t) => st.destage.destaging = None,
        _ => {}
    }
    st.destage.destaging.is_some() && st.journal.space.pending() > 0
}

/// Retries deferred writes in order until one does not fit (the serve
/// worker, queued by the destage worker: `Jsnap::kick_serve`).  Nothing
/// reaches pmem while suspended: what waits then is served after resume.
pub(super) fn serve_deferred(this: &Arc<Jsnap>) {
    let mut clock = crate::prof::Clock::start();
    loop {
        let bio = {
            let mut st = this.state.lock();
            if st.suspended || st.stopping {
                return;
            }
            st.journal.deferred.pop()
        };
        let Some(bio) = bio else {
            clock.mark(crate::prof::Stage::DstServe);
            return;
        };
        match this.journal_write(bio, GFP_NOWAIT, true) {
            Journaled::Again(bio) => {
                this.state.lock().journal.deferred.push_front(bio);
                // The destage worker may have stopped while the list looked
                // empty: it loops while writes wait, and queues this worker.
                Jsnap::kick(this.as_arc_borrow());
                return;
            }
            // As a map-path write: the destage worker may have stopped
            // below the high watermark.
            Journaled::AboveHigh => Jsnap::kick(this.as_arc_borrow()),
            Journaled::Done => {}
        }
    }
}

/// Extents dropped from the table per state-lock section.
const DROP_PER_SECTION: usize = 16;

/// Records looked at per extent of a batch when collecting oldest first.
const OLDEST_SCAN: u64 = 4;

/// Collects the next batch of destageable extents: the pieces of the
/// oldest records still referred to (what keeps the tail where it is), in
/// sector order; when there are none, a sweep in sector order from a
/// rotating cursor.  Returns whether the batch is to be compacted (copied
/// within the journal, `compact`) rather than written to production.
fn collect(this: &Jsnap, batch: &mut KVec<Extent>) -> bool {
    let max = this.features.destage_batch as usize;
    let mut st = this.state.lock();
    let st = &mut *st;
    this.fold_persisted(st);
    let (tail, next) = (st.journal.space.tail_seq(), st.journal.space.next_seq());
    // The newest record the batch takes pieces of.
    let mut last = None;
    'records: for r in retire::oldest_referenced(&st.journal.recs, tail, next, OLDEST_SCAN * max as u64) {
        if batch.len() >= max {
            break;
        }
        let end = r.sector + u64::from(r.sectors);
        let mut pos = r.sector;
        while pos < end {
            let Some(y) = first_overlap(&st.journal.changes, pos, end) else {
                break;
            };
            if y.seq == r.seq {
                if batch.len() >= max || batch.push(y, GFP_NOWAIT).is_err() {
                    break 'records;
                }
                last = Some(r.seq);
            }
            pos = y.end().max(pos + 1);
        }
    }
    if batch.is_empty() {
        sweep(st, max, batch);
    } else {
        sort::heapsort_by_key(batch, |x| x.start);
    }
    this.hold_back_bypassed(st, batch, |x| (x.start, x.len));
    last.is_some_and(|l| !batch.is_empty() && this.compact_wanted(st, batch, l))
}

/// Up to `max` persisted extents in sector order from the cursor.
fn sweep(st: &mut State, max: usize, batch: &mut KVec<Extent>) {
    let start = st.destage.cursor;
    // From the cursor to the end, then from 0 up to the cursor: every
    // extent at most once.
    for (from, limit) in [(start, u64::MAX), (0, start)] {
        let mut key = from;
        while batch.len() < max {
            let Some(x) = st.journal.changes.cursor_lower_bound(&key).map(|c| *c.current().1) else {
                break;
            };
            if x.start >= limit {
                break;
            }
            let persisted = st.journal.rec_ref(x.seq).is_some_and(|r| r.persisted);
            if persisted && batch.push(x, GFP_NOWAIT).is_err() {
                break;
            }
            key = x.end();
        }
        if batch.len() >= max {
            break;
        }
    }
    st.destage.cursor = batch.last().map_or(0, |x| x.end());
}

/// Writes a batch to production; returns the number of sectors written.
///
/// Runs that are adjacent on the target and in the ring are merged.  While
/// a snapshot is active, the exclusive locks of every chunk the batch
/// touches are taken (in ascending order), and the chunks that receive
/// post-snapshot data are preserved first, together, with one store flush.
/// Then all runs are written at once and production is flushed.
fn write_batch(this: &Jsnap, batch: &[Extent]) -> Result<u64> {
    let d = this.devs()?;
    let epoch = this.state.lock().snapshot.epoch();
    let cs = u64::from(this.chunk_sectors);
    let mut runs: KVec<Extent> = KVec::with_capacity(batch.len(), GFP_KERNEL)?;
    let mut i = 0;
    while let Some(first) = batch.get(i) {
        let mut run = *first;
        let mut j = i + 1;
        while let Some(next) = batch.get(j) {
            match extent::merge_adjacent(&run, next) {
                Some(m) if m.len <= MAX_RECORD_SECTORS => run = m,
                _ => break,
            }
            j += 1;
        }
        runs.push(run, GFP_KERNEL)?;
        i = j;
    }
    // Chunks to lock, and those to preserve.
    // One entry per chunk the batch touches: up to destage_batch x 1 MiB
    // of chunks (millions with small chunks), so kvmalloc'd.
    let mut locks: KVVec<u64> = KVVec::new();
    let mut preserve: KVVec<u64> = KVVec::new();
    if epoch.active {
        for r in runs.iter() {
            for c in r.start / cs..r.end().div_ceil(cs) {
                locks.push(c, GFP_KERNEL)?;
                // Chunks that have an entry (are preserved) are skipped
                // by `preserve_chunks`, under the lock taken below.
                if epoch.must_preserve(r.seq) {
                    preserve.push(c, GFP_KERNEL)?;
                }
            }
        }
        let n = sort::sort_dedup(&mut locks);
        locks.truncate(n);
        let n = sort::sort_dedup(&mut preserve);
        preserve.truncate(n);
    }
    let guard = this.locks.lock_all(&locks)?;
    // Any early return from here on releases the locks with `guard`.
    crate::fault::enomem(crate::fault::Site::Destage)?;
    if !preserve.is_empty() {
        // Destage step 2: preserve before overwrite.
        this.preserve_chunks(&preserve)?;
    }
    let mut io: KVec<(u64, usize, u64)> = KVec::with_capacity(runs.len(), GFP_KERNEL)?;
    for r in runs.iter() {
        io.push((r.start, this.ring_off(r.ring_pos), r.len), GFP_KERNEL)?;
    }
    this.io.write_many_from_pmem(this.prod(&d)?, d.pmem()?, &io)?;
    if !preserve.is_empty() {
        crate::fault::cow_overwritten();
    }
    let mut clock = crate::prof::Clock::start();
    io::flush(this.prod(&d)?)?;
    clock.mark(crate::prof::Stage::DstFlush);
    drop(guard);
    Ok(runs.iter().map(|r| r.len).sum())
}

/// Removes from the table what the batch wrote: pieces of the same record.
fn drop_destaged(st: &mut State, batch: &[Extent]) {
    for x in batch {
        let mut pos = x.start;
        while pos < x.end() {
            let Some(y) = first_overlap(&st.journal.changes, pos, x.end()) else {
                break;
            };
            let next = y.end();
            if y.seq == x.seq {
                if let Some(node) = st.journal.changes.remove_node(&y.start) {
                    st.journal.recycle(node.into_reservation());
                    st.journal.extents -= 1;
                    st.journal.live_sectors = st.journal.live_sectors.saturating_sub(y.len);
                    if let Some(r) = st.journal.rec(y.seq) {
                        r.refs = r.refs.saturating_sub(1);
                    }
                }
            }
            pos = next.max(pos + 1);
        }
    }
}

/// Retires every leading record that nothing refers to.  Returns whether
/// any was retired.
fn retire(this: &Jsnap) -> Result<bool> {
    let mut st = this.state.lock();
    this.fold_persisted(&mut st);
    let (tail, next) = (st.journal.space.tail_seq(), st.journal.space.next_seq());
    let j = &mut st.journal;
    let point = retire::retire_point_from(&j.recs, tail, next, &mut j.persisted_floor);
    st.destage.retire_blocked = point.pinned;
    let Some((seq, end)) = point.through else {
        return Ok(false);
    };
    let mut after = st.journal.space;
    if after.retire_through(seq, end).is_err() {
        pr_err!(
            "dm-jsnap: journal accounting refused retiring through {}\n",
            seq
        );
        return Err(EIO);
    }
    drop(st);

    // The superblock must name the new tail before the space is reused,
    // and the changed-block maps must hold the retired records' chunks.
    this.commit_sb_tracked(|new| {
        new.tail_seq = after.tail_seq();
        new.tail_pos = after.tail_pos();
    })?;

    let mut st = this.state.lock();
    if st.journal.space.retire_through(seq, end).is_err() {
        pr_err!("dm-jsnap: journal accounting changed under the worker\n");
        return Err(EIO);
    }
    Ok(true)
}

/// Preserves the chunks of the first superseded pre-snapshot piece, which
/// frees it.  Returns whether there was one.
fn preserve_snap_pieces(this: &Jsnap) -> bool {
    let Some(x) = this
        .state
        .lock()
        .journal
        .snap_table
        .cursor_front()
        .map(|c| *c.current().1)
    else {
        return false;
    };
    let cs = u64::from(this.chunk_sectors);
    for c in x.start / cs..x.end().div_ceil(cs) {
        let Ok(guard) = this.locks.lock(c, true) else {
            kernel::time::delay::fsleep(Delta::from_millis(BACKOFF_MS_MIN));
            return false;
        };
        let res = this.preserve_chunk(c);
        drop(guard);
        if res.is_err() {
            kernel::time::delay::fsleep(Delta::from_millis(BACKOFF_MS_MIN));
            return false;
        }
    }
    true
}

/// One worker run.
pub(super) fn run(this: &Arc<Jsnap>) {
    let mut whole = crate::prof::Clock::start();
    let mut backoff = BACKOFF_MS_MIN;
    let (high, low, nd) = (
        this.features.high_watermark,
        this.features.low_watermark,
        this.features.no_destage,
    );
    loop {
        {
            // Nothing reaches pmem or the devices while suspended.
            let mut st = this.state.lock();
            // Writers above the high watermark queue the worker again
            // once it has looked at the state from here on.
            st.destage.kick_armed = false;
            if st.suspended || st.stopping {
                break;
            }
        }
        // Deferred writes are journaled by their own worker while this
        // one goes on destaging (it loops as long as any wait).
        Jsnap::kick_serve(this);
        let mut clock = crate::prof::Clock::start();
        let retired = match retire(this) {
            Ok(r) => r,
            Err(_) => false,
        };
        if retired {
            clock.mark(crate::prof::Stage::Retire);
            Jsnap::kick_serve(this);
            this.cond.notify_all();
        }
        if !wanted(&mut this.state.lock(), high, low, nd) {
            // Nothing to destage: copy snapshot chunks if asked to.
            if this.hydrate_step() {
                continue;
            }
            break;
        }
        let mut clock = crate::prof::Clock::start();
        let guard = this.batch.lock();
        let mut batch = KVec::new();
        let compact = collect(this, &mut batch);
        if batch.is_empty() {
            drop(guard);
            // What remains is pre-snapshot data superseded in unpreserved
            // chunks (freed by preserving them), or records still being
            // copied or pinned.
            if !preserve_snap_pieces(this) && !retired {
                let mut clock = crate::prof::Clock::start();
                kernel::time::delay::fsleep(Delta::from_millis(1));
                clock.mark(crate::prof::Stage::DstSleep);
            }
            continue;
        }
        clock.mark(crate::prof::Stage::DstCollect);
        // What compaction does not copy is written to production now.
        let mut rest = KVec::new();
        let res = if compact {
            this.compact_batch(&batch, &mut rest).map(|_| ())
        } else {
            Ok(())
        };
        let todo: &[Extent] = if compact { &rest } else { &batch };
        let res = res.and_then(|()| if todo.is_empty() { Ok(0) } else { write_batch(this, todo) });
        clock.mark(crate::prof::Stage::DstWrite);
        if let Ok(sectors) = res {
            // A few extents per section: writers wait for the lock at most
            // that long (each extent is dropped on its own; what a section
            // leaves is on production already).
            for part in todo.chunks(DROP_PER_SECTION) {
                drop_destaged(&mut this.state.lock(), part);
            }
            let mut st = this.state.lock();
            st.stats.destaged_bytes += sectors << 9;
            st.destage.degraded = false;
        }
        drop(guard);
        clock.mark(crate::prof::Stage::DstDrop);
        match res {
            Ok(_) => backoff = BACKOFF_MS_MIN,
            Err(e) => {
                let mut st = this.state.lock();
                // Out of memory is no device error: retried with back-off,
                // neither counted nor failing a `drain`.
                if e != ENOMEM {
                    st.destage.errors += 1;
                    st.destage.degraded = true;
                }
                let stop = st.stopping || st.suspended;
                drop(st);
                pr_warn!(
                    "dm-jsnap: destage failed ({:?}), retrying in {} ms\n",
                    e,
                    backoff
                );
                this.cond.notify_all();
                if stop {
                    break;
                }
                kernel::time::delay::fsleep(Delta::from_millis(backoff));
                backoff = (backoff * 2).min(BACKOFF_MS_MAX);
            }
        }
    }
    this.cond.notify_all();
    whole.mark(crate::prof::Stage::WorkerRun);
}
