// SPDX-License-Identifier: GPL-2.0

//! What a `jsnap-view` asks of its `jsnap` volume: reads of the snapshot,
//! making a chunk store-owned before a view write, and attaching.

use super::chunklock::ChunkGuard;
use super::snapshot::Pinned;
use super::Jsnap;
use crate::ffi::bio::Bio;
use crate::ffi::devices::Devices;
use crate::logic::format::SnapState;
use crate::logic::lookup::{self, Own};
use kernel::prelude::*;

impl Jsnap {

    /// Reads a bio of the snapshot view that lies inside one chunk.  Returns
    /// the bio if the chunk is preserved: the caller reads it from the store.
    pub(crate) fn snapshot_read(&self, mut bio: Bio, start: u64) -> Option<Bio> {
        let Ok(d) = self.devs() else {
            bio.endio(Err(EIO));
            return None;
        };
        let end = start + u64::from(bio.sectors());
        let c = start / u64::from(self.chunk_sectors);
        let Ok(guard) = self.locks.lock(c, false) else {
            bio.endio(Err(ENOMEM));
            return None;
        };
        let (snap, preserved) = {
            let st = self.state.lock();
            (st.snapshot.snap, st.snapshot.is_preserved(c))
        };
        if snap != SnapState::Active {
            bio.endio(Err(EIO));
            return None;
        }
        if preserved {
            // The store copy is final: no lock needed past this point.  The
            // caller remaps the bio to its own handle on the store.
            drop(guard);
            return Some(bio);
        }
        let res = self.read_unpreserved(&d, &mut bio, start, end);
        drop(guard);
        bio.endio(res);
        None
    }

    /// Reads the snapshot's content of `start..end`, inside an unpreserved
    /// chunk whose lock the caller holds shared, into `bio`: production,
    /// overlaid with the pre-snapshot journal pieces.
    fn read_unpreserved(&self, d: &Devices<'_>, bio: &mut Bio, start: u64, end: u64) -> Result {
        let n = bio.bytes() as usize;
        let mut bounce = self.bounce.lock();
        self.io.read(self.prod(&d)?, start, &mut bounce, n)?;
        bio.copy_from_slice(0, bounce.get(..n).ok_or(EINVAL)?)?;
        drop(bounce);
        let mut pins = Pinned::new(self);
        self.pin_snapshot_pieces(start, end, &mut pins)?;
        for p in pins.pieces.iter() {
            let skip = ((p.start - start) << 9) as u32;
            bio.copy_from_pmem(
                skip,
                d.pmem()?,
                self.ring_off(p.ring_pos),
                (p.len << 9) as u32,
            )?;
        }
        Ok(())
    }

    /// Makes chunk `c` store-owned for a view write `bio` starting at
    /// `start`, under the chunk's exclusive lock (held by the returned
    /// guard until the write is done).  A write that covers the whole unpreserved
    /// chunk skips the copy: its data goes to the store first,
    /// then the bit is set; `true` says the data is already in the
    /// store.  Otherwise the chunk is preserved and `Ok(false)` returned.
    pub(crate) fn own_chunk(&self, c: u64, bio: &Bio, start: u64) -> Result<(ChunkGuard<'_>, bool)> {
        let guard = self.locks.lock(c, true)?;
        let (preserved, id) = {
            let st = self.state.lock();
            if st.snapshot.snap != SnapState::Active {
                return Err(EIO);
            }
            (st.snapshot.is_preserved(c), st.snapshot.snap_id)
        };
        let (cs, ce) = self.chunk_range(c);
        let whole = start == cs && u64::from(bio.sectors()) == ce - cs;
        let in_store = match lookup::view_own(preserved, whole) {
            Own::Already => false,
            Own::CopyFirst => {
                self.preserve_chunk(c)?;
                false
            }
            Own::WholeChunk => {
                self.write_bio_to_store(bio, start)?;
                let d = self.devs()?;
                if !self.mark_preserved(d.pmem()?, id, &[c])? {
                    // Dropped meanwhile.
                    return Err(EIO);
                }
                true
            }
        };
        Ok((guard, in_store))
    }

    /// Writes the data of `bio` to the store at `sector` (mirror mode).
    pub(crate) fn write_bio_to_store(&self, bio: &Bio, sector: u64) -> Result {
        let d = self.devs()?;
        let store = self.store(&d).map_err(|_| EIO)?;
        let n = bio.bytes() as usize;
        let mut bounce = self.bounce.lock();
        bio.copy_to_slice(0, bounce.get_mut(..n).ok_or(EINVAL)?)?;
        self.io.write(store, sector, &bounce, n, true)
    }

    /// Whether chunk `c` of the active snapshot is preserved in the store.
    pub(crate) fn chunk_is_preserved(&self, c: u64) -> bool {
        let st = self.state.lock();
        st.snapshot.snap == SnapState::Active && st.snapshot.is_preserved(c)
    }

    /// Registers or unregisters a view.
    pub(crate) fn attach_view(&self, on: bool) -> Result {
        let mut st = self.state.lock();
        if on {
            if !st.loaded || st.snapshot.snap != SnapState::Active || st.snapshot.dropping {
                return Err(ENOENT);
            }
            st.snapshot.views += 1;
        } else {
            st.snapshot.views = st.snapshot.views.saturating_sub(1);
        }
        Ok(())
    }
}
