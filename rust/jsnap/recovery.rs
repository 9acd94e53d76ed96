// SPDX-License-Identifier: GPL-2.0

//! Loading the journal at table load: check the superblock, format when
//! asked (or when the superblock area is blank), and replay the records
//! that were not yet retired into a fresh changes table.
//!
//! Nothing here writes to pmem unless the journal is being formatted, so a
//! refused table line changes nothing and a second recovery of the same
//! journal rebuilds exactly the same state.

use super::{insert_extent, nomem, Rec, State};
use crate::ffi::bio::BioList;
use crate::ffi::dm::{CtrError, DmDev};
use crate::ffi::pmem::{random_bytes, Pmem};
use crate::logic::extent::Extent;
use crate::logic::format::{self, Descriptor, Error as FmtError, SnapState, Superblock};
use crate::logic::replay::{self, RecordInfo};
use crate::logic::ring::JournalSpace;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

/// A journal ready for use.
pub(crate) struct Loaded {
    pub(crate) pmem: Pmem,
    pub(crate) sb: Superblock,
    pub(crate) slot: usize,
    pub(crate) state: State,
}

const PAGE: u64 = 4096;

/// Persists `sb` into superblock slot `slot`.
pub(crate) fn write_sb(pmem: &Pmem, sb: &Superblock, slot: usize, buf: &mut [u8; format::SB_SLOT_BYTES]) -> Result {
    sb.encode(buf);
    pmem.write(slot * format::SB_SLOT_BYTES, &buf[..])?;
    pmem.fence();
    Ok(())
}

/// Formats the journal (commit protocol step 5 in `logic/format.rs`).
fn format_journal(
    pmem: &Pmem,
    geometry: format::Geometry,
    prod_sectors: u64,
    chunk_sectors: u32,
    store_sectors: u64,
) -> Result<Superblock> {
    pmem.zero(0, 2 * format::SB_SLOT_BYTES)?;
    pmem.fence();
    pmem.zero(geometry.map_offset as usize, geometry.map_bytes as usize)?;
    pmem.zero(geometry.desc_offset as usize, geometry.desc_count as usize * format::DESC_BYTES)?;
    pmem.fence();
    let mut uuid = [0u8; 16];
    random_bytes(&mut uuid);
    let sb = Superblock {
        generation: 1,
        uuid,
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
    };
    let mut buf = KBox::new([0u8; format::SB_SLOT_BYTES], GFP_KERNEL)?;
    write_sb(pmem, &sb, 0, &mut buf)?;
    Ok(sb)
}

fn refuse(msg: &'static CStr) -> CtrError {
    CtrError::inval(msg)
}

/// Maps the journal device and brings it to a consistent in-core state.
pub(crate) fn load(
    journal: &DmDev,
    prod_sectors: u64,
    chunk_sectors: u32,
    store_sectors: u64,
    format_requested: bool,
) -> core::result::Result<Loaded, CtrError> {
    let dev_bytes = (journal.sectors() << 9) & !(PAGE - 1);
    let geometry = format::plan_geometry(dev_bytes, prod_sectors, chunk_sectors)
        .map_err(|_| refuse(c"Journal device is too small for this target"))?;
    let pmem = Pmem::map(journal, dev_bytes)
        .map_err(|err| CtrError { msg: c"Cannot map the journal device (DAX)", err })?;

    let mut slots = KVec::from_elem(0u8, 2 * format::SB_SLOT_BYTES, GFP_KERNEL).map_err(nomem)?;
    pmem.read(0, &mut slots).map_err(|err| CtrError { msg: c"Cannot read the journal", err })?;
    let (s0, s1) = slots.split_at(format::SB_SLOT_BYTES);
    let picked = format::pick_superblock(s0, s1);
    let blank = slots.iter().all(|&b| b == 0);
    drop(slots);

    let (sb, slot) = match picked {
        _ if format_requested => {
            let sb = format_journal(&pmem, geometry, prod_sectors, chunk_sectors, store_sectors)
                .map_err(|err| CtrError { msg: c"Cannot format the journal", err })?;
            pr_info!("dm-jsnap: journal formatted ({} bytes of ring)\n", geometry.ring_sectors << 9);
            (sb, 0)
        }
        Err(FmtError::NotFormatted) if blank => {
            let sb = format_journal(&pmem, geometry, prod_sectors, chunk_sectors, store_sectors)
                .map_err(|err| CtrError { msg: c"Cannot format the journal", err })?;
            pr_info!("dm-jsnap: blank journal formatted\n");
            (sb, 0)
        }
        Err(FmtError::NotFormatted) | Err(FmtError::BadMagic) => {
            return Err(refuse(c"Journal device holds foreign data (use the format feature to overwrite it)"))
        }
        Err(FmtError::BadVersion) => return Err(refuse(c"Journal has an unsupported format version")),
        Err(_) => return Err(refuse(c"Journal superblock is corrupt (use the format feature to overwrite it)")),
        Ok((sb, slot)) => {
            if sb.prod_sectors != prod_sectors {
                return Err(refuse(c"Journal belongs to a target of another length"));
            }
            if sb.chunk_sectors != chunk_sectors {
                return Err(refuse(c"Journal was formatted with another chunk size"));
            }
            if sb.geometry.dev_bytes > dev_bytes {
                return Err(refuse(c"Journal device is smaller than its superblock says"));
            }
            if sb.snap_state != SnapState::None && sb.store_sectors != store_sectors {
                return Err(refuse(c"Journal holds a snapshot: the store device cannot change"));
            }
            (sb, slot)
        }
    };
    let state = replay_records(&pmem, &sb, prod_sectors)?;
    Ok(Loaded { pmem, sb, slot, state })
}

/// Rebuilds the changes table and journal accounting from the records
/// between the superblock's tail and the newest persisted record.
fn replay_records(pmem: &Pmem, sb: &Superblock, prod_sectors: u64) -> core::result::Result<State, CtrError> {
    let g = &sb.geometry;
    let dc = u64::from(g.desc_count);
    let mut infos: KVVec<RecordInfo> = KVVec::with_capacity(g.desc_count as usize, GFP_KERNEL).map_err(nomem)?;
    let mut buf = [0u8; format::DESC_BYTES];
    for i in 0..dc {
        let off = (g.desc_offset + i * format::DESC_BYTES as u64) as usize;
        if pmem.read(off, &mut buf).is_err() {
            break;
        }
        let Ok(d) = Descriptor::decode(&buf, g.ring_sectors) else { continue };
        if d.seq < sb.tail_seq || d.seq >= sb.tail_seq + dc || d.seq % dc != i {
            continue;
        }
        let bytes = u64::from(d.nr_sectors) << 9;
        let crc = pmem.crc(g.ring_byte_offset(d.ring_pos) as usize, bytes as usize);
        if crc.ok() != Some(d.data_crc) {
            continue; // torn: never acknowledged
        }
        if d.sector.checked_add(u64::from(d.nr_sectors)).is_none_or(|e| e > prod_sectors) {
            return Err(refuse(c"Journal record lies outside the target"));
        }
        infos.push(RecordInfo::from_descriptor(&d, u64::from(d.nr_sectors)), GFP_KERNEL).map_err(nomem)?;
    }
    let plan = replay::plan(&mut infos, sb.tail_seq, sb.tail_pos, g.ring_sectors, g.desc_count)
        .map_err(|_| refuse(c"Journal records are inconsistent"))?;
    let space: JournalSpace = plan.space().map_err(|_| refuse(c"Journal records are inconsistent"))?;
    let recs = KVVec::from_elem(Rec::default(), g.desc_count as usize, GFP_KERNEL).map_err(nomem)?;
    let mut st = State {
        table: RBTree::new(),
        extents: 0,
        space,
        recs,
        deferred: BioList::new(),
        drains: 0,
        destaging: false,
        suspended: false,
        stopping: false,
        waiters: 0,
        retire_blocked: false,
        cursor: 0,
        errors: 0,
        degraded: false,
        written_bytes: 0,
        destaged_bytes: 0,
    };
    // Holes (records that never persisted) stay unknown and retire freely.
    for seq in sb.tail_seq..plan.next_seq {
        if let Some(r) = st.rec(seq) {
            *r = Rec { seq, ..Rec::default() };
        }
    }
    for info in infos.iter().take(plan.count) {
        if let Some(r) = st.rec(info.seq) {
            *r = Rec { seq: info.seq, end: info.ring_pos + info.ring_len, refs: 0, pins: 0, persisted: true, known: true };
        }
        let node = RBTreeNodeReservation::new(GFP_KERNEL).map_err(nomem)?;
        let split = RBTreeNodeReservation::new(GFP_KERNEL).map_err(nomem)?;
        let ext = Extent { start: info.sector, len: u64::from(info.nr_sectors), seq: info.seq, ring_pos: info.ring_pos };
        insert_extent(&mut st, ext, node, split);
    }
    if plan.count > 0 {
        pr_info!(
            "dm-jsnap: replayed {} journal records (seq {}..{})\n",
            plan.count,
            sb.tail_seq,
            plan.next_seq
        );
    }
    Ok(st)
}
