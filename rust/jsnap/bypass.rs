// SPDX-License-Identifier: GPL-2.0

//! The journal bypass for large writes (feature `bypass <sectors>`).
//!
//! `map` queues a write of at least `bypass` sectors to the bypass worker
//! (its own workqueue: it takes `cbt_io`, a mutex).  The worker decides
//! under the state lock ([`bypass::decide`]: no active snapshot, no record
//! that replay would apply over it, no bypassed write in flight over it,
//! `snapshot` not waiting) and either journals the write as usual or holds
//! a slot for it, marks its chunks in the changed-block map of the current
//! interval, persists that map's dirty pages (no record will replay the
//! marking) and remaps the bio to production with FUA: when it completes,
//! it is durable there, as a journaled write is in pmem.  `end_io` sets the
//! slot's completion bit (an atomic: it may run in hard IRQ); whoever takes
//! the state lock next reaps it.
//!
//! While a bypassed write is in flight, destage holds back the extents that
//! overlap it (newer writes, journaled meanwhile: the disk must receive
//! them after it), and `snapshot` waits for it ([`BypassBlock`]).

use super::{changed, Jsnap, State};
use crate::ffi::bio::Bio;
use crate::logic::bypass::{self, Ask};
use crate::logic::format::SnapState;
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::time::{Delta, Instant, Monotonic};

impl Jsnap {
    /// Whether a write of `sectors` goes to the bypass worker.
    pub(super) fn bypass_candidate(&self, sectors: u32) -> bool {
        self.features.bypass != 0 && sectors >= self.features.bypass && self.bypass_wq.is_some()
    }

    /// Queues a write for the bypass worker (from `map`).
    pub(super) fn queue_bypass(this: ArcBorrow<'_, Self>, bio: Bio) {
        let arc: Arc<Self> = this.into();
        let mut st = arc.state.lock();
        if st.stopping {
            drop(st);
            bio.endio(Err(EIO));
            return;
        }
        if st.snapshot.snap != SnapState::None || st.bypass.block > 0 || st.destage.degraded {
            // It would be journaled anyway: no detour through the worker.
            drop(st);
            return Self::submit_write(this, bio);
        }
        st.bypass.queue.push(bio);
        // Queued under the state lock and never once stopping (see `kick`).
        if let Some(q) = &arc.bypass_wq {
            let _ = q.enqueue::<_, 1>(arc.clone());
        }
        drop(st);
    }

    /// Frees the slots of the bypassed writes that completed.
    pub(super) fn reap_bypassed(&self, st: &mut State) {
        let done = self.bypass_done.swap(0, Ordering::AcqRel);
        if done != 0 {
            st.bypass.slots.reap(done);
        }
    }

    /// `end_io` of a bypassed write (any context: one atomic operation).
    pub(super) fn bypassed_end(&self, tag: usize) {
        self.bypass_done
            .fetch_or(bypass::tag_bit(tag), Ordering::AcqRel);
    }

    /// The bypass worker: decides for every queued write.
    pub(super) fn run_bypass(this: &Arc<Self>) {
        loop {
            let Some(bio) = this.state.lock().bypass.queue.pop() else {
                return;
            };
            Self::bypass_one(this, bio);
        }
    }

    fn bypass_one(this: &Arc<Self>, mut bio: Bio) {
        let n = u64::from(bio.sectors());
        let (Some(sector), Ok(d)) = (this.target_sector(&bio, n), this.devs()) else {
            // The journal path reports it.
            return Self::submit_write(this.as_arc_borrow(), bio);
        };
        let (Ok(prod), Ok(pmem)) = (this.prod(&d), d.pmem()) else {
            return Self::submit_write(this.as_arc_borrow(), bio);
        };
        let tag = {
            let mut st = this.state.lock();
            this.reap_bypassed(&mut st);
            let (tail, next) = (st.journal.space.tail_seq(), st.journal.space.next_seq());
            let ask = Ask {
                start: sector,
                len: n,
                min: this.features.bypass,
                snapshot_none: st.snapshot.snap == SnapState::None,
                blocked: st.bypass.block > 0 || st.stopping || st.destage.degraded,
            };
            let st = &mut *st;
            let tag = bypass::decide(&mut st.bypass.slots, &st.journal.recs, tail, next, ask);
            if tag.is_some() {
                // In the interval of the records written before it; the
                // map reaches pmem below, under `cbt_io` (a retire that
                // flushes the page meanwhile copies the bit with it).
                st.cbt.mark(next, sector, n, this.chunk_sectors);
            }
            tag
        };
        let Some(tag) = tag else {
            return Self::submit_write(this.as_arc_borrow(), bio);
        };
        // No record will mark these chunks at replay: the map holds them
        // before the write can complete.
        let marked = if this.geometry.cbt_offset != 0 {
            changed::flush_dirty(this, pmem, &mut this.cbt_io.lock())
        } else {
            Ok(())
        };
        // (the fault build can hold the write here, its slot taken)
        crate::fault::copy_window(sector);
        bio.set_tag(tag);
        bio.set_fua();
        match marked.and_then(|()| bio.remap(prod, sector)) {
            Ok(()) => {
                let mut st = this.state.lock();
                st.stats.io_count += 1;
                st.stats.bypassed_bytes += n << 9;
                drop(st);
                bio.submit();
            }
            Err(_) => {
                bio.set_tag(0);
                this.state.lock().bypass.slots.reap(bypass::tag_bit(tag));
                Self::submit_write(this.as_arc_borrow(), bio);
            }
        }
    }

    /// Drops from a destage batch the extents that overlap a bypassed
    /// write in flight: they are newer, and must reach the disk after it.
    pub(super) fn hold_back_bypassed<T>(
        &self,
        st: &mut State,
        batch: &mut KVec<T>,
        range: impl Fn(&T) -> (u64, u64),
    ) {
        self.reap_bypassed(st);
        if st.bypass.slots.is_empty() {
            return;
        }
        let slots = st.bypass.slots;
        batch.retain(|x| {
            let (start, len) = range(x);
            !slots.overlaps(start, len)
        });
    }
}

/// How long `snapshot` waits for the bypassed writes in flight before it
/// refuses (`EBUSY`): production stalled (a path down, a suspended device
/// under it) must not hang the message.
const BLOCK_WAIT_MS: u32 = 5000;

/// Held by `snapshot` from before it takes its boundary: no write bypasses
/// the journal meanwhile, and none is in flight.
pub(super) struct BypassBlock<'a> {
    j: &'a Jsnap,
}

impl<'a> BypassBlock<'a> {
    /// Stops new bypasses and waits for those in flight (they complete on
    /// their own, in milliseconds); `EBUSY` if they have not after
    /// [`BLOCK_WAIT_MS`].
    pub(super) fn wait(j: &'a Jsnap) -> Result<Self> {
        j.state.lock().bypass.block += 1;
        // Unblocks on every return, also the refusal.
        let this = Self { j };
        let t0 = Instant::<Monotonic>::now();
        loop {
            let mut st = j.state.lock();
            j.reap_bypassed(&mut st);
            if st.bypass.slots.is_empty() {
                return Ok(this);
            }
            let left = st.bypass.slots.count();
            drop(st);
            if t0.elapsed().as_millis() >= i64::from(BLOCK_WAIT_MS) {
                pr_err!(
                    "dm-jsnap: snapshot refused: {} write(s) bypassing the journal still in flight after {} ms\n",
                    left,
                    BLOCK_WAIT_MS
                );
                return Err(EBUSY);
            }
            kernel::time::delay::fsleep(Delta::from_millis(1));
        }
    }
}

impl Drop for BypassBlock<'_> {
    fn drop(&mut self) {
        let mut st = self.j.state.lock();
        st.bypass.block = st.bypass.block.saturating_sub(1);
    }
}
