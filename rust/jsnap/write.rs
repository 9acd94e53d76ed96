// SPDX-License-Identifier: GPL-2.0

//! The write path (on-line primary task): journal a write and complete it.

use super::changes::{insert_extent, Nodes};
use super::recovery::WORKER_NODES;
use super::{Jsnap, Rec};
use crate::ffi::bio::Bio;
use crate::logic::compact;
use crate::logic::extent::{self, Extent};
use crate::logic::format::SnapState;
use crate::logic::ring::RingError;
use kernel::alloc::Flags;
use kernel::prelude::*;
use kernel::sync::ArcBorrow;

/// What became of a write offered to the journal.
pub(crate) enum Journaled {
    Done,
    /// Done, the journal is above the high watermark, and this write armed
    /// the destage kick (the first such write since the worker last
    /// looked): wake destage.
    AboveHigh,
    /// No journal space (or no memory for table nodes): try again later.
    Again(Bio),
}

impl Jsnap {
    /// Journals a write that another target (a `mirror` view) completes
    /// through this one: `sector` is relative to this target.
    pub(crate) fn submit_write_at(this: ArcBorrow<'_, Self>, mut bio: Bio, sector: u64) {
        match sector.checked_add(this.begin) {
            Some(s) => {
                bio.set_sector(s);
                Self::submit_write(this, bio);
            }
            None => bio.endio(Err(EIO)),
        }
    }

    /// On-line primary task: journal one write and complete it.
    ///
    /// `from_worker` is set when the serve worker retries a deferred write
    /// (`destage::serve_deferred`); map-path writes queue behind deferred
    /// ones to keep order.
    pub(crate) fn journal_write(&self, bio: Bio, gfp: Flags, from_worker: bool) -> Journaled {
        let mut clock = crate::prof::Clock::start();
        let Ok(d) = self.devs() else {
            bio.endio(Err(EIO));
            return Journaled::Done;
        };
        let Ok(pmem) = d.pmem() else {
            bio.endio(Err(EIO));
            return Journaled::Done;
        };
        let n = u64::from(bio.sectors());
        let Some(sector) = self.target_sector(&bio, n) else {
            pr_err!("dm-jsnap: write at sector {} lies outside the target\n", bio.sector());
            bio.endio(Err(EIO));
            return Journaled::Done;
        };
        clock.mark(crate::prof::Stage::Reserve);
        // The table nodes come from the pool, under the lock; only when it
        // runs short are they allocated, outside it, and the checks made
        // again.  The worker may empty the pool: it always progresses.
        let floor = if from_worker { 0 } else { WORKER_NODES };
        let mut nodes = Nodes::empty();
        let mut st = loop {
            let mut st = self.state.lock();
            clock.mark(crate::prof::Stage::Lock);
            if st.stopping {
                // Removed (a view's write arriving late): nobody would serve it.
                st.journal.recycle_nodes(&mut nodes);
                drop(st);
                bio.endio(Err(EIO));
                return Journaled::Done;
            }
            if !from_worker && !st.journal.deferred.is_empty() {
                st.journal.recycle_nodes(&mut nodes);
                return Journaled::Again(bio);
            }
            let want = extent::nodes_needed(st.snapshot.snap == SnapState::Active);
            if st.journal.top_up(&mut nodes, want, floor) {
                break st;
            }
            drop(st);
            let filled = crate::fault::enomem(crate::fault::Site::Nodes)
                .and_then(|()| nodes.fill(want, gfp));
            if filled.is_err() {
                self.state.lock().journal.recycle_nodes(&mut nodes);
                return Journaled::Again(bio);
            }
        };
        st.stats.io_count += 1;
        let (seq, res) = match st.journal.space.reserve(n) {
            Ok(x) => x,
            Err(RingError::Full) => {
                st.journal.recycle_nodes(&mut nodes);
                return Journaled::Again(bio);
            }
            Err(_) => {
                drop(st);
                pr_err!("dm-jsnap: write of {} sectors cannot be journaled\n", n);
                bio.endio(Err(EIO));
                return Journaled::Done;
            }
        };
        if let Some(r) = st.journal.rec(seq) {
            *r = Rec::reserved(seq, res.pos + res.len, sector, n as u32);
        }
        let ext = Extent {
            start: sector,
            len: n,
            seq,
            ring_pos: res.pos,
        };
        insert_extent(&mut st, ext, &mut nodes, self.chunk_sectors);
        // Changed-block tracking, in the section that gave the seq (a
        // `snapshot` takes its boundary under the same lock).
        st.cbt.mark(seq, sector, n, self.chunk_sectors);
        // What the insert did not use goes back to the pool.
        st.journal.recycle_nodes(&mut nodes);
        st.stats.written_bytes += n << 9;
        let wake_destage = !self.features.no_destage
            && compact::destage_starts(st.journal.fill(), self.features.high_watermark)
            && st.destage.arm_kick();
        drop(st);
        clock.mark(crate::prof::Stage::Insert);

        crate::fault::copy_window(sector);
        // The data, one fence, then the descriptor and a second fence: a
        // descriptor on pmem implies its data is there (`DESC_ORDERED`), so
        // recovery needs no checksum of the data.
        let copied = bio.copy_to_pmem(pmem, self.ring_off(res.pos));
        pmem.fence();
        clock.mark(crate::prof::Stage::Copy);
        let copied = copied.and_then(|()| self.write_descriptor(pmem, seq, sector, res.pos, n));
        pmem.fence();
        clock.mark(crate::prof::Stage::Desc);

        self.mark_persisted(seq);
        if copied.is_err() {
            pr_err!("dm-jsnap: journal copy out of bounds (seq {})\n", seq);
        }
        clock.mark(crate::prof::Stage::Persisted);
        bio.endio(copied);
        clock.mark(crate::prof::Stage::Endio);
        if wake_destage {
            Journaled::AboveHigh
        } else {
            Journaled::Done
        }
    }

    /// Journals a write from the map path, deferring it when the journal
    /// is full.
    pub(crate) fn submit_write(this: ArcBorrow<'_, Self>, bio: Bio) {
        let journaled = this.journal_write(bio, GFP_NOWAIT, false);
        let mut clock = crate::prof::Clock::start();
        match journaled {
            Journaled::Again(bio) => {
                let mut st = this.state.lock();
                st.journal.deferred.push(bio);
                st.destage.outrun_at = Some(kernel::time::Instant::now());
                drop(st);
                Self::kick(this);
            }
            Journaled::AboveHigh => Self::kick(this),
            Journaled::Done => {}
        }
        clock.mark(crate::prof::Stage::Tail);
    }
}
