// SPDX-License-Identifier: GPL-2.0

//! Loading the journal.
//!
//! * At table load ([`super::metadata::open`], from `ctr`) the superblock
//!   is read and checked, so that a foreign, corrupt or mismatched journal
//!   refuses the table line; nothing is written.
//! * At the first resume ([`load`], from `preresume`: the table it replaces,
//!   if any, is suspended by then and has flushed its state) the journal is
//!   formatted if that was asked for, and the records that were not yet
//!   retired are replayed into a fresh changes table (and snapshot table),
//!   together with the validity map.  Replay writes nothing but idempotent
//!   commits (the format upgrade, a moved snapshot boundary, the cleared
//!   descriptor of a poisoned record), so a second recovery rebuilds
//!   exactly the same state.

use super::changes::{insert_extent, Nodes};
use super::changed::CbtState;
use super::{metadata, BypassState, DestageState, Jsnap, JournalState, Rec, SnapshotState, State, Stats};
use crate::ffi::bio::BioList;
use crate::logic::extent::Extent;
use crate::logic::epoch;
use crate::logic::format::{self, Descriptor, SnapState, Superblock};
use crate::logic::replay::{self, RecordInfo};
use crate::logic::ring::{JournalSpace, Ring};
use crate::logic::validity;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};


/// Table nodes of the pool that only the worker serving deferred writes
/// takes: enough for a few of them (4 nodes each) when GFP_NOWAIT fails.
pub(crate) const WORKER_NODES: usize = 16;

/// Table nodes put in the pool at table load.
const POOL_PREFILL: usize = 1024;

/// Capacity of the node pool: the nodes of a table twice as large as the
/// journal's descriptor slots (a record and a split piece each), so that
/// once the table has been that large no write allocates again.
fn pool_capacity(g: &format::Geometry) -> usize {
    2 * g.desc_count as usize + WORKER_NODES
}

/// The state of a target whose journal is not loaded yet.  Everything that
/// is sized by the geometry is allocated here, at table load, not at the
/// first resume (when the device is suspended).
pub(crate) fn empty_state(sb: &Superblock) -> Result<State> {
    let g = &sb.geometry;
    let mut st = bare_state(sb)?;
    st.journal.recs = KVVec::from_elem(Rec::default(), g.desc_count as usize, GFP_KERNEL)?;
    st.snapshot.validity = KVVec::from_elem(0u8, g.map_bytes as usize, GFP_KERNEL)?;
    st.cbt = CbtState::new(g)?;
    st.journal.pool = new_pool(g)?;
    Ok(st)
}

/// The node pool of a journal of geometry `g`, filled for a start.
fn new_pool(g: &format::Geometry) -> Result<KVVec<RBTreeNodeReservation<u64, Extent>>> {
    let cap = pool_capacity(g);
    let mut pool = KVVec::with_capacity(cap, GFP_KERNEL)?;
    let prefill = WORKER_NODES + crate::fault::pool_prefill(POOL_PREFILL - WORKER_NODES);
    for _ in 0..cap.min(prefill) {
        pool.push(RBTreeNodeReservation::new(GFP_KERNEL)?, GFP_KERNEL)?;
    }
    Ok(pool)
}

fn bare_state(sb: &Superblock) -> Result<State> {
    let g = &sb.geometry;
    let ring = Ring::new(g.ring_sectors, 0, 0).map_err(|_| EINVAL)?;
    let space = JournalSpace::new(ring, g.desc_count, 1, 1).map_err(|_| EINVAL)?;
    Ok(State {
        loaded: false,
        suspended: false,
        stopping: false,
        view_ops: 0,
        journal: JournalState {
            changes: RBTree::new(),
            extents: 0,
            live_sectors: 0,
            snap_table: RBTree::new(),
            snap_extents: 0,
            space,
            recs: KVVec::new(),
            persisted_floor: 0,
            pool: KVVec::new(),
            deferred: BioList::new(),
        },
        snapshot: SnapshotState {
            snap: SnapState::None,
            snap_seq: 0,
            snap_id: 0,
            validity: KVVec::new(),
            nr_chunks: sb.prod_sectors.div_ceil(u64::from(sb.chunk_sectors)),
            preserved: 0,
            views: 0,
            hydrate: false,
            hydrate_cursor: 0,
            preserve_failures: 0,
            dropping: false,
        },
        cbt: CbtState::none(),
        destage: DestageState {
            drains: 0,
            destaging: None,
            outrun_at: None,
            retire_blocked: false,
            kick_armed: false,
            cursor: 0,
            errors: 0,
            degraded: false,
        },
        stats: Stats {
            io_count: 0,
            written_bytes: 0,
            destaged_bytes: 0,
            bypassed_bytes: 0,
            compacted_bytes: 0,
        },
        bypass: BypassState {
            queue: BioList::new(),
            slots: crate::logic::bypass::Slots::new(),
            block: 0,
        },
    })
}

/// Formats (if pending) and replays the journal; called at preresume.
pub(crate) fn load(this: &Jsnap) -> Result {
    if this.state.lock().loaded {
        return Ok(());
    }
    let d = this.devs()?;
    let mut sbg = this.sb.lock();
    let mut old_version = format::SB_VERSION;
    if sbg.format_pending {
        sbg.format(d.pmem()?)?;
        this.set_formatted();
        pr_info!(
            "dm-jsnap: journal formatted ({} bytes of ring)\n",
            this.geometry.ring_sectors << 9
        );
    } else {
        // A table this one replaces may have committed since `ctr` read
        // the superblock: read it again now that it is suspended.
        let (sb, slot) = metadata::read_superblock(d.pmem()?)?.map_err(|e| {
            pr_err!(
                "dm-jsnap: journal superblock unreadable at resume: {:?}\n",
                e
            );
            EINVAL
        })?;
        if sb.uuid != sbg.sb.uuid || sb.geometry != sbg.sb.geometry {
            pr_err!("dm-jsnap: journal changed identity since the table was loaded\n");
            return Err(EINVAL);
        }
        old_version = metadata::slot_version(d.pmem()?, slot)?;
        sbg.reload(sb, slot);
        let store_moved = sb.snap_state != SnapState::None
            && sb.store_devt != 0
            && sb.store_devt != this.store_devt;
        if (sb.prod_devt != this.prod_devt || store_moved) && !this.features.relocated {
            // `ctr` checked an older superblock (e.g. a snapshot was taken
            // on the table this one replaces, after it was loaded).
            pr_err!("dm-jsnap: journal belongs to other devices (use relocated if they were renumbered)\n");
            return Err(EINVAL);
        }
        if sb.snap_state != SnapState::None && sb.store_sectors != this.store_sectors() {
            pr_err!("dm-jsnap: journal holds a snapshot: the store device cannot change\n");
            return Err(EINVAL);
        }
        if sb.prod_devt != this.prod_devt || store_moved {
            // Accepted by `relocated`: record the new device numbers.
            sbg.commit(d.pmem()?, |new| {
                new.prod_devt = this.prod_devt;
                if store_moved {
                    new.store_devt = this.store_devt;
                }
            })?;
            pr_info!("dm-jsnap: journal re-attached to a renumbered production device\n");
        }
    }
    let sb = sbg.sb;
    // Reuse the allocations made at table load.
    let (recs, map, pool, cbt) = {
        let mut g = this.state.lock();
        (
            core::mem::take(&mut g.journal.recs),
            core::mem::take(&mut g.snapshot.validity),
            core::mem::take(&mut g.journal.pool),
            core::mem::replace(&mut g.cbt, CbtState::none()),
        )
    };
    let mut st = replay_records(this, &sb, recs, map, pool, cbt)?;
    let iv = st.cbt.iv.after_replay(st.journal.space.next_seq());
    if st.cbt.enabled && iv != st.cbt.iv {
        // Like the snapshot boundary below: before any new write.
        sbg.commit(d.pmem()?, |new| new.cbt = iv)?;
        st.cbt.iv = iv;
    }
    if st.snapshot.snap != SnapState::None {
        let snap_seq = epoch::snap_seq_after_replay(st.snapshot.snap_seq, st.journal.space.next_seq());
        if snap_seq != st.snapshot.snap_seq {
            // Persisted before any new write can get a sequence number.
            sbg.commit(d.pmem()?, |new| new.snap_seq = snap_seq)?;
            pr_info!(
                "dm-jsnap: snapshot boundary moved from seq {} to {} (records lost at a power cut)\n",
                st.snapshot.snap_seq,
                snap_seq
            );
            st.snapshot.snap_seq = snap_seq;
        }
    } else {
        // Without a snapshot the map must read as zero: a power cut during
        // `drop` may have left it half cleared, and `snapshot` does not
        // clear it (it is O(1)).
        metadata::zero_validity(d.pmem()?, &sb.geometry)?;
    }
    if old_version < format::SB_VERSION {
        // The journal replayed: the same superblock, committed in the
        // current version, before any ordered record is written (an older
        // module must not read those).
        sbg.commit(d.pmem()?, |_| {})?;
        pr_info!(
            "dm-jsnap: journal format upgraded from version {} to {}\n",
            old_version,
            format::SB_VERSION
        );
    }
    drop(sbg);
    st.loaded = true;
    let mut guard = this.state.lock();
    // Keep the counters of the placeholder (nothing ran yet).
    *guard = st;
    Ok(())
}

/// Rebuilds the changes table, the snapshot table and the journal
/// accounting from the records between the superblock's tail and the newest
/// persisted record.
fn replay_records(
    this: &Jsnap,
    sb: &Superblock,
    mut recs: KVVec<Rec>,
    mut map: KVVec<u8>,
    mut pool: KVVec<RBTreeNodeReservation<u64, Extent>>,
    mut cbt: CbtState,
) -> Result<State> {
    let d = this.devs()?;
    let pmem = d.pmem()?;
    let g = &sb.geometry;
    let dc = u64::from(g.desc_count);
    let mut infos: KVVec<RecordInfo> = KVVec::with_capacity(g.desc_count as usize, GFP_KERNEL)?;
    let mut buf = [0u8; format::DESC_BYTES];
    for i in 0..dc {
        let off = (g.desc_offset + i * format::DESC_BYTES as u64) as usize;
        if pmem.read(off, &mut buf).is_err() {
            pr_err!("dm-jsnap: journal descriptor slot {} is on poisoned pmem: skipped\n", i);
            continue;
        }
        let Ok(d) = Descriptor::decode(&buf, g.ring_sectors) else {
            continue;
        };
        if d.seq < sb.tail_seq || d.seq >= sb.tail_seq + dc || d.seq % dc != i {
            continue;
        }
        let bytes = u64::from(d.nr_sectors) << 9;
        // Read with the machine-check-safe copy for every record: an
        // ordered one needs no checksum, but poisoned pmem must be found
        // here, not by destage.
        let crc = if crate::fault::poisoned(d.sector, u64::from(d.nr_sectors)) {
            Err(EIO)
        } else {
            pmem.crc(g.ring_byte_offset(d.ring_pos) as usize, bytes as usize)
        };
        let crc = match crc {
            Err(e) if e == EIO => {
                // Poisoned pmem: the record is lost, say so (every later
                // activation would meet it again if it panicked instead).
                pr_err!(
                    "dm-jsnap: journal record {} (sector {}, {} sectors) is on poisoned pmem: skipped\n",
                    d.seq,
                    d.sector,
                    d.nr_sectors
                );
                // Its descriptor goes: a later write given the same seq
                // must not revive it if that write is torn.
                pmem.zero(off, format::DESC_BYTES)?;
                pmem.fence();
                continue;
            }
            r => r,
        };
        // Ordered: the data was persisted before the descriptor.
        let whole = crc.is_ok_and(|c| !d.data_checked() || c == d.data_crc);
        if !whole {
            continue; // torn: never acknowledged
        }
        if d.sector
            .checked_add(u64::from(d.nr_sectors))
            .is_none_or(|e| e > sb.prod_sectors)
        {
            pr_err!(
                "dm-jsnap: journal record {} lies outside the target\n",
                d.seq
            );
            return Err(EINVAL);
        }
        infos.push(
            RecordInfo::from_descriptor(&d, u64::from(d.nr_sectors)),
            GFP_KERNEL,
        )?;
    }
    let plan = replay::plan(
        &mut infos,
        sb.tail_seq,
        sb.tail_pos,
        g.ring_sectors,
        g.desc_count,
    )
    .map_err(|e| {
        pr_err!("dm-jsnap: journal records are inconsistent ({:?})\n", e);
        EINVAL
    })?;
    let space = plan.space().map_err(|_| EINVAL)?;
    let mut st = bare_state(sb)?;
    st.journal.space = space;
    if recs.len() != g.desc_count as usize || map.len() != g.map_bytes as usize {
        // A load that failed earlier took them (the table is retried).
        recs = KVVec::from_elem(Rec::default(), g.desc_count as usize, GFP_KERNEL)?;
        map = KVVec::from_elem(0u8, g.map_bytes as usize, GFP_KERNEL)?;
    }
    if pool.capacity() == 0 {
        // Likewise.
        pool = new_pool(g)?;
    }
    if cbt.enabled != (g.cbt_offset != 0) {
        cbt = CbtState::new(g)?;
    }
    cbt.load(pmem, sb);
    st.cbt = cbt;
    recs.fill(Rec::default());
    map.fill(0);
    st.journal.recs = recs;
    st.journal.persisted_floor = 0;
    st.snapshot.validity = map;
    st.journal.pool = pool;
    // Without a snapshot the map means nothing (a crash may have left it
    // half zeroed after `drop`); `snapshot` zeroes it again.
    if sb.snap_state != SnapState::None {
        metadata::read_validity(pmem, g, &mut st.snapshot.validity)?;
    }
    st.snapshot.snap = sb.snap_state;
    st.snapshot.snap_seq = sb.snap_seq;
    st.snapshot.hydrate = sb.hydrate;
    st.snapshot.preserved = validity::count(&st.snapshot.validity, st.snapshot.nr_chunks).unwrap_or(0);
    // Holes (records that never persisted) stay unknown and retire freely.
    for seq in sb.tail_seq..plan.next_seq {
        if let Some(r) = st.journal.rec(seq) {
            *r = Rec {
                seq,
                ..Rec::default()
            };
        }
    }
    for info in infos.iter().take(plan.count) {
        if let Some(r) = st.journal.rec(info.seq) {
            *r = Rec {
                persisted: true,
                ..Rec::reserved(info.seq, info.ring_pos + info.ring_len, info.sector, info.nr_sectors)
            };
        }
        let mut nodes = Nodes::empty();
        if !st.journal.top_up(&mut nodes, 4, 0) {
            nodes.fill(4, GFP_KERNEL)?;
        }
        let ext = Extent {
            start: info.sector,
            len: u64::from(info.nr_sectors),
            seq: info.seq,
            ring_pos: info.ring_pos,
        };
        insert_extent(&mut st, ext, &mut nodes, sb.chunk_sectors);
        st.journal.recycle_nodes(&mut nodes);
        st.cbt
            .mark(info.seq, info.sector, u64::from(info.nr_sectors), sb.chunk_sectors);
    }
    if plan.count > 0 {
        pr_info!(
            "dm-jsnap: replayed {} journal records (seq {}..{}), {} extents\n",
            plan.count,
            sb.tail_seq,
            plan.next_seq,
            st.journal.extents
        );
    }
    Ok(st)
}
