// SPDX-License-Identifier: GPL-2.0

//! The journal's metadata, as dm-clone-metadata keeps it apart from the
//! data path: the two superblock slots (open, format, commit) and the
//! persistent validity map.  The on-pmem encoding is `logic::format`; this
//! file is the only one that writes it.
//!
//! # Commit protocol
//!
//! "Persist" means: written with cache-bypassing copies, then fenced.
//!
//! * **Superblock commit** ([`SbState::commit`], under the `sb` mutex):
//!   build the new superblock in memory with `generation + 1`, write it to
//!   the slot that does *not* hold the current one, persist, and only then
//!   make it current.  `pick_superblock` takes the valid slot with the
//!   highest generation, so a torn commit leaves the previous state.
//! * **Format** ([`SbState::format`]): zero both slots and persist, zero the
//!   validity map and the descriptor table and persist, then write slot 0
//!   with generation 1 and persist.  A crash in between leaves an
//!   unformatted journal, never a mix.
//! * **Validity bits** ([`Jsnap::mark_preserved`], under `validity_io`):
//!   after the chunk's store copy is durable, its 8-byte word is written
//!   ([`write_preserved`], under the `state` lock) and fenced (outside it:
//!   no fence waits under a spinlock), and only then is the bit set in
//!   core; all of it before production may be overwritten.  While no
//!   snapshot exists the map reads as zero ([`zero_validity`]): `drop`
//!   commits `snap_state = none` first and then zeroes it, and load zeroes
//!   it again without a snapshot.
//! * **Retire**: after destaged data is flushed, a commit with the new
//!   `tail_seq`/`tail_pos`, and only then is the ring space reused.

use super::Jsnap;
use crate::ffi::devices::DevId;
use crate::ffi::dm::{Ctr, CtrError};
use crate::ffi::pmem::{random_bytes, Pmem};
use crate::logic::format::{self, Error as FmtError, SnapState, Superblock};
use crate::logic::validity;
use kernel::prelude::*;

/// A mapped journal whose superblock was checked.
pub(crate) struct Opened {
    pub(crate) sb: Superblock,
    pub(crate) slot: usize,
    pub(crate) format_pending: bool,
}

/// The journal is mapped in whole pages.
const PAGE: u64 = kernel::page::PAGE_SIZE as u64;

fn fresh_sb(
    geometry: format::Geometry,
    prod_sectors: u64,
    chunk_sectors: u32,
    store_sectors: u64,
    prod_devt: u32,
    store_devt: u32,
) -> Superblock {
    Superblock {
        generation: 1,
        uuid: [0; 16],
        prod_sectors,
        chunk_sectors,
        store_sectors,
        geometry,
        // Sequence numbers start at 1: an all-zero slot is never live.
        tail_seq: 1,
        tail_pos: 0,
        snap_state: SnapState::None,
        snap_seq: 0,
        snap_id: 0,
        hydrate: false,
        prod_devt,
        store_devt,
        cbt: crate::logic::cbt::Intervals::fresh(1),
    }
}

fn refuse(msg: &'static CStr) -> CtrError {
    CtrError::inval(msg)
}

/// Maps the journal device and checks its superblock (table load).
pub(super) fn open(
    ti: &mut Ctr<'_>,
    journal: DevId,
    prod_devt: u32,
    store_devt: u32,
    prod_sectors: u64,
    chunk_sectors: u32,
    store_sectors: u64,
    features: &crate::logic::args::Features,
) -> core::result::Result<Opened, CtrError> {
    let format_requested = features.format;
    let sectors = ti.dev(journal).map_err(CtrError::nomem)?.sectors();
    let dev_bytes = (sectors << 9) & !(PAGE - 1);
    // The layout a format would write; an existing journal keeps its own
    // (one formatted before changed-block tracking needs less room).
    let planned = format::plan_geometry(dev_bytes, prod_sectors, chunk_sectors);
    let too_small = || refuse(c"Journal device is too small for this target");
    if planned.is_err() && format_requested {
        return Err(too_small());
    }
    let pmem = ti.map_pmem(journal, dev_bytes).map_err(|err| CtrError {
        msg: c"Cannot map the journal device (DAX)",
        err,
    })?;

    let mut slots =
        KVec::from_elem(0u8, 2 * format::SB_SLOT_BYTES, GFP_KERNEL).map_err(CtrError::nomem)?;
    pmem.read(0, &mut slots).map_err(|err| CtrError {
        msg: c"Cannot read the journal",
        err,
    })?;
    let (s0, s1) = slots.split_at(format::SB_SLOT_BYTES);
    let picked = format::pick_superblock(s0, s1);
    let blank = slots.iter().all(|&b| b == 0);
    drop(slots);

    let fresh = |g| fresh_sb(g, prod_sectors, chunk_sectors, store_sectors, prod_devt, store_devt);
    let (sb, slot, format_pending) = match picked {
        _ if format_requested => (fresh(planned.map_err(|_| too_small())?), 0, true),
        // Too small for a new journal: only an existing one may load.
        Err(_) if planned.is_err() => return Err(too_small()),
        Err(FmtError::NotFormatted) if blank => (fresh(planned.map_err(|_| too_small())?), 0, true),
        Err(FmtError::NotFormatted) | Err(FmtError::BadMagic) => {
            return Err(refuse(
                c"Journal device holds foreign data (use the format feature to overwrite it)",
            ))
        }
        Err(FmtError::BadVersion) => {
            return Err(refuse(c"Journal has an unsupported format version"))
        }
        Err(_) => {
            return Err(refuse(
                c"Journal superblock is corrupt (use the format feature to overwrite it)",
            ))
        }
        Ok((sb, slot)) => {
            if sb.prod_devt != prod_devt && !features.relocated {
                return Err(refuse(
                    c"Journal belongs to another production device (use relocated if it was renumbered)",
                ));
            }
            if sb.prod_sectors != prod_sectors {
                return Err(refuse(c"Journal belongs to a target of another length"));
            }
            if sb.chunk_sectors != chunk_sectors {
                return Err(refuse(c"Journal was formatted with another chunk size"));
            }
            if sb.geometry.dev_bytes > dev_bytes {
                return Err(refuse(
                    c"Journal device is smaller than its superblock says",
                ));
            }
            if sb.snap_state != SnapState::None && sb.store_sectors != store_sectors {
                return Err(refuse(
                    c"Journal holds a snapshot: the store device cannot change",
                ));
            }
            if sb.snap_state != SnapState::None
                && sb.store_devt != 0
                && sb.store_devt != store_devt
                && !features.relocated
            {
                return Err(refuse(
                    c"Journal holds a snapshot on another store device (use relocated if it was renumbered)",
                ));
            }
            (sb, slot, false)
        }
    };
    Ok(Opened {
        sb,
        slot,
        format_pending,
    })
}

/// The superblock in force and where it is (the `sb` mutex).
pub(crate) struct SbState {
    pub(super) sb: Superblock,
    slot: usize,
    /// Format the journal at the first preresume (`format` feature, or a
    /// blank journal).
    pub(super) format_pending: bool,
    buf: KBox<[u8; format::SB_SLOT_BYTES]>,
}

impl SbState {
    /// The superblock `opened` found (or will format).
    pub(super) fn new(opened: Opened) -> Result<Self> {
        Ok(Self {
            sb: opened.sb,
            slot: opened.slot,
            format_pending: opened.format_pending,
            buf: KBox::new([0u8; format::SB_SLOT_BYTES], GFP_KERNEL)?,
        })
    }

    /// Commits the superblock with `f` applied: the A/B slot flip of the
    /// commit protocol.  On error the superblock in force is unchanged.
    pub(super) fn commit(&mut self, pmem: &Pmem, f: impl FnOnce(&mut Superblock)) -> Result {
        let mut new = self.sb;
        f(&mut new);
        new.generation += 1;
        let slot = 1 - self.slot;
        write_slot(pmem, &new, slot, &mut self.buf)?;
        self.sb = new;
        self.slot = slot;
        Ok(())
    }

    /// Formats the journal (see the commit protocol).
    pub(super) fn format(&mut self, pmem: &Pmem) -> Result {
        let g = self.sb.geometry;
        pmem.zero(0, 2 * format::SB_SLOT_BYTES)?;
        pmem.fence();
        pmem.zero(g.map_offset as usize, g.map_bytes as usize)?;
        if let Some(off) = g.cbt_slot_offset(0) {
            pmem.zero(off as usize, 2 * g.map_bytes as usize)?;
        }
        pmem.zero(
            g.desc_offset as usize,
            g.desc_count as usize * format::DESC_BYTES,
        )?;
        pmem.fence();
        random_bytes(&mut self.sb.uuid);
        self.sb.generation = 1;
        write_slot(pmem, &self.sb, 0, &mut self.buf)?;
        self.slot = 0;
        self.format_pending = false;
        Ok(())
    }

    /// Makes `sb`, read from `slot`, the superblock in force.
    pub(super) fn reload(&mut self, sb: Superblock, slot: usize) {
        self.sb = sb;
        self.slot = slot;
    }
}

/// Persists `sb` into superblock slot `slot`.
fn write_slot(
    pmem: &Pmem,
    sb: &Superblock,
    slot: usize,
    buf: &mut [u8; format::SB_SLOT_BYTES],
) -> Result {
    sb.encode(buf);
    pmem.write(slot * format::SB_SLOT_BYTES, &buf[..])?;
    pmem.fence();
    Ok(())
}

/// The format version written in superblock slot `slot`.
pub(super) fn slot_version(pmem: &Pmem, slot: usize) -> Result<u32> {
    let mut head = [0u8; 16];
    pmem.read(slot * format::SB_SLOT_BYTES, &mut head)?;
    Ok(format::slot_version(&head))
}

/// Reads both slots and picks the superblock in force and its slot.
pub(super) fn read_superblock(
    pmem: &Pmem,
) -> Result<core::result::Result<(Superblock, usize), FmtError>> {
    let mut slots = KVec::from_elem(0u8, 2 * format::SB_SLOT_BYTES, GFP_KERNEL)?;
    pmem.read(0, &mut slots)?;
    let (s0, s1) = slots.split_at(format::SB_SLOT_BYTES);
    Ok(format::pick_superblock(s0, s1))
}

impl Jsnap {
    /// Commits the superblock with `f` applied (see [`SbState::commit`]).
    pub(super) fn commit_sb(&self, f: impl FnOnce(&mut Superblock)) -> Result {
        let mut sbg = self.sb.lock();
        sbg.commit(self.devs()?.pmem()?, f)
    }
}

/// Writes the words of the validity map with the bits of `chunks`
/// (ascending) set, without setting them in `map` and without a fence: the
/// caller fences, then sets them in core.  One write per run of changed
/// words.
pub(super) fn write_preserved(pmem: &Pmem, g: &format::Geometry, map: &[u8], chunks: &[u64]) -> Result {
    let mut res = Ok(());
    validity::stage_many(map, chunks, |off, words| {
        if let Err(e) = pmem.write(g.map_offset as usize + off, words) {
            res = Err(e);
        }
    })
    .map_err(|_| EINVAL)?;
    res
}

/// Persistently zeroes the validity map.
pub(super) fn zero_validity(pmem: &Pmem, g: &format::Geometry) -> Result {
    pmem.zero(g.map_offset as usize, g.map_bytes as usize)?;
    pmem.fence();
    Ok(())
}

/// Reads the persistent validity map into `map`.
pub(super) fn read_validity(pmem: &Pmem, g: &format::Geometry, map: &mut [u8]) -> Result {
    pmem.read(g.map_offset as usize, map)
}
