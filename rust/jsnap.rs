// SPDX-License-Identifier: GPL-2.0

//! The `jsnap` target: the production volume, fronted by a pmem journal.
//!
//! Table line (DESIGN.md §2.1):
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
//! * **Destage** (off-line secondary task, [`destage`]): the kworker writes
//!   batches of table extents from pmem to production — preserving first
//!   the chunks the snapshot still needs ([`snapshot`]) — flushes, drops the
//!   extents it wrote and retires the records nothing refers to: superblock
//!   first, then the ring space.
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
//! Lock order: `batch` → chunk locks (ascending chunk) → `bounce` → `sb` →
//! `state`.  `state` (spinlock) covers the changes table, the journal
//! accounting, the record states, the validity map copy and the deferred
//! bios; nothing allocates, sleeps or copies data under it.

mod chunklock;
mod destage;
mod recovery;
pub(crate) mod snapshot;

use crate::ffi::bio::{Bio, BioKind, BioList};
use crate::ffi::dm::{
    Ctr, CtrError, DevNum, DeviceIter, DmDev, Limits, Mapped, Out, StatusType, Target,
};
use crate::ffi::io::{IoClient, Kcopyd};
use crate::ffi::pmem::Pmem;
use crate::ffi::registry;
use crate::ffi::revocable::{Access, SleepRevocable};
use crate::ffi::wq::OwnedQueue;
use crate::logic::epoch::Epoch;
use crate::logic::extent::{self, Extent, Which};
use crate::logic::format::{self, Descriptor, SnapState, Superblock};
use crate::logic::ring::{JournalSpace, RingError};
use crate::logic::table::{self, Features};
use chunklock::ChunkLocks;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::alloc::Flags;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{Arc, ArcBorrow, CondVar, Mutex, SpinLock};
use kernel::workqueue::{Work, WorkItem};
use kernel::{new_condvar, new_mutex, new_spinlock, new_work};

/// Longest table line kept for `dmsetup table`.
const MAX_TABLE: usize = 1024;
/// Largest record: bios are split to this many sectors (1 MiB).
pub(crate) const MAX_RECORD_SECTORS: u64 = 2048;
/// Size of the bounce buffer of snapshot reads of unpreserved chunks and of
/// the store half of mirror writes (chunks are copied by dm-kcopyd).
pub(crate) const BOUNCE_BYTES: usize = 1 << 20;

pub(crate) use crate::logic::retire::Rec;

/// Everything the `state` spinlock protects.
pub(crate) struct State {
    /// Journal replayed (done at the first preresume).
    loaded: bool,
    /// The changes table: target sector → newest journal extent.
    table: RBTree<u64, Extent>,
    /// Number of extents in `table`.
    extents: u64,
    /// Pre-snapshot journal data superseded by newer writes, kept while a
    /// chunk it touches is not preserved (see `snapshot`).
    snap_table: RBTree<u64, Extent>,
    snap_extents: u64,
    /// Ring space and descriptor slots.
    space: JournalSpace,
    /// Record states, `desc_count` of them.
    recs: KVVec<Rec>,
    /// Table nodes in reserve for the worker (refilled from removed nodes).
    spare: KVec<RBTreeNodeReservation<u64, Extent>>,
    /// Writes waiting for journal space, in arrival order.
    deferred: BioList,
    /// Snapshot state and its first post-snapshot sequence number.
    snap: SnapState,
    snap_seq: u64,
    /// Bumped whenever a snapshot is taken or dropped: a preservation step
    /// marks chunks only for the snapshot it was computed for.
    snap_id: u64,
    /// In-core copy of the validity map (one bit per chunk).
    map: KVVec<u8>,
    nr_chunks: u64,
    preserved: u64,
    /// Attached `jsnap-view` targets.
    views: u32,
    /// Background copier switched on, and where it looks next.
    hydrate: bool,
    hydrate_cursor: u64,
    /// Bumped by every user bio, for the copier's throttle.
    io_count: u64,
    /// Consecutive failures to preserve a chunk.
    preserve_failures: u32,
    /// View operations in progress (postsuspend waits for them).
    view_ops: u32,
    /// Outstanding `drain` requests.
    drains: u32,
    /// Destage is running between the watermarks.
    destaging: bool,
    /// Suspended (postsuspend..resume) or being destroyed.
    suspended: bool,
    stopping: bool,
    /// Threads sleeping on `cond`.
    waiters: u32,
    /// Retirement stopped at a pinned record: kick the worker on unpin.
    retire_blocked: bool,
    /// Next sector the destage cursor looks at.
    cursor: u64,
    /// Destage I/O errors so far, and whether the last attempt failed.
    errors: u64,
    degraded: bool,
    /// Bytes journaled and destaged since the table was loaded.
    written_bytes: u64,
    destaged_bytes: u64,
}

impl State {
    /// `n` (at most 4) nodes from the reserve, if it holds that many.
    fn take_spare(&mut self, n: usize) -> Option<Nodes> {
        if self.spare.len() < n {
            return None;
        }
        let mut nodes = Nodes {
            list: [None, None, None, None],
        };
        for slot in nodes.list.iter_mut().take(n) {
            *slot = self.spare.pop();
        }
        Some(nodes)
    }

    /// Returns unused reservations to the reserve (a write that must wait
    /// must not drain it).
    fn recycle_nodes(&mut self, nodes: &mut Nodes) {
        while let Some(n) = nodes.take() {
            self.recycle(n);
        }
    }

    /// Puts a removed table node back into the reserve if it has room
    /// (never allocates), or frees it.
    fn recycle(&mut self, node: RBTreeNodeReservation<u64, Extent>) {
        if self.spare.len() < self.spare.capacity() {
            let _ = self.spare.push(node, GFP_NOWAIT);
        }
    }

    /// Removes the snapshot-table piece `x`: its node goes back to the
    /// reserve and its record loses the reference.
    fn remove_snap_piece(&mut self, x: &Extent) {
        if let Some(node) = self.snap_table.remove_node(&x.start) {
            self.recycle(node.into_reservation());
            self.snap_extents = self.snap_extents.saturating_sub(1);
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

    /// Journal use in percent: the fuller of ring and descriptor slots.
    fn usage_pct(&self) -> u64 {
        let ring = self.space.ring();
        let a = ring.used() * 100 / ring.size().max(1);
        let b = self.space.pending() * 100 / u64::from(self.space.desc_count()).max(1);
        a.max(b)
    }

    /// Whether chunk `c` holds its snapshot copy in the store.
    pub(crate) fn is_preserved(&self, c: u64) -> bool {
        crate::logic::validity::test(&self.map, c).unwrap_or(false)
    }

    /// The snapshot epoch in force.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch {
            active: self.snap == SnapState::Active,
            snap_seq: self.snap_seq,
        }
    }
}

/// Table-node reservations made before taking `state`.
pub(crate) struct Nodes {
    list: [Option<RBTreeNodeReservation<u64, Extent>>; 4],
}

impl Nodes {
    /// Reserves `n` nodes (at most 4).
    pub(crate) fn new(n: usize, gfp: Flags) -> Result<Self> {
        let mut list = [None, None, None, None];
        for slot in list.iter_mut().take(n) {
            *slot = Some(RBTreeNodeReservation::new(gfp)?);
        }
        Ok(Self { list })
    }

    fn count(&self) -> usize {
        self.list.iter().filter(|n| n.is_some()).count()
    }

    fn take(&mut self) -> Option<RBTreeNodeReservation<u64, Extent>> {
        self.list.iter_mut().find_map(Option::take)
    }
}

/// Superblock commits (the `sb` mutex).
pub(crate) struct SbState {
    sb: Superblock,
    slot: usize,
    /// Format the journal at the first preresume (`format` feature, or a
    /// blank journal).
    format_pending: bool,
    buf: KBox<[u8; format::SB_SLOT_BYTES]>,
}

/// The devices of a target and the pmem mapping; revoked at `dtr` (a
/// `jsnap-view` may keep the rest of the state alive longer).
pub(crate) struct Devs {
    /// Declared first: unmapped before the journal device is put.
    pub(crate) pmem: Pmem,
    pub(crate) prod: DmDev,
    /// Held for as long as `pmem` maps it.
    #[expect(dead_code, reason = "only held")]
    pub(crate) journal: DmDev,
    pub(crate) store: Option<DmDev>,
}

/// One `jsnap` target instance.
#[pin_data]
pub(crate) struct Jsnap {
    /// Destroyed first (fields drop in order): no work runs afterwards.
    wq: OwnedQueue,
    io: IoClient,
    kc: Kcopyd,
    #[pin]
    devs: SleepRevocable<Devs>,
    /// Whether a store device was given.
    pub(crate) has_store: bool,
    /// A snapshot is (or may be) active: writes reserve more table nodes.
    pub(crate) snap_hint: AtomicBool,
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
    /// `dmsetup table` (DESIGN.md §2.1): devices as `major:minor`, the
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
    #[pin]
    sb: Mutex<SbState>,
    /// Held by the worker over a destage batch, by `drop`, and briefly by
    /// a view attaching (so that no batch collected before the snapshot
    /// still runs without chunk locks).
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
    #[pin]
    pub(crate) work: Work<Jsnap>,
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

/// What became of a write offered to the journal.
pub(crate) enum Journaled {
    Done,
    /// No journal space (or no memory for table nodes): try again later.
    Again(Bio),
}

/// Appends formatted text to a byte vector (allocation failures drop the
/// text; the caller checks the length).
pub(crate) struct LineWriter<'a>(pub(crate) &'a mut KVec<u8>);

impl core::fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| core::fmt::Error)
    }
}

/// Converts the C arguments to `&str`, refusing non-UTF-8 and more than
/// 64 arguments (the callbacks refuse more before; never parse a line
/// truncated, which would give a misleading reason).
pub(crate) fn str_args<'a>(
    args: &[&'a CStr],
    out: &mut [&'a str; 64],
) -> core::result::Result<usize, CtrError> {
    if args.len() > out.len() {
        return Err(CtrError::inval(c"Too many arguments"));
    }
    for (slot, a) in out.iter_mut().zip(args) {
        *slot = a
            .to_str()
            .map_err(|_| CtrError::inval(c"Arguments must be valid UTF-8"))?;
    }
    Ok(args.len().min(64))
}

pub(crate) fn nomem(_: impl core::fmt::Debug) -> CtrError {
    CtrError {
        msg: c"Out of memory",
        err: ENOMEM,
    }
}

/// The first extent of `table` overlapping `start..end`, if any.
pub(crate) fn first_overlap(table: &RBTree<u64, Extent>, start: u64, end: u64) -> Option<Extent> {
    let (prev, next) = match table.cursor_lower_bound(&start) {
        Some(c) => (c.peek_prev().map(|(_, v)| *v), Some(*c.current().1)),
        None => (table.cursor_back().map(|c| *c.current().1), None),
    };
    if let Some(p) = prev.filter(|p| p.end() > start) {
        return Some(p);
    }
    next.filter(|n| n.start < end)
}

/// The changes table and the snapshot table of `state`, with the nodes
/// reserved for one write, as [`extent::insert`] changes them.
struct Tables<'a> {
    st: &'a mut State,
    nodes: &'a mut Nodes,
    /// The node of the extent removed last: used first, else recycled.
    freed: Option<RBTreeNodeReservation<u64, Extent>>,
}

impl extent::Tables for Tables<'_> {
    fn first_overlap(&self, start: u64, end: u64) -> Option<Extent> {
        first_overlap(&self.st.table, start, end)
    }

    fn remove(&mut self, start: u64) -> bool {
        let Some(n) = self.st.table.remove_node(&start) else {
            return false;
        };
        self.st.extents = self.st.extents.saturating_sub(1);
        if let Some(old) = self.freed.replace(n.into_reservation()) {
            self.st.recycle(old);
        }
        true
    }

    fn insert(&mut self, which: Which, ext: Extent) -> bool {
        let Some(r) = self.freed.take().or_else(|| self.nodes.take()) else {
            return false;
        };
        match which {
            Which::Changes => {
                self.st.table.insert(r.into_node(ext.start, ext));
                self.st.extents += 1;
            }
            Which::Snap => {
                self.st.snap_table.insert(r.into_node(ext.start, ext));
                self.st.snap_extents += 1;
            }
        }
        true
    }

    fn rec(&mut self, seq: u64) -> Option<&mut Rec> {
        self.st.rec(seq)
    }

    fn preserved(&self, c: u64) -> bool {
        self.st.is_preserved(c)
    }
}

/// Inserts `ext` (the newest record) into the changes table, carving the
/// older extents it overlaps; pre-snapshot data that the snapshot still
/// needs moves to `snap_table` ([`extent::insert`] decides, with the
/// reference counts).  Needs up to [`extent::nodes_needed`] nodes.
fn insert_extent(st: &mut State, ext: Extent, nodes: &mut Nodes, chunk_sectors: u32) {
    let epoch = st.epoch();
    let mut t = Tables {
        st,
        nodes,
        freed: None,
    };
    extent::insert(&mut t, ext, epoch, chunk_sectors);
    if let Some(n) = t.freed.take() {
        t.st.recycle(n);
    }
}

impl Jsnap {
    fn open_devices(
        ti: &mut Ctr<'_>,
        args: &[&CStr],
        store_none: bool,
    ) -> core::result::Result<(DmDev, DmDev, Option<DmDev>), CtrError> {
        let len = ti.len();
        let prod = ti.get_device(args[0], true).map_err(|err| CtrError {
            msg: c"Error opening production device",
            err,
        })?;
        if prod.sectors() < len {
            return Err(CtrError::inval(
                c"Production device is smaller than the target length",
            ));
        }
        let journal = ti.get_device(args[1], true).map_err(|err| CtrError {
            msg: c"Error opening journal device",
            err,
        })?;
        if journal.devt() == prod.devt() {
            return Err(CtrError::inval(
                c"Production and journal must be different devices",
            ));
        }
        if !journal.has_dax() {
            return Err(CtrError::inval(c"Journal device does not support DAX"));
        }
        if !journal.dax_synchronous() {
            return Err(CtrError {
                msg: c"Asynchronous DAX (e.g. virtio-pmem) cannot hold the journal: its stores are not durable when flushed",
                err: EOPNOTSUPP,
            });
        }
        if !crate::ffi::dm::has_pmem_api() {
            return Err(CtrError {
                msg: c"This kernel has no pmem API (CONFIG_ARCH_HAS_PMEM_API): journal writes cannot be made durable",
                err: EOPNOTSUPP,
            });
        }
        let store = if store_none {
            None
        } else {
            let store = ti.get_device(args[2], true).map_err(|err| CtrError {
                msg: c"Error opening store device",
                err,
            })?;
            if store.devt() == prod.devt() || store.devt() == journal.devt() {
                return Err(CtrError::inval(
                    c"Store must differ from production and journal",
                ));
            }
            if store.sectors() < len {
                return Err(CtrError::inval(
                    c"Store device is smaller than the target length",
                ));
            }
            Some(store)
        };
        Ok((prod, journal, store))
    }

    /// The `dmsetup table` lines: as loaded, and without `format` (used
    /// once the journal is formatted).  Device arguments as `major:minor`.
    fn table_lines(
        prod: &DmDev,
        journal: &DmDev,
        store: Option<&DmDev>,
        s: &[&str],
    ) -> core::result::Result<(KVec<u8>, KVec<u8>), CtrError> {
        let mut lines = (KVec::new(), KVec::new());
        for (line, keep_format) in [(&mut lines.0, true), (&mut lines.1, false)] {
            let mut w = LineWriter(line);
            let store = store.map(|st| st.devt());
            let feats = s.get(5..).unwrap_or(&[]);
            let keep = |f: &&&str| keep_format || **f != "format";
            let n = feats.iter().filter(keep).count();
            (|| -> core::fmt::Result {
                write!(w, "{} {} ", DevNum(prod.devt()), DevNum(journal.devt()))?;
                match store {
                    Some(d) => write!(w, "{}", DevNum(d))?,
                    None => write!(w, "-")?,
                }
                write!(w, " {}", s.get(3).copied().unwrap_or(""))?;
                if n > 0 {
                    write!(w, " {n}")?;
                    for f in feats.iter().filter(keep) {
                        write!(w, " {f}")?;
                    }
                }
                Ok(())
            })()
            .map_err(nomem)?;
            if w.0.len() > MAX_TABLE {
                return Err(CtrError::inval(c"Table line too long"));
            }
        }
        Ok(lines)
    }

    /// Marks the journal formatted: `dmsetup table` stops echoing `format`.
    pub(crate) fn set_formatted(&self) {
        self.formatted.store(true, Ordering::Relaxed);
    }

    /// The target-relative first sector of `bio` (`n` sectors long), if it
    /// lies inside the target.
    fn target_sector(&self, bio: &Bio, n: u64) -> Option<u64> {
        bio.sector()
            .checked_sub(self.begin)
            .filter(|s| s.checked_add(n).is_some_and(|e| e <= self.len))
    }

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

    /// The devices, unless the target was destroyed.
    pub(crate) fn devs(&self) -> Result<Access<'_, Devs>> {
        self.devs.access().ok_or(ENODEV)
    }

    fn ring_off(&self, pos: u64) -> usize {
        self.geometry.ring_byte_offset(pos) as usize
    }

    /// Queues the destage worker (no-op while it is already queued).
    /// Kicks the worker if retirement stopped at a record that is no
    /// longer pinned (after snapshot reads outside the worker).
    pub(crate) fn kick_retire(this: ArcBorrow<'_, Self>) {
        if this.state.lock().retire_blocked {
            Self::kick(this);
        }
    }

    pub(crate) fn kick(this: ArcBorrow<'_, Self>) {
        let arc: Arc<Self> = this.into();
        let _ = arc.wq.enqueue(arc.clone());
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
            .copy_to_pmem(&d.pmem, self.ring_off(res.pos))
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
                d.pmem
                    .write(self.geometry.desc_slot_offset(seq) as usize, &buf)
            });
        d.pmem.fence();

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

    /// Serves a prefix of a read from the journal or remaps it.
    fn read(this: ArcBorrow<'_, Self>, mut bio: Bio) -> Mapped {
        let Ok(d) = this.devs() else {
            bio.endio(Err(EIO));
            return Mapped::Submitted;
        };
        let n = u64::from(bio.sectors());
        let Some(start) = this.target_sector(&bio, n) else {
            bio.endio(Err(EIO));
            return Mapped::Submitted;
        };
        let end = start + n;
        let mut st = this.state.lock();
        st.io_count += 1;
        loop {
            let Some(x) = first_overlap(&st.table, start, end) else {
                drop(st);
                bio.remap(&d.prod, start);
                return Mapped::Remap(bio);
            };
            if x.start > start {
                drop(st);
                bio.accept_partial((x.start - start) as u32);
                bio.remap(&d.prod, start);
                return Mapped::Remap(bio);
            }
            let persisted = st.rec(x.seq).is_some_and(|r| r.persisted);
            if !persisted {
                // A write to these sectors is being copied right now.
                st.waiters += 1;
                this.cond.wait(&mut st);
                st.waiters -= 1;
                continue;
            }
            let piece = end.min(x.end()) - start;
            let pos = x.ring_pos + (start - x.start);
            if let Some(r) = st.rec(x.seq) {
                r.pins += 1;
            }
            drop(st);
            bio.accept_partial(piece as u32);
            let res = if crate::fault::poisoned(start, piece) {
                Err(EIO)
            } else {
                bio.copy_from_pmem(0, &d.pmem, this.ring_off(pos), (piece << 9) as u32)
            };
            let mut st = this.state.lock();
            let mut kick = false;
            if let Some(r) = st.rec(x.seq) {
                r.pins -= 1;
                kick = r.pins == 0 && st.retire_blocked;
            }
            drop(st);
            if kick {
                Self::kick(this);
            }
            bio.endio(res);
            return Mapped::Submitted;
        }
    }

    fn status_info(&self, out: &mut Out<'_>) {
        let st = self.state.lock();
        let ring = st.space.ring();
        let (used, size, pending) = (ring.used() << 9, ring.size() << 9, st.space.pending());
        let (extents, deferred, errors, degraded) =
            (st.extents, st.deferred.len(), st.errors, st.degraded);
        let (written, destaged) = (st.written_bytes, st.destaged_bytes);
        let (snap, preserved, chunks, hydrate) = (st.snap, st.preserved, st.nr_chunks, st.hydrate);
        let (views, snap_extents) = (st.views, st.snap_extents);
        drop(st);
        let snapshot = match snap {
            SnapState::None => "none",
            SnapState::Active => "active",
            SnapState::Invalid => "invalid",
        };
        let hydration = match (hydrate, snap) {
            (true, SnapState::Active) if preserved >= chunks => "done",
            (true, SnapState::Active) => "running",
            _ => "off",
        };
        let state = if degraded { "degraded" } else { "ok" };
        let _ = write!(
            out,
            "journal_used={used} journal_size={size} pending={pending} snapshot={snapshot} \
             preserved={preserved} chunks={chunks} hydration={hydration} errors={errors} \
             state={state} extents={extents} snap_extents={snap_extents} deferred={deferred} \
             views={views} written_bytes={written} destaged_bytes={destaged}"
        );
    }

    /// `drain`: destage everything and wait until the journal is empty.
    fn drain(this: ArcBorrow<'_, Self>) -> Result {
        let mut st = this.state.lock();
        if st.suspended || !st.loaded {
            return Err(EBUSY);
        }
        let errors = st.errors;
        st.drains += 1;
        drop(st);
        Self::kick(this);
        let mut st = this.state.lock();
        let res = loop {
            if st.space.pending() == 0 {
                break Ok(());
            }
            if st.errors != errors {
                break Err(EIO);
            }
            if st.stopping || st.suspended {
                break Err(EBUSY);
            }
            st.waiters += 1;
            let sig = this.cond.wait_interruptible(&mut st);
            st.waiters -= 1;
            if sig {
                break Err(EINTR);
            }
        };
        st.drains -= 1;
        res
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
            st.waiters += 1;
            self.cond.wait(&mut st);
            st.waiters -= 1;
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

    /// Number of views attached.
    pub(crate) fn views(&self) -> u32 {
        self.state.lock().views
    }

    /// Whether the snapshot is active and the journal loaded (for views).
    pub(crate) fn snapshot_active(&self) -> bool {
        let st = self.state.lock();
        st.loaded && st.snap == SnapState::Active
    }
}

#[vtable]
impl Target for Jsnap {
    const NAME: &'static CStr = c"jsnap";
    const VERSION: [u32; 3] = [0, 3, 0];

    fn ctr(ti: &mut Ctr<'_>, args: &[&CStr]) -> core::result::Result<Arc<Self>, CtrError> {
        if args.len() < 4 {
            return Err(CtrError::inval(
                c"Invalid argument count: need <production_dev> <journal_dev> <store_dev|-> <chunk_sectors>",
            ));
        }
        let mut sbuf = [""; 64];
        let n = str_args(args, &mut sbuf)?;
        let s = &sbuf[..n];
        // Pure checks first: nothing is opened for a malformed line.
        let chunk_sectors =
            table::parse_chunk_sectors(s[3]).map_err(|e| CtrError::inval(e.msg()))?;
        let features = table::parse_features(&s[4..]).map_err(|e| CtrError::inval(e.msg()))?;
        let (begin, len) = (ti.begin(), ti.len());
        if len == 0 {
            return Err(CtrError::inval(c"Target length must not be zero"));
        }
        let devt = ti.md_devt();
        if registry::find(devt).is_some_and(|j| j.state.lock().views > 0) {
            return Err(CtrError {
                msg: c"A jsnap-view is attached to this device: remove it first",
                err: EBUSY,
            });
        }
        crate::fault::ctr_window();
        let (prod, journal, store) = Self::open_devices(ti, args, s[2] == "-")?;
        let (table, table_formatted) =
            Self::table_lines(&prod, &journal, store.as_ref(), s)?;
        let store_sectors = if store.is_some() { len } else { 0 };
        let prod_devt = prod.devt();
        let store_devt = store.as_ref().map_or(0, |s| s.devt());
        let opened = recovery::open(
            &journal,
            prod_devt,
            store_devt,
            len,
            chunk_sectors,
            store_sectors,
            &features,
        )?;
        // Writes longer than one record are cut in `map`, by length: dm's
        // `max_io_len` would cut every write across an aligned boundary,
        // and a snapshot could fall between the pieces of one write.
        // (whole 4 KiB blocks: a production device may have 4 KiB sectors)
        let max_io = (opened.sb.geometry.ring_sectors / 2).min(MAX_RECORD_SECTORS) & !7;
        ti.setup(0, false);
        let wq = OwnedQueue::new(c"jsnap_destage").map_err(nomem)?;
        let io = IoClient::new().map_err(nomem)?;
        let kc = Kcopyd::new().map_err(nomem)?;
        let buf = KBox::new([0u8; format::SB_SLOT_BYTES], GFP_KERNEL).map_err(nomem)?;
        let bounce = KVVec::from_elem(0u8, BOUNCE_BYTES, GFP_KERNEL).map_err(nomem)?;
        let recovery::Opened {
            pmem,
            sb,
            slot,
            format_pending,
        } = opened;
        let has_store = store.is_some();
        let geometry = sb.geometry;
        let state = recovery::empty_state(&sb).map_err(nomem)?;
        let this = Arc::pin_init(
            try_pin_init!(Self {
                wq,
                io,
                kc,
                devs <- SleepRevocable::new(Devs { pmem, prod, journal, store }),
                has_store,
                snap_hint: AtomicBool::new(true),
                devt,
                prod_devt,
                store_devt,
                begin,
                len,
                chunk_sectors,
                features,
                geometry,
                table,
                table_formatted,
                formatted: AtomicBool::new(false),
                max_io,
                state <- new_spinlock!(state, "jsnap_state"),
                cond <- new_condvar!("jsnap_cond"),
                sb <- new_mutex!(SbState { sb, slot, format_pending, buf }, "jsnap_sb"),
                batch <- new_mutex!((), "jsnap_batch"),
                msg <- new_mutex!((), "jsnap_msg"),
                locks <- ChunkLocks::new(),
                bounce <- new_mutex!(bounce, "jsnap_bounce"),
                work <- new_work!("jsnap_work"),
            }),
            GFP_KERNEL,
        )
        .map_err(|err| CtrError {
            msg: c"Cannot allocate target state",
            err,
        })?;
        // Atomic with a view attaching (issue 10 item 21): refused if a view
        // attached to the table this one replaces since the check above.
        registry::add_unless_viewed(devt, this.clone()).map_err(|err| CtrError {
            msg: c"A jsnap-view is attached to this device: remove it first",
            err,
        })?;
        Ok(this)
    }

    fn dtr(&self) {
        registry::remove(self);
        self.state.lock().stopping = true;
        self.cond.notify_all();
        self.wq.flush();
        // Our own bios were all served before the table went (dm waits for
        // them at suspend); what is left came from a `mirror` view, whose
        // removal waits for it: complete it (issue 10 item 13).
        let mut stranded = core::mem::replace(&mut self.state.lock().deferred, BioList::new());
        while let Some(b) = stranded.pop() {
            b.endio(Err(EIO));
        }
        // Views may keep this state alive; the devices go with the table.
        self.devs.revoke();
    }

    fn map(this: ArcBorrow<'_, Self>, bio: Bio) -> Mapped {
        match bio.kind() {
            BioKind::Read => Self::read(this, bio),
            BioKind::Write => {
                let mut bio = bio;
                // One record per write up to `max_io`: a snapshot holds all
                // of such a write or none of it.
                bio.accept_partial(u32::try_from(this.max_io).unwrap_or(u32::MAX));
                Self::submit_write(this, bio);
                Mapped::Submitted
            }
            // Every acknowledged write is already durable in pmem.
            BioKind::Flush => {
                bio.endio(Ok(()));
                Mapped::Submitted
            }
            BioKind::Discard | BioKind::WriteZeroes | BioKind::Other => {
                bio.endio(Err(EOPNOTSUPP));
                Mapped::Submitted
            }
        }
    }

    fn status(&self, kind: StatusType, out: &mut Out<'_>) {
        match kind {
            StatusType::Info => self.status_info(out),
            StatusType::Table => {
                let line = if self.formatted.load(Ordering::Relaxed) {
                    &self.table_formatted
                } else {
                    &self.table
                };
                let _ = out.write_str(core::str::from_utf8(line).unwrap_or(""));
            }
            StatusType::Ima => {}
        }
    }

    fn message(this: ArcBorrow<'_, Self>, args: &[&CStr], _out: &mut Out<'_>) -> Result {
        let mut sbuf = [""; 64];
        let n = str_args(args, &mut sbuf).map_err(|e| {
            pr_err!("dm-jsnap: {}\n", e.msg.to_str().unwrap_or("bad message"));
            e.err
        })?;
        let msg = table::parse_message(&sbuf[..n]).map_err(|e| {
            pr_err!("dm-jsnap: {}\n", e.msg().to_str().unwrap_or("bad message"));
            EINVAL
        })?;
        // (the handlers refuse too, with EBUSY, but silently)
        if this.is_suspended() {
            pr_err!("dm-jsnap: message refused: the device is suspended\n");
            return Err(EBUSY);
        }
        match msg {
            table::Message::Drain => Self::drain(this),
            table::Message::Snapshot => snapshot::take(this),
            table::Message::Drop => snapshot::drop_snapshot(this),
            table::Message::Hydrate(on) => snapshot::set_hydrate(this, on),
        }
    }

    fn iterate_devices(&self, it: &mut DeviceIter<'_>) -> i32 {
        // Production and store: both limits stack (a store with a larger
        // logical block size must raise the volume's).
        match self.devs.access() {
            Some(d) => match it.call(&d.prod, 0, self.len) {
                0 => d.store.as_ref().map_or(0, |st| it.call(st, 0, self.len)),
                r => r,
            },
            None => 0,
        }
    }

    fn io_hints(&self, limits: &mut Limits<'_>) {
        // Whole chunks destage and preserve best.
        limits.set_io_sizes(4096, self.chunk_sectors << 9);
    }

    fn preresume(&self) -> Result {
        // The device is suspended: an allocation must not recurse into I/O
        // (to this device, which would wait for the resume).
        let _noio = crate::ffi::wq::NoIo::begin();
        recovery::load(self)
    }

    fn postsuspend(this: ArcBorrow<'_, Self>) {
        // dm has waited for every in-flight bio (deferred ones included,
        // which the worker served); stop the worker (destage, hydration)
        // and let it finish, then wait for the view operations in progress
        // (new ones wait for the resume): nothing reaches pmem, production
        // or the store while suspended (the dm-clone order).
        let mut st = this.state.lock();
        st.suspended = true;
        while st.view_ops > 0 {
            st.waiters += 1;
            this.cond.wait(&mut st);
            st.waiters -= 1;
        }
        drop(st);
        this.cond.notify_all();
        // A view operation that ended meanwhile may have kicked the worker;
        // it returns at once now that `suspended` is set.
        this.wq.flush();
    }

    fn resume(this: ArcBorrow<'_, Self>) {
        this.state.lock().suspended = false;
        // View operations wait in `view_op` for this.
        this.cond.notify_all();
        Self::kick(this);
    }
}

impl WorkItem for Jsnap {
    type Pointer = Arc<Jsnap>;

    fn run(this: Arc<Jsnap>) {
        let _noio = crate::ffi::wq::NoIo::begin();
        destage::run(&this);
    }
}
