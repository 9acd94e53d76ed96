// SPDX-License-Identifier: GPL-2.0

//! The read path: a prefix of a read is served from the journal or
//! remapped to production; device-mapper hands the rest back to `map`.

use super::changes::first_overlap;
use super::Jsnap;
use crate::ffi::bio::MapBio;
use crate::ffi::dmdev::DmDev;
use crate::ffi::dm::Mapped;
use kernel::prelude::*;
use kernel::sync::ArcBorrow;

impl Jsnap {
    /// Sends (the accepted prefix of) a read to production.
    fn remap_read(mut bio: MapBio<'_>, prod: &DmDev, start: u64) -> Mapped {
        match bio.remap(prod, start) {
            Ok(()) => Mapped::Remap(bio.into_bio()),
            Err(e) => Mapped::complete(bio.into_bio(), Err(e)),
        }
    }

    /// Serves a prefix of a read from the journal or remaps it.
    pub(super) fn read(this: ArcBorrow<'_, Self>, mut bio: MapBio<'_>) -> Mapped {
        let Ok(d) = this.devs() else {
            return Mapped::complete(bio.into_bio(), Err(EIO));
        };
        let (Ok(prod), Ok(pmem)) = (this.prod(&d), d.pmem()) else {
            return Mapped::complete(bio.into_bio(), Err(EIO));
        };
        let n = u64::from(bio.sectors());
        let Some(start) = this.target_sector(&bio, n) else {
            return Mapped::complete(bio.into_bio(), Err(EIO));
        };
        let end = start + n;
        let mut st = this.state.lock();
        st.stats.io_count += 1;
        loop {
            let Some(x) = first_overlap(&st.journal.changes, start, end) else {
                drop(st);
                return Self::remap_read(bio, prod, start);
            };
            if x.start > start {
                drop(st);
                bio.accept_partial((x.start - start) as u32);
                return Self::remap_read(bio, prod, start);
            }
            if !this.is_persisted(&st, x.seq) {
                // A write to these sectors is being copied right now.
                this.wait_persisted(&mut st, x.seq);
                continue;
            }
            let piece = end.min(x.end()) - start;
            let pos = x.ring_pos + (start - x.start);
            if let Some(r) = st.journal.rec(x.seq) {
                r.pins += 1;
            }
            drop(st);
            bio.accept_partial(piece as u32);
            let res = if crate::fault::poisoned(start, piece) {
                Err(EIO)
            } else {
                bio.copy_from_pmem(0, pmem, this.ring_off(pos), (piece << 9) as u32)
            };
            let mut st = this.state.lock();
            let mut kick = false;
            if let Some(r) = st.journal.rec(x.seq) {
                r.pins -= 1;
                kick = r.pins == 0 && st.destage.retire_blocked;
            }
            drop(st);
            if kick {
                Self::kick(this);
            }
            return Mapped::complete(bio.into_bio(), res);
        }
    }
}
