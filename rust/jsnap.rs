// SPDX-License-Identifier: GPL-2.0

//! The `jsnap` target: the production volume, fronted by a pmem journal.
//!
//! Table line:
//! `<start> <len> jsnap <production_dev> <journal_dev> <store_dev|-> <chunk_sectors> [<#features> <feature>*]`
//!
//! # Data path
//!
//! * **Write** (on-line primary task, [`Jsnap::journal_write`]): reserve a
//!   sequence number and ring space, insert the extent into the changes table
//!   (marked not yet persistent), copy the data to pmem with non-temporal
//!   stores, write the record descriptor, fence, mark the record persistent
//!   and complete the bio.  The reservation and the table insertion happen in
//!   one critical section, so table order is sequence order, which is also
//!   the order replay applies records in.
//! * **Read**: a prefix of the bio that the changes table maps to the journal
//!   is copied from pmem, a prefix that it does not is remapped to
//!   production; `dm_accept_partial_bio` hands the rest back to `map`.
//! * **Bypass** (feature `bypass`, [`bypass`]): a large write with no
//!   active snapshot, over which no replayable record lies, goes to
//!   production with FUA from the bypass worker instead of the journal.
//! * **Destage** (off-line secondary task, [`destage`]): the kworker writes
//!   batches of table extents from pmem to production — preserving first
//!   the chunks the snapshot still needs ([`snapshot`]) — flushes, drops the
//!   extents it wrote and retires the records nothing refers to: superblock
//!   first, then the ring space.  A second worker journals the writes
//!   deferred while the journal was full.
//!
//! # Files
//!
//! [`target`] is the device-mapper glue (`ctr`, `dtr`, `map`, status,
//! messages, suspend/resume); [`write`] and [`read`] are the two halves of
//! the data path, [`changes`] the changes table they share; [`destage`],
//! [`snapshot`], [`hydrate`] and [`views`] the worker, the snapshot, the
//! copier and what a `jsnap-view` asks of the volume; [`metadata`] owns the
//! superblock and the persistent validity map (and their commit protocol),
//! [`recovery`] replays the journal; [`changed`] tracks the chunks written
//! since the last snapshot and in the interval before it (the `changed`
//! message); [`bypass`] sends large writes around the journal;
//! [`chunklock`] is the chunk-range lock, [`registry`] where views find
//! their volume.
//!
//! # Snapshot
//!
//! `snapshot` records `snap_seq = next_seq`: records below it are the
//! snapshot's, above it are not.  While the snapshot is active, a newer
//! write that supersedes pre-snapshot journal data in a chunk that is not
//! yet preserved moves that data to `snap_table` instead of forgetting it,
//! so the snapshot's content of the chunk stays "production + pre-snapshot
//! journal data" until the chunk is preserved.  See [`snapshot`].
//!
//! # Locking
//!
//! Lock order: registry → `msg` → `batch` → chunk locks (ascending chunk) →
//! `bounce` → `validity_io` → `cbt_io` → `sb` → `state`.  `state` (spinlock) covers the changes table,
//! the journal accounting, the record states, the validity map copy and the
//! deferred bios; nothing allocates, sleeps, fences pmem or copies data
//! under it (but the few 8-byte validity-map words a marking writes to
//! pmem, fenced once it is released).  Device-mapper's `_event_lock`
//! (`dm_table_event`, taken by [`Jsnap`]'s event when the snapshot becomes
//! a full copy or invalid) comes after the chunk locks and is taken with
//! neither `validity_io`, `cbt_io`, `sb` nor `state` held; dm core takes
//! nothing of ours under it.
//!
//! The device guards ([`Jsnap::devs`], and a view's own) are SRCU read
//! sections, not locks: they may be entered anywhere in this order, and
//! held across sleeps and I/O.  What waits for them is the revocation of a
//! target's devices after its `dtr` (`synchronize_srcu`), which holds none of
//! these locks, runs after the target's worker was flushed, and only waits
//! for sections that end by themselves (no section waits for the target
//! being destroyed).

mod bypass;
mod changed;
mod changes;
mod chunklock;
mod compact;
mod destage;
mod hydrate;
mod metadata;
mod read;
pub(crate) mod registry;
mod recovery;
pub(crate) mod snapshot;
mod target;
mod views;
mod write;

use crate::ffi::bio::{Bio, BioList};
use crate::ffi::devices::{DevId, DevSet, Devices};
use crate::ffi::dmdev::DmDev;
use crate::ffi::io::{IoClient, Kcopyd};
use crate::ffi::wq::OwnedQueue;
use crate::logic::epoch::Epoch;
use crate::logic::extent::Extent;
use crate::logic::format::{self, SnapState};
use crate::logic::ring::JournalSpace;
use crate::logic::args::Features;
use changes::Nodes;
use metadata::SbState;
use chunklock::ChunkLocks;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::sync::SpinLockGuard;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{Arc, ArcBorrow, CondVar, Mutex, SpinLock};
use kernel::workqueue::Work;

/// Records [`Jsnap::fold_persisted`] looks at per call.
const FOLD_MAX: u64 = 4096;

/// Largest record: bios are split to this many sectors (1 MiB).
pub(crate) const MAX_RECORD_SECTORS: u64 = 2048;
/// Size of the bounce buffer of snapshot reads of unpreserved chunks and of
/// the store half of mirror writes (chunks are copied by dm-kcopyd).
pub(crate) const BOUNCE_BYTES: usize = 1 << 20;

pub(crate) use crate::logic::retire::Rec;

/// Everything the `state` spinlock protects, by concern.  One lock covers
/// all of it (a write touches the journal, the snapshot epoch and the
/// statistics in one critical section); each part keeps its own invariants.
pub(crate) struct State {
    /// Journal replayed (done at the first preresume).
    loaded: bool,
    /// Suspended (postsuspend..resume) or being destroyed.
    suspended: bool,
    stopping: bool,
    /// View operations in progress (postsuspend waits for them).
    view_ops: u32,
    journal: JournalState,
    snapshot: SnapshotState,
    /// Changed-block tracking (`changed`).
    cbt: changed::CbtState,
    destage: DestageState,
    stats: Stats,
    /// The journal bypass for large writes (`bypass`).
    bypass: BypassState,
}

/// The journal bypass: writes waiting for the bypass worker, the bypassed
/// writes in flight, and `snapshot` waiting for them.
///
/// Invariants: `slots` holds exactly the bypassed writes whose completion
/// was not reaped yet (a completed one's bit is in `Jsnap::bypass_done`
/// until then); no slot is claimed while `block` is nonzero.
pub(crate) struct BypassState {
    queue: BioList,
    slots: crate::logic::bypass::Slots,
    block: u32,
}

/// The journal: its space, its records and the two tables that refer to
/// them.
///
/// Invariants: every extent of `changes` and of `snap_table` lies inside a
/// live record (`space.tail_seq() <= seq < space.next_seq()`), and that
/// record's `refs` counts the extents of both tables that point into it;
/// `extents` and `snap_extents` are the tables' sizes; `changes` holds no
/// two overlapping extents, and neither does `snap_table`; a record is
/// retired only when its `refs` and `pins` are zero.  `pool` never grows
/// past the capacity set at table load.  `deferred` holds bios only while
/// the journal had no room for them or earlier ones were still waiting
/// (arrival order is kept).
pub(crate) struct JournalState {
    /// The changes table: target sector → newest journal extent.
    changes: RBTree<u64, Extent>,
    /// Number of extents in `changes`.
    extents: u64,
    /// Sectors of the extents of both tables: the journal data still
    /// needed (what destage must eventually write out), however much of
    /// the ring dead records occupy.
    live_sectors: u64,
    /// Pre-snapshot journal data superseded by newer writes, kept while a
    /// chunk it touches is not preserved (see `snapshot`).
    snap_table: RBTree<u64, Extent>,
    snap_extents: u64,
    /// Ring space and descriptor slots.
    space: JournalSpace,
    /// Record states, `desc_count` of them.  `Rec::persisted` lags the
    /// writes' marks until the worker folds them (`Jsnap::fold_persisted`):
    /// outside the worker's folded sections, ask `Jsnap::is_persisted`.
    recs: KVVec<Rec>,
    /// Every known record of `tail..persisted_floor` is persistent (a hint
    /// for [`crate::logic::retire::retire_point_from`]; 0 says nothing).
    persisted_floor: u64,
    /// Free table nodes: writes take theirs from here, removed extents
    /// return theirs (up to the capacity set at table load), so a write
    /// allocates only while the table is larger than it ever was.  The
    /// last [`recovery::WORKER_NODES`] are for the worker alone.
    pool: KVVec<RBTreeNodeReservation<u64, Extent>>,
    /// Writes waiting for journal space, in arrival order.
    deferred: BioList,
}

/// The snapshot: its epoch, the in-core validity map and the copier.
///
/// Invariants: `preserved` is the number of bits set in `validity`, which
/// is all zero while `snap` is `None`; `snap_seq` means something only
/// while `snap` is not `None`; `hydrate` is only set while `snap` is
/// `Active`; `views` is zero while `snap` is not `Active` (a view attaches
/// only to an active snapshot, and `drop` refuses while views exist).
pub(crate) struct SnapshotState {
    /// Snapshot state and its first post-snapshot sequence number.
    snap: SnapState,
    snap_seq: u64,
    /// Bumped whenever a snapshot is taken or dropped: a preservation step
    /// marks chunks only for the snapshot it was computed for.
    snap_id: u64,
    /// In-core copy of the validity map (one bit per chunk).
    validity: KVVec<u8>,
    nr_chunks: u64,
    preserved: u64,
    /// Attached `jsnap-view` targets.
    views: u32,
    /// Background copier switched on, and where it looks next.
    hydrate: bool,
    hydrate_cursor: u64,
    /// Consecutive failures to preserve a chunk.
    preserve_failures: u32,
    /// `drop` is committing `none` (the snapshot stays active in core until
    /// the superblock says so).
    dropping: bool,
}

/// The destage worker's state.
///
/// Invariants: `degraded` is set exactly when the last destage or
/// preservation attempt failed (`errors` counts every failure and never
/// decreases); `retire_blocked` is set when retirement stopped at a pinned
/// record, so that unpinning it kicks the worker.
pub(crate) struct DestageState {
    /// Outstanding `drain` requests.
    drains: u32,
    /// Destage is running between the watermarks, and what started it.
    destaging: Option<crate::logic::compact::Trigger>,
    /// When a writer last found the journal full (writes outran
    /// destage), if ever since the table was loaded.
    outrun_at: Option<kernel::time::Instant<kernel::time::Monotonic>>,
    /// Retirement stopped at a pinned record: kick the worker on unpin.
    retire_blocked: bool,
    /// A writer above the high watermark has taken it on itself, since
    /// the worker last looked at the state, to queue the worker once its
    /// write completes: the writers after it need not (see
    /// [`DestageState::arm_kick`]).  That writer kicks after its copy, so
    /// an idle worker starts once that one write is done, not the first
    /// to finish; if it is held up, writers that fill the journal kick
    /// regardless.
    kick_armed: bool,
    /// Next sector the destage cursor looks at.
    cursor: u64,
    /// Destage I/O errors so far, and whether the last attempt failed.
    errors: u64,
    degraded: bool,
}

/// Counters for status and for the copier's throttle (no invariant beyond
/// never decreasing while the table is loaded).
pub(crate) struct Stats {
    /// Bumped by every user bio, for the copier's throttle.
    io_count: u64,
    /// Bytes journaled and destaged since the table was loaded.
    written_bytes: u64,
    destaged_bytes: u64,
    /// Bytes written straight to production (`bypass`).
    bypassed_bytes: u64,
    /// Bytes of live journal data copied to the head of the ring by
    /// compaction (`compact`).
    compacted_bytes: u64,
}

impl DestageState {
    /// Whether a writer that finds the journal above the high watermark
    /// must queue the worker: only the first since the worker last
    /// cleared `kick_armed`.  The worker clears it under the state lock
    /// before each look at the state, and a writer that armed it queues
    /// the worker after leaving the lock, so a run that starts after that
    /// writer's queueing clears it and then sees every write made under
    /// it: no write above the watermark goes unseen, and the writers skip
    /// one state-lock round trip each while the worker is already due.
    pub(crate) fn arm_kick(&mut self) -> bool {
        !core::mem::replace(&mut self.kick_armed, true)
    }
}

impl JournalState {
    /// Tops `nodes` up to `want` from the pool, leaving `floor` in it;
    /// whether `nodes` now holds `want`.
    fn top_up(&mut self, nodes: &mut Nodes, want: usize, floor: usize) -> bool {
        while nodes.count() < want && self.pool.len() > floor {
            match self.pool.pop() {
                Some(n) => nodes.put(n),
                None => break,
            }
        }
        nodes.count() >= want
    }

    /// Returns unused nodes to the pool (a write that must wait must not
    /// drain it).
    fn recycle_nodes(&mut self, nodes: &mut Nodes) {
        while let Some(n) = nodes.take() {
            self.recycle(n);
        }
    }

    /// Puts a removed table node back into the pool if it has room
    /// (never allocates), or frees it.
    fn recycle(&mut self, node: RBTreeNodeReservation<u64, Extent>) {
        if self.pool.len() < self.pool.capacity() {
            let _ = self.pool.push(node, GFP_NOWAIT);
        }
    }

    /// Removes the snapshot-table piece `x`: its node goes back to the
    /// reserve and its record loses the reference.
    fn remove_snap_piece(&mut self, x: &Extent) {
        if let Some(node) = self.snap_table.remove_node(&x.start) {
            self.recycle(node.into_reservation());
            self.snap_extents = self.snap_extents.saturating_sub(1);
            self.live_sectors = self.live_sectors.saturating_sub(x.len);
            if let Some(r) = self.rec(x.seq) {
                r.refs = r.refs.saturating_sub(1);
            }
        }
    }

    fn rec_ref(&self, seq: u64) -> Option<&Rec> {
        let n = self.recs.len() as u64;
        if n == 0 {
            return None;
        }
        self.recs.get((seq % n) as usize).filter(|r| r.seq == seq)
    }

    fn rec(&mut self, seq: u64) -> Option<&mut Rec> {
        let n = self.recs.len() as u64;
        if n == 0 {
            return None;
        }
        self.recs.get_mut((seq % n) as usize)
    }

    /// How full the journal is: in use, and live (the extents of both
    /// tables), each the fuller of ring sectors and descriptor slots.
    fn fill(&self) -> crate::logic::compact::Fill {
        let size = self.space.ring().size().max(1);
        let slots = u64::from(self.space.desc_count()).max(1);
        let pct = |sectors: u64, descs: u64| (sectors * 100 / size).max(descs * 100 / slots);
        let used_pct = pct(self.space.ring().used(), self.space.pending());
        // Pieces stand for descriptor slots, but carving can leave more
        // pieces than records: live data is never more than what is used.
        let live_pct = pct(self.live_sectors, self.extents + self.snap_extents).min(used_pct);
        crate::logic::compact::Fill { used_pct, live_pct }
    }
}

impl SnapshotState {
    /// Whether chunk `c` holds its snapshot copy in the store.
    pub(crate) fn is_preserved(&self, c: u64) -> bool {
        crate::logic::validity::test(&self.validity, c).unwrap_or(false)
    }

    /// The snapshot epoch in force.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch {
            active: self.snap == SnapState::Active,
            snap_seq: self.snap_seq,
        }
    }
}

/// One `jsnap` target instance.
#[pin_data]
pub(crate) struct Jsnap {
    /// The bypass worker's queue (with `bypass` only).  The queues are
    /// destroyed first (fields drop in order): no work runs afterwards.
    bypass_wq: Option<OwnedQueue>,
    /// The queue of the worker that journals deferred writes (`serve`),
    /// apart from the destage worker so that production keeps writing
    /// while they are copied into pmem.
    serve_wq: OwnedQueue,
    wq: OwnedQueue,
    /// Where views find this instance; it leaves at `dtr`.
    registry: Arc<registry::Registry>,
    io: IoClient,
    kc: Kcopyd,
    /// Production, journal (mapped as pmem) and store; revoked by the
    /// registration after `dtr` (a `jsnap-view` may keep the rest of the
    /// state alive longer).
    devs: Arc<DevSet>,
    prod_dev: DevId,
    store_dev: Option<DevId>,
    /// Whether a store device was given.
    pub(crate) has_store: bool,
    /// Device number of our mapped device (for `jsnap-view`).
    pub(crate) devt: u32,
    /// Device number of the production device (journal identity).
    prod_devt: u32,
    /// Device number of the store (0: none), recorded with a snapshot.
    pub(crate) store_devt: u32,
    begin: u64,
    pub(crate) len: u64,
    pub(crate) chunk_sectors: u32,
    features: Features,
    geometry: format::Geometry,
    /// `dmsetup table`: devices as `major:minor` (as stock targets print them), the
    /// other arguments as loaded; `format` is dropped from the features
    /// once the journal has been formatted (`table_formatted`).
    table: KVec<u8>,
    table_formatted: KVec<u8>,
    formatted: AtomicBool,
    /// Largest bio this target accepts (also the limit of mirror writes).
    pub(crate) max_io: u64,
    #[pin]
    state: SpinLock<State>,
    /// Readers waiting for a record to persist, `drain` waiting for destage.
    #[pin]
    cond: CondVar,
    /// Threads sleeping on `cond` (counted under `state`; see
    /// [`Jsnap::wait_persisted`]).
    waiters: AtomicU32,
    /// Per descriptor slot, the sequence number of the last record written
    /// to it whose write is persistent (`u64::MAX`: none yet): the write
    /// path marks its record here without taking `state` again; the worker
    /// folds the marks into `Rec::persisted` ([`Jsnap::fold_persisted`]).
    done: KVVec<AtomicU64>,
    #[pin]
    sb: Mutex<SbState>,
    /// Held by the worker over a destage batch, and briefly by a view's
    /// constructor ([`Jsnap::wait_batch`]), so that no batch collected
    /// before the snapshot (it took no chunk locks) still runs once the
    /// view reads or preserves.
    #[pin]
    batch: Mutex<()>,
    /// Serialises the snapshot messages (`snapshot`, `drop`, `hydrate`).
    #[pin]
    msg: Mutex<()>,
    #[pin]
    locks: ChunkLocks,
    /// Bounce buffer for chunk copies.
    #[pin]
    bounce: Mutex<KVVec<u8>>,
    /// Serialises the writers of the validity map on pmem (marking chunks
    /// preserved, zeroing it): a word written and fenced by one is never
    /// overwritten meanwhile by another's older copy of it.
    #[pin]
    validity_io: Mutex<()>,
    /// Serialises writes to the changed-block maps' pmem slots with the
    /// commits that depend on them (see `changed`); a page buffer.
    #[pin]
    cbt_io: Mutex<KBox<[u8; crate::logic::cbt::PAGE_BYTES]>>,
    #[pin]
    pub(crate) work: Work<Jsnap>,
    /// Completion bits of bypassed writes (`bypass::tag_bit`), set by
    /// `end_io`, reaped under the state lock.
    bypass_done: core::sync::atomic::AtomicU32,
    #[pin]
    pub(crate) bypass_work: Work<Jsnap, 1>,
    #[pin]
    pub(crate) serve_work: Work<Jsnap, 2>,
}

kernel::impl_has_work! {
    impl HasWork<Jsnap> for Jsnap { self.work }
    impl HasWork<Jsnap, 1> for Jsnap { self.bypass_work }
    impl HasWork<Jsnap, 2> for Jsnap { self.serve_work }
}

/// A view operation in progress (see [`Jsnap::view_op`]); ends on drop.
pub(crate) struct ViewOp<'a> {
    j: &'a Jsnap,
}

impl Drop for ViewOp<'_> {
    fn drop(&mut self) {
        let mut st = self.j.state.lock();
        st.view_ops = st.view_ops.saturating_sub(1);
        let wake = st.suspended && st.view_ops == 0;
        drop(st);
        if wake {
            self.j.cond.notify_all();
        }
    }
}

impl Jsnap {
    /// The target-relative first sector of `bio` (`n` sectors long), if it
    /// lies inside the target.
    fn target_sector(&self, bio: &Bio, n: u64) -> Option<u64> {
        bio.sector()
            .checked_sub(self.begin)
            .filter(|s| s.checked_add(n).is_some_and(|e| e <= self.len))
    }

    /// The devices, unless the target was destroyed.
    pub(crate) fn devs(&self) -> Result<Devices<'_>> {
        self.devs.access()
    }

    /// The production device, among `d`.
    pub(crate) fn prod<'d>(&self, d: &'d Devices<'_>) -> Result<&'d DmDev> {
        d.dev(self.prod_dev)
    }

    /// The store device, among `d` (`EINVAL`: the target has none).
    pub(crate) fn store<'d>(&self, d: &'d Devices<'_>) -> Result<&'d DmDev> {
        d.dev(self.store_dev.ok_or(EINVAL)?)
    }

    fn ring_off(&self, pos: u64) -> usize {
        self.geometry.ring_byte_offset(pos) as usize
    }

    /// Queues the destage worker (no-op while it is already queued).
    /// Kicks the worker if retirement stopped at a record that is no
    /// longer pinned (after snapshot reads outside the worker).
    pub(crate) fn kick_retire(this: ArcBorrow<'_, Self>) {
        if this.state.lock().destage.retire_blocked {
            Self::kick(this);
        }
    }

    pub(crate) fn kick(this: ArcBorrow<'_, Self>) {
        let arc: Arc<Self> = this.into();
        Self::queue_unless_stopping::<0>(&arc, &arc.wq, |_| true);
    }

    /// Queues the worker that journals deferred writes, if any wait (no-op
    /// while it is already queued).
    pub(crate) fn kick_serve(this: &Arc<Self>) {
        Self::queue_unless_stopping::<2>(this, &this.serve_wq, |st| !st.journal.deferred.is_empty());
    }

    /// Queues work item `ID` of this instance on `q` if `want` holds of the
    /// state, under the state lock and never once stopping: `dtr` sets
    /// `stopping` under it and then flushes the queues, so nothing is
    /// queued after those flushes (a view may hold the last reference, and
    /// a work item that dropped it would destroy its own queue).
    fn queue_unless_stopping<const ID: u64>(this: &Arc<Self>, q: &OwnedQueue, want: impl FnOnce(&State) -> bool)
    where
        Arc<Self>: kernel::workqueue::RawWorkItem<ID> + Send + 'static,
    {
        let st = this.state.lock();
        if !st.stopping && want(&st) {
            let _ = q.enqueue::<_, ID>(this.clone());
        }
        drop(st);
    }

    /// Starts an operation of a view on this volume's devices, waiting
    /// while the volume is suspended; `None` once it is being removed.
    pub(crate) fn view_op(&self) -> Option<ViewOp<'_>> {
        let mut st = self.state.lock();
        loop {
            if st.stopping {
                return None;
            }
            if !st.suspended {
                break;
            }
            self.sleep(&mut st);
        }
        st.view_ops += 1;
        Some(ViewOp { j: self })
    }

    /// Whether the volume is suspended (views then defer all I/O to their
    /// worker, which waits for the resume).
    pub(crate) fn is_suspended(&self) -> bool {
        self.state.lock().suspended
    }

    /// The store length recorded in the superblock (0: no store).
    pub(crate) fn store_sectors(&self) -> u64 {
        if self.has_store {
            self.len
        } else {
            0
        }
    }

    /// Waits until no destage batch is in flight.
    pub(crate) fn wait_batch(&self) {
        drop(self.batch.lock());
    }

    /// Sleeps on `cond` (releasing `state`), counted in `waiters`: a
    /// write wakes the sleepers only when there are some.
    pub(crate) fn sleep(&self, st: &mut SpinLockGuard<'_, State>) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        self.cond.wait(st);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// [`Jsnap::sleep`], interruptible; returns whether a signal is pending.
    pub(crate) fn sleep_interruptible(&self, st: &mut SpinLockGuard<'_, State>) -> bool {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let sig = self.cond.wait_interruptible(st);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        sig
    }

    /// The word of `done` for record `seq` (`None` only without slots).
    fn done_slot(&self, seq: u64) -> Option<&AtomicU64> {
        let n = self.done.len() as u64;
        self.done.get((seq % n.max(1)) as usize)
    }

    /// Whether the write of record `seq` marked it persistent.
    fn marked(&self, seq: u64) -> bool {
        self.done_slot(seq).is_some_and(|m| m.load(Ordering::SeqCst) == seq)
    }

    /// Whether record `seq` is persistent (its record says so, or its write
    /// marked it since the worker last looked).
    pub(crate) fn is_persisted(&self, st: &State, seq: u64) -> bool {
        st.journal.rec_ref(seq).is_some_and(|r| r.persisted) || self.marked(seq)
    }

    /// The write path, once record `seq` is on pmem (data and descriptor
    /// fenced): marks it persistent without taking `state`, and wakes the
    /// threads waiting for it.
    pub(crate) fn mark_persisted(&self, seq: u64) {
        match self.done_slot(seq) {
            // (`Release` would order the data; sequentially consistent
            // also orders the store before the look at `waiters` below,
            // against the waiter's announce-then-look.)
            Some(m) => m.store(seq, Ordering::SeqCst),
            None => {
                if let Some(r) = self.state.lock().journal.rec(seq) {
                    r.persisted = true;
                }
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // A waiter announced itself and looked at the mark under
            // `state`, and is queued on `cond` before it releases it:
            // taking the lock orders this wake-up after its look.
            drop(self.state.lock());
            self.cond.notify_all();
        }
    }

    /// Sleeps until a wake-up, unless record `seq` is persistent by now
    /// (the caller saw it was not, under `st`, and looks again after).
    pub(crate) fn wait_persisted(&self, st: &mut SpinLockGuard<'_, State>, seq: u64) {
        // Announce, then look: the write stores its mark, then looks for
        // waiters; either it sees this one, or this one sees the mark.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        if !self.is_persisted(st, seq) {
            self.cond.wait(st);
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Folds the writes' marks into `Rec::persisted` for the records from
    /// `persisted_floor` (or the tail) on, and moves the floor to the first
    /// record still not persistent.  Called by the worker before it reads
    /// `Rec::persisted` (collect, retire).
    pub(crate) fn fold_persisted(&self, st: &mut State) {
        let j = &mut st.journal;
        let (tail, next) = (j.space.tail_seq(), j.space.next_seq());
        let n = j.recs.len() as u64;
        if n == 0 {
            return;
        }
        let mut first = None;
        let from = tail.max(j.persisted_floor);
        // Bounded per call (the lock is held): after a long idle stretch
        // the worker folds the backlog over a few calls, tail first.
        let end = next.min(from.saturating_add(FOLD_MAX));
        for s in from..end {
            let Some(r) = j.recs.get_mut((s % n) as usize).filter(|r| r.seq == s) else {
                continue;
            };
            if r.known && !r.persisted {
                if self.marked(s) {
                    r.persisted = true;
                } else if first.is_none() {
                    first = Some(s);
                }
            }
        }
        j.persisted_floor = first.unwrap_or(end);
    }

    /// Number of views attached.
    pub(crate) fn views(&self) -> u32 {
        self.state.lock().snapshot.views
    }

    /// Whether the snapshot is active and the journal loaded (for views).
    pub(crate) fn snapshot_active(&self) -> bool {
        let st = self.state.lock();
        st.loaded && st.snapshot.snap == SnapState::Active
    }
}
