// SPDX-License-Identifier: GPL-2.0

//! The `jsnap` target glue: constructor, destructor, `map`, status,
//! messages and suspend/resume.

use super::{changed, destage, metadata, recovery, snapshot, Jsnap, SbState, BOUNCE_BYTES, MAX_RECORD_SECTORS};
use crate::ffi::bio::{BioKind, BioList, MapBio};
use crate::ffi::devices::DevId;
use crate::ffi::dm::{
    str_args, CtrResult, table_line, Ctr, CtrError, DevNum, DeviceIter, Limits, Mapped, Out,
    StatusType, Target, MAX_ARGS,
};
use crate::ffi::io::{IoClient, Kcopyd};
use super::registry::Registry;
use crate::ffi::wq::OwnedQueue;
use crate::logic::format::SnapState;
use crate::logic::args;
use super::chunklock::ChunkLocks;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::workqueue::WorkItem;
use kernel::{new_condvar, new_mutex, new_spinlock, new_work};

impl Jsnap {
    /// Opens production, journal and store (unless `store_none`), checking
    /// each as it comes.
    fn open_devices(
        ti: &mut Ctr<'_>,
        args: &[&CStr],
        store_none: bool,
    ) -> core::result::Result<(DevId, DevId, Option<DevId>), CtrError> {
        let len = ti.len();
        let gone = |err| CtrError {
            msg: c"Device went away while the table was loaded",
            err,
        };
        let prod = ti.get_device(args[0], true).map_err(|err| CtrError {
            msg: c"Error opening production device",
            err,
        })?;
        let prod_devt = ti.dev(prod).map_err(gone)?.devt();
        if ti.dev(prod).map_err(gone)?.sectors() < len {
            return Err(CtrError::inval(
                c"Production device is smaller than the target length",
            ));
        }
        let journal = ti.get_device(args[1], true).map_err(|err| CtrError {
            msg: c"Error opening journal device",
            err,
        })?;
        let j = ti.dev(journal).map_err(gone)?;
        let journal_devt = j.devt();
        if journal_devt == prod_devt {
            return Err(CtrError::inval(
                c"Production and journal must be different devices",
            ));
        }
        if !j.has_dax() {
            return Err(CtrError::inval(c"Journal device does not support DAX"));
        }
        if !j.dax_synchronous() {
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
            let st = ti.dev(store).map_err(gone)?;
            if st.devt() == prod_devt || st.devt() == journal_devt {
                return Err(CtrError::inval(
                    c"Store must differ from production and journal",
                ));
            }
            if st.sectors() < len {
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
        prod: u32,
        journal: u32,
        store: Option<u32>,
        s: &[&str],
    ) -> core::result::Result<(KVec<u8>, KVec<u8>), CtrError> {
        let line = |keep_format: bool| {
            table_line(|w| {
                let feats = s.get(5..).unwrap_or(&[]);
                let keep = |f: &&&str| keep_format || **f != "format";
                let n = feats.iter().filter(keep).count();
                write!(w, "{} {} ", DevNum(prod), DevNum(journal))?;
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
            })
        };
        Ok((line(true)?, line(false)?))
    }

    /// Marks the journal formatted: `dmsetup table` stops echoing `format`.
    pub(crate) fn set_formatted(&self) {
        self.formatted.store(true, Ordering::Relaxed);
    }

    fn status_info(&self, out: &mut Out<'_>) {
        let st = self.state.lock();
        let ring = st.journal.space.ring();
        let (used, size, pending) = (ring.used() << 9, ring.size() << 9, st.journal.space.pending());
        let (extents, deferred, errors, degraded) =
            (st.journal.extents, st.journal.deferred.len(), st.destage.errors, st.destage.degraded);
        let (written, destaged, bypassed, compacted) = (
            st.stats.written_bytes,
            st.stats.destaged_bytes,
            st.stats.bypassed_bytes,
            st.stats.compacted_bytes,
        );
        let (snap, preserved, chunks, hydrate) = (st.snapshot.snap, st.snapshot.preserved, st.snapshot.nr_chunks, st.snapshot.hydrate);
        let (views, snap_extents) = (st.snapshot.views, st.journal.snap_extents);
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
             views={views} written_bytes={written} destaged_bytes={destaged} \
             bypassed_bytes={bypassed} compacted_bytes={compacted}"
        );
    }

    /// `drain`: destage everything and wait until the journal is empty.
    fn drain(this: ArcBorrow<'_, Self>) -> Result {
        let mut st = this.state.lock();
        if st.suspended || !st.loaded {
            return Err(EBUSY);
        }
        let errors = st.destage.errors;
        st.destage.drains += 1;
        drop(st);
        Self::kick(this);
        let mut st = this.state.lock();
        let res = loop {
            if st.journal.space.pending() == 0 {
                break Ok(());
            }
            if st.destage.errors != errors {
                break Err(EIO);
            }
            if st.stopping || st.suspended {
                break Err(EBUSY);
            }
            let sig = this.sleep_interruptible(&mut st);
            if sig {
                break Err(EINTR);
            }
        };
        st.destage.drains -= 1;
        res
    }
}

#[vtable]
impl Target for Jsnap {
    const NAME: &'static CStr = c"jsnap";
    const VERSION: [u32; 3] = [0, 3, 0];

    type Context = Arc<Registry>;

    fn ctr(registry: &Arc<Registry>, ti: &mut Ctr<'_>, args: &[&CStr]) -> CtrResult<Self> {
        if args.len() < 4 {
            return Err(CtrError::inval(
                c"Invalid argument count: need <production_dev> <journal_dev> <store_dev|-> <chunk_sectors>",
            ));
        }
        let mut sbuf = [""; MAX_ARGS];
        let n = str_args(args, &mut sbuf)?;
        let s = &sbuf[..n];
        // Pure checks first: nothing is opened for a malformed line.
        let chunk_sectors =
            args::parse_chunk_sectors(s[3]).map_err(|e| CtrError::inval(e.msg()))?;
        let features = args::parse_features(&s[4..]).map_err(|e| CtrError::inval(e.msg()))?;
        let (begin, len) = (ti.begin(), ti.len());
        if len == 0 {
            return Err(CtrError::inval(c"Target length must not be zero"));
        }
        let devt = ti.md_devt();
        if registry.find(devt).is_some_and(|j| j.state.lock().snapshot.views > 0) {
            return Err(CtrError {
                msg: c"A jsnap-view is attached to this device: remove it first",
                err: EBUSY,
            });
        }
        crate::fault::ctr_window();
        let (prod_dev, journal, store_dev) = Self::open_devices(ti, args, s[2] == "-")?;
        let devt_of = |ti: &Ctr<'_>, id| ti.dev(id).map(|d| d.devt()).map_err(CtrError::nomem);
        let prod_devt = devt_of(ti, prod_dev)?;
        let journal_devt = devt_of(ti, journal)?;
        let store_devt = match store_dev {
            Some(id) => devt_of(ti, id)?,
            None => 0,
        };
        let (table, table_formatted) =
            Self::table_lines(prod_devt, journal_devt, store_dev.map(|_| store_devt), s)?;
        let store_sectors = if store_dev.is_some() { len } else { 0 };
        let opened = metadata::open(
            ti,
            journal,
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
        // No write is longer than `max_io`: a larger threshold would never
        // bypass anything.
        if u64::from(features.bypass) > max_io {
            return Err(CtrError {
                msg: c"bypass exceeds the largest write (half the journal ring, at most 2048 sectors)",
                err: EINVAL,
            });
        }
        // Every acknowledged write is durable in pmem: no volatile cache
        // (see `io_hints`).
        ti.setup(false, false);
        let wq = OwnedQueue::new(c"jsnap_destage").map_err(CtrError::nomem)?;
        let serve_wq = OwnedQueue::new(c"jsnap_serve").map_err(CtrError::nomem)?;
        let bypass_wq = match features.bypass {
            0 => None,
            _ => Some(OwnedQueue::new(c"jsnap_bypass").map_err(CtrError::nomem)?),
        };
        let io = IoClient::new().map_err(CtrError::nomem)?;
        let kc = Kcopyd::new().map_err(CtrError::nomem)?;
        let bounce = KVVec::from_elem(0u8, BOUNCE_BYTES, GFP_KERNEL).map_err(CtrError::nomem)?;
        let cbt_page = KBox::new([0u8; crate::logic::cbt::PAGE_BYTES], GFP_KERNEL)
            .map_err(CtrError::nomem)?;
        let spare = KVec::with_capacity(super::chunklock::SPARE_NODES, GFP_KERNEL).map_err(CtrError::nomem)?;
        let sb_state = SbState::new(opened).map_err(CtrError::nomem)?;
        let sb = sb_state.sb;
        let devs = ti.devices().map_err(CtrError::nomem)?;
        let has_store = store_dev.is_some();
        let geometry = sb.geometry;
        let state = recovery::empty_state(&sb).map_err(CtrError::nomem)?;
        let mut done = KVVec::with_capacity(geometry.desc_count as usize, GFP_KERNEL).map_err(CtrError::nomem)?;
        for _ in 0..geometry.desc_count {
            done.push(AtomicU64::new(u64::MAX), GFP_KERNEL).map_err(CtrError::nomem)?;
        }
        let this = Arc::pin_init(
            try_pin_init!(Self {
                bypass_wq,
                serve_wq,
                wq,
                registry: registry.clone(),
                io,
                kc,
                devs,
                prod_dev,
                store_dev,
                has_store,
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
                waiters: AtomicU32::new(0),
                done,
                sb <- new_mutex!(sb_state, "jsnap_sb"),
                batch <- new_mutex!((), "jsnap_batch"),
                msg <- new_mutex!((), "jsnap_msg"),
                locks <- ChunkLocks::new(spare),
                bounce <- new_mutex!(bounce, "jsnap_bounce"),
                validity_io <- new_mutex!((), "jsnap_validity_io"),
                cbt_io <- new_mutex!(cbt_page, "jsnap_cbt_io"),
                work <- new_work!("jsnap_work"),
                bypass_done: core::sync::atomic::AtomicU32::new(0),
                bypass_work <- new_work!("jsnap_bypass_work"),
                serve_work <- new_work!("jsnap_serve_work"),
            }),
            GFP_KERNEL,
        )
        .map_err(|err| CtrError {
            msg: c"Cannot allocate target state",
            err,
        })?;
        // Atomic with a view attaching: refused if a view
        // attached to the table this one replaces since the check above.
        registry.add_unless_viewed(devt, this.clone()).map_err(|err| CtrError {
            msg: c"A jsnap-view is attached to this device: remove it first",
            err,
        })?;
        Ok(this)
    }

    fn dtr(&self) {
        self.registry.remove(self);
        self.state.lock().stopping = true;
        self.cond.notify_all();
        if let Some(q) = &self.bypass_wq {
            q.flush();
        }
        self.wq.flush();
        self.serve_wq.flush();
        // Our own bios were all served before the table went (dm waits for
        // them at suspend); what is left came from a `mirror` view, whose
        // removal waits for it: complete it.
        let mut stranded = core::mem::replace(&mut self.state.lock().journal.deferred, BioList::new());
        while let Some(b) = stranded.pop() {
            b.endio(Err(EIO));
        }
        // Views may keep this state alive; the devices go with the table
        // (the registration revokes them when this returns).
        crate::prof::report();
    }

    fn map(this: ArcBorrow<'_, Self>, bio: MapBio<'_>) -> Mapped {
        match bio.kind() {
            BioKind::Read => Self::read(this, bio),
            BioKind::Write => {
                let mut bio = bio;
                // One record per write up to `max_io`: a snapshot holds all
                // of such a write or none of it.
                bio.accept_partial(u32::try_from(this.max_io).unwrap_or(u32::MAX));
                let bio = bio.into_bio();
                if this.bypass_candidate(bio.sectors()) {
                    Self::queue_bypass(this, bio);
                } else {
                    Self::submit_write(this, bio);
                }
                Mapped::Submitted
            }
            // Every acknowledged write is already durable in pmem.  (A
            // flush gets here only when another target of the table has a
            // volatile cache: the queue of this one has none.)
            BioKind::Flush => Mapped::complete(bio.into_bio(), Ok(())),
            BioKind::Discard | BioKind::WriteZeroes | BioKind::Other => {
                Mapped::complete(bio.into_bio(), Err(EOPNOTSUPP))
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

    fn message(this: ArcBorrow<'_, Self>, args: &[&CStr], out: &mut Out<'_>) -> Result {
        let mut sbuf = [""; MAX_ARGS];
        let n = str_args(args, &mut sbuf).map_err(|e| {
            pr_err!("dm-jsnap: {}\n", e.msg.to_str().unwrap_or("bad message"));
            e.err
        })?;
        let msg = args::parse_message(&sbuf[..n]).map_err(|e| {
            pr_err!("dm-jsnap: {}\n", e.msg().to_str().unwrap_or("bad message"));
            EINVAL
        })?;
        // (the handlers refuse too, with EBUSY, but silently)
        if this.is_suspended() {
            pr_err!("dm-jsnap: message refused: the device is suspended\n");
            return Err(EBUSY);
        }
        match msg {
            args::Message::Drain => Self::drain(this),
            args::Message::Snapshot => snapshot::take(this),
            args::Message::Drop => snapshot::drop_snapshot(this),
            args::Message::Hydrate(on) => snapshot::set_hydrate(this, on),
            args::Message::Changed { which, first, count } => {
                changed::report(this, which, first, count, out)
            }
        }
    }

    fn iterate_devices(&self, it: &mut DeviceIter<'_>) -> i32 {
        // Production and store: both limits stack (a store with a larger
        // logical block size must raise the volume's).
        let Ok(d) = self.devs() else {
            return 0;
        };
        match self.prod(&d).map(|p| it.call(p, 0, self.len)) {
            Ok(0) => self.store(&d).map_or(0, |st| it.call(st, 0, self.len)),
            Ok(r) => r,
            Err(_) => 0,
        }
    }

    fn io_hints(&self, limits: &mut Limits<'_>) {
        // Whole chunks destage and preserve best.
        limits.set_io_sizes(4096, self.chunk_sectors << 9);
        // An acknowledged write is in pmem already: flushes and FUA need no
        // work, so the block layer is told not to send them (they would
        // cost a round trip through dm for nothing).  Destage flushes
        // production and the store itself before journal space is reused.
        limits.no_volatile_cache();
    }

    fn preresume(&self) -> Result {
        // The device is suspended: an allocation must not recurse into I/O
        // (to this device, which would wait for the resume).
        let _noio = crate::ffi::wq::NoIo::begin();
        recovery::load(self)
    }

    fn postsuspend(this: ArcBorrow<'_, Self>) {
        // dm has waited for every in-flight bio (deferred ones included,
        // which the serve worker journaled); stop the workers (destage,
        // hydration, serving)
        // and let it finish, then wait for the view operations in progress
        // (new ones wait for the resume): nothing reaches pmem, production
        // or the store while suspended (the dm-clone order).
        let mut st = this.state.lock();
        st.suspended = true;
        while st.view_ops > 0 {
            this.sleep(&mut st);
        }
        drop(st);
        this.cond.notify_all();
        // A view operation that ended meanwhile may have kicked the worker;
        // it returns at once now that `suspended` is set (so does the
        // worker that journals deferred writes).
        this.wq.flush();
        this.serve_wq.flush();
    }

    fn end_io(this: ArcBorrow<'_, Self>, tag: usize, _ok: bool) {
        // (a failed write fails the bio: production holds what the device
        // left there, as for any write that fails)
        this.bypassed_end(tag);
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

impl WorkItem<2> for Jsnap {
    type Pointer = Arc<Jsnap>;

    fn run(this: Arc<Jsnap>) {
        let _noio = crate::ffi::wq::NoIo::begin();
        destage::serve_deferred(&this);
    }
}

impl WorkItem<1> for Jsnap {
    type Pointer = Arc<Jsnap>;

    fn run(this: Arc<Jsnap>) {
        let _noio = crate::ffi::wq::NoIo::begin();
        Jsnap::run_bypass(&this);
    }
}
