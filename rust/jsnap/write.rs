// SPDX-License-Identifier: GPL-2.0

//! The write path (on-line primary task): journal a write and complete it.

use super::changes::{insert_extent, Nodes};
use super::{Jsnap, Rec};
use crate::ffi::bio::Bio;
use crate::logic::extent::{self, Extent};
use crate::logic::format::{self, Descriptor, SnapState};
use crate::logic::ring::RingError;
use core::sync::atomic::Ordering;
use kernel::alloc::Flags;
use kernel::prelude::*;
use kernel::sync::ArcBorrow;

/// What became of a write offered to the journal.
pub(crate) enum Journaled {
    Done,
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

    /// Number of table nodes a write must reserve: a new extent and a
    /// split remainder, plus two pieces kept for an active snapshot.  The
    /// hint may be stale; `journal_write` re-checks under the lock.
    fn nodes_needed(&self) -> usize {
        extent::nodes_needed(self.snap_hint.load(Ordering::Relaxed))
    }

    /// On-line primary task: journal one write and complete it.
    ///
    /// `from_worker` is set when the destage worker retries a deferred
    /// write; map-path writes queue behind deferred ones to keep order.
    pub(crate) fn journal_write(&self, mut bio: Bio, gfp: Flags, from_worker: bool) -> Journaled {
        // A write that met a snapshot taken after its node reservation is
        // reserved again at once: deferring it would queue every later
        // map-path write behind it until the worker served them.
        for _ in 0..4 {
            match self.journal_write_once(bio, gfp, from_worker) {
                Err(b) => bio = b,
                Ok(j) => return j,
            }
        }
        Journaled::Again(bio)
    }

    /// [`Jsnap::journal_write`], or `Err(bio)` when a snapshot was taken
    /// since the table nodes were reserved: reserve again now.
    fn journal_write_once(&self, bio: Bio, gfp: Flags, from_worker: bool) -> Result<Journaled, Bio> {
        let Ok(d) = self.devs() else {
            bio.endio(Err(EIO));
            return Ok(Journaled::Done);
        };
        let Ok(pmem) = d.pmem() else {
            bio.endio(Err(EIO));
            return Ok(Journaled::Done);
        };
        let want = self.nodes_needed();
        let nodes =
            crate::fault::enomem(crate::fault::Site::Nodes).and_then(|()| Nodes::new(want, gfp));
        let mut nodes = match nodes {
            Ok(n) => n,
            // The worker takes nodes from the reserve: it always progresses.
            Err(_) if from_worker => match self.state.lock().take_spare(want) {
                Some(n) => n,
                None => return Ok(Journaled::Again(bio)),
            },
            Err(_) => return Ok(Journaled::Again(bio)),
        };
        let n = u64::from(bio.sectors());
        let Some(sector) = self.target_sector(&bio, n) else {
            pr_err!("dm-jsnap: write at sector {} lies outside the target\n", bio.sector());
            bio.endio(Err(EIO));
            return Ok(Journaled::Done);
        };
        let mut st = self.state.lock();
        if st.stopping {
            // Removed (a view's write arriving late): nobody would serve it.
            drop(st);
            bio.endio(Err(EIO));
            return Ok(Journaled::Done);
        }
        if !from_worker && !st.deferred.is_empty() {
            st.recycle_nodes(&mut nodes);
            return Ok(Journaled::Again(bio));
        }
        if st.snap == SnapState::Active && nodes.count() < 4 {
            // A snapshot was taken since the hint was read.
            self.snap_hint.store(true, Ordering::Relaxed);
            st.recycle_nodes(&mut nodes);
            return Err(bio);
        }
        st.io_count += 1;
        let (seq, res) = match st.space.reserve(n) {
            Ok(x) => x,
            Err(RingError::Full) => {
                st.recycle_nodes(&mut nodes);
                return Ok(Journaled::Again(bio));
            }
            Err(_) => {
                drop(st);
                pr_err!("dm-jsnap: write of {} sectors cannot be journaled\n", n);
                bio.endio(Err(EIO));
                return Ok(Journaled::Done);
            }
        };
        if let Some(r) = st.rec(seq) {
            *r = Rec {
                seq,
                end: res.pos + res.len,
                refs: 0,
                pins: 0,
                persisted: false,
                known: true,
                superseded_by: 0,
            };
        }
        let ext = Extent {
            start: sector,
            len: n,
            seq,
            ring_pos: res.pos,
        };
        insert_extent(&mut st, ext, &mut nodes, self.chunk_sectors);
        // What the insert did not use refills the reserve: the worker's
        // writes must not drain it.
        st.recycle_nodes(&mut nodes);
        st.written_bytes += n << 9;
        drop(st);

        crate::fault::copy_window(sector);
        // Copy the data and the descriptor, then one fence: a descriptor
        // that reaches pmem without its data fails its data CRC on replay,
        // and such a write was never acknowledged.
        let copied = bio
            .copy_to_pmem(pmem, self.ring_off(res.pos))
            .and_then(|crc| {
                let desc = Descriptor {
                    flags: 0,
                    seq,
                    sector,
                    ring_pos: res.pos,
                    nr_sectors: n as u32,
                    data_crc: crc,
                };
                let mut buf = [0u8; format::DESC_BYTES];
                desc.encode(&mut buf);
                pmem.write(self.geometry.desc_slot_offset(seq) as usize, &buf)
            });
        pmem.fence();

        let mut st = self.state.lock();
        if let Some(r) = st.rec(seq) {
            r.persisted = true;
        }
        let wake = st.waiters > 0;
        drop(st);
        if wake {
            self.cond.notify_all();
        }
        if copied.is_err() {
            pr_err!("dm-jsnap: journal copy out of bounds (seq {})\n", seq);
        }
        bio.endio(copied);
        Ok(Journaled::Done)
    }

    /// Journals a write from the map path, deferring it when the journal
    /// is full.
    pub(crate) fn submit_write(this: ArcBorrow<'_, Self>, bio: Bio) {
        if let Journaled::Again(bio) = this.journal_write(bio, GFP_NOWAIT, false) {
            this.state.lock().deferred.push(bio);
            Self::kick(this);
        } else if !this.features.no_destage
            && this.state.lock().usage_pct() >= u64::from(this.features.high_watermark)
        {
            Self::kick(this);
        }
    }
}
