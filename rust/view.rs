// SPDX-License-Identifier: GPL-2.0

//! The `jsnap-view` target: the snapshot as a volume of its own.
//!
//! Table line: `<start> <len> jsnap-view <jsnap_dev> <ro|rw|mirror>`
//!
//! * reads return the snapshot's content (see `jsnap::snapshot`);
//! * `ro`: writes fail;
//! * `rw`: a write first makes its chunk store-owned (preserving
//!   it), then goes to the store only;
//! * `mirror` (volume A of a one-way mirror): a write makes its chunk
//!   store-owned, is written to the store (volume A) and then journaled to
//!   production (volume B) like any production write; it completes once both
//!   are durable.  Writes to production never reach the view, because
//!   production is only overwritten in preserved chunks.
//!
//! I/O to preserved chunks is remapped to the store in `map`.  Everything
//! else needs synchronous I/O (reading production, preserving a chunk),
//! which `map` must not do (nested `submit_bio` is deferred until `map`
//! returns), so it goes to the view's worker.  The chunk lock of the jsnap
//! device is held from the decision (is the chunk preserved?) to the end of
//! the data movement.

use crate::ffi::bio::{Bio, BioKind, BioList, MapBio};
use crate::ffi::devices::{DevId, DevSet};
use crate::ffi::dm::{
    str_args, CtrResult, Ctr, CtrError, DevNum, DeviceIter, Mapped, Out, SharedBdev, StatusType,
    Target, MAX_ARGS,
};
use crate::jsnap::registry::Registry;
use crate::ffi::wq::OwnedQueue;
use crate::jsnap::{Jsnap, MAX_RECORD_SECTORS};
use crate::logic::lookup::{self, MapWrite, ReadFrom, ViewWrite};
use crate::logic::args::{self, ViewMode};
use core::fmt::Write;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::types::ScopeGuard;
use kernel::sync::{Arc, ArcBorrow, SpinLock};
use kernel::workqueue::{Work, WorkItem};
use kernel::{new_spinlock, new_work};

/// One `jsnap-view` target instance.
#[pin_data]
pub(crate) struct View {
    wq: OwnedQueue,
    jsnap: Arc<Jsnap>,
    /// The jsnap target's production and store, opened by this table too
    /// (same holder as every dm table: no conflict) so that their limits
    /// stack onto the view; I/O to the store is remapped to this one.  The
    /// jsnap device itself is never claimed (a filesystem mounted on it
    /// holds it exclusively): it is only held open, below.
    devs: Arc<DevSet>,
    prod: DevId,
    store: DevId,
    /// The jsnap device held open (not claimed): it cannot be removed
    /// while the view exists, as with `dm_get_device`, yet it may be
    /// mounted.
    _held: SharedBdev,
    mode: ViewMode,
    begin: u64,
    len: u64,
    /// Bios waiting for the worker.
    #[pin]
    queue: SpinLock<BioList>,
    #[pin]
    pub(crate) work: Work<View>,
}

kernel::impl_has_work! {
    impl HasWork<View> for View { self.work }
}

impl View {
    /// Points `bio` at our handle on the store, sector `sector`.
    fn remap_to_store(&self, bio: &mut Bio, sector: u64) -> Result {
        let d = self.devs.access()?;
        bio.remap(d.dev(self.store)?, sector)
    }

    fn defer(this: ArcBorrow<'_, Self>, bio: Bio) -> Mapped {
        this.queue.lock().push(bio);
        let arc: Arc<Self> = this.into();
        let _ = arc.wq.enqueue(arc.clone());
        Mapped::Submitted
    }

    /// Worker side of one bio.
    fn process(&self, bio: Bio) {
        let j = &self.jsnap;
        let Some(start) = bio.sector().checked_sub(self.begin) else {
            bio.endio(Err(EIO));
            return;
        };
        // Waits while the jsnap volume is suspended.
        let Some(_op) = j.view_op() else {
            bio.endio(Err(EIO));
            return;
        };
        if bio.kind() == BioKind::Read {
            if let Some(mut b) = j.snapshot_read(bio, start) {
                // A preserved chunk: the store copy, through our handle.
                match self.remap_to_store(&mut b, start) {
                    Ok(()) => b.submit(),
                    Err(e) => b.endio(Err(e)),
                }
            }
            // Journal pieces were pinned for the copy.
            Jsnap::kick_retire(j.as_arc_borrow());
            return;
        }
        // Decide first: a refused write must not own its chunk (that would
        // copy it, or for a whole chunk write the refused data, into the
        // store and set its validity bit).
        if !lookup::view_writable(self.mode) {
            bio.endio(Err(EROFS));
            return;
        }
        let c = j.chunk_of(start);
        let (guard, in_store) = match j.own_chunk(c, &bio, start) {
            Ok(x) => x,
            Err(e) => {
                bio.endio(Err(e));
                return;
            }
        };
        let d = j.devs();
        let store = d.as_ref().ok().and_then(|d| j.store(d).ok());
        match (lookup::view_write(self.mode, in_store), store) {
            (ViewWrite::Refuse, _) => bio.endio(Err(EROFS)),
            // The jsnap device is going away: its store with it.
            (_, None) => bio.endio(Err(EIO)),
            (ViewWrite::Done, Some(_)) => bio.endio(Ok(())),
            (ViewWrite::Store, Some(_)) => {
                let mut bio = bio;
                match self.remap_to_store(&mut bio, start) {
                    Ok(()) => bio.submit(),
                    Err(e) => bio.endio(Err(e)),
                }
            }
            // Volume B: the same write through the journal, after the
            // store half is durable.  `start` is relative to the view,
            // which has the jsnap target's length: the same coordinate.
            (ViewWrite::Journal, Some(_)) => Jsnap::submit_write_at(j.as_arc_borrow(), bio, start),
            (ViewWrite::StoreThenJournal, Some(_)) => match j.write_bio_to_store(&bio, start) {
                Ok(()) => Jsnap::submit_write_at(j.as_arc_borrow(), bio, start),
                Err(e) => bio.endio(Err(e)),
            },
        }
        drop(d);
        drop(guard);
        Jsnap::kick_retire(j.as_arc_borrow());
    }
}

#[vtable]
impl Target for View {
    const NAME: &'static CStr = c"jsnap-view";
    const VERSION: [u32; 3] = [0, 3, 0];

    type Context = Arc<Registry>;

    fn ctr(registry: &Arc<Registry>, ti: &mut Ctr<'_>, args: &[&CStr]) -> CtrResult<Self> {
        if args.len() != 2 {
            return Err(CtrError::inval(
                c"Invalid argument count: need <jsnap_dev> <ro|rw|mirror>",
            ));
        }
        let mut sbuf = [""; MAX_ARGS];
        let n = str_args(args, &mut sbuf)?;
        let s = &sbuf[..n];
        let mode = args::parse_view_mode(s[1]).map_err(|e| CtrError::inval(e.msg()))?;
        // Found by device number, not opened (the jsnap
        // device may be mounted).
        let devt = crate::ffi::dm::devt_from_path(args[0]).map_err(|err| CtrError {
            msg: c"Cannot find the jsnap device",
            err,
        })?;
        if devt == ti.md_devt() {
            return Err(CtrError::inval(c"A view cannot be loaded onto its own jsnap device"));
        }
        let jsnap = registry.attach_view(devt).map_err(|err| match err {
            ENODEV => CtrError::inval(c"Device is not a jsnap device"),
            err => CtrError {
                msg: c"The jsnap device has no active snapshot",
                err,
            },
        })?;
        let attached = ScopeGuard::new_with_data(jsnap.clone(), |j| {
            let _ = j.attach_view(false);
        });
        let held = SharedBdev::open(devt).map_err(|err| CtrError {
            msg: c"Cannot open the jsnap device",
            err,
        })?;
        if ti.len() != jsnap.len {
            return Err(CtrError::inval(
                c"View length must equal the jsnap device length",
            ));
        }
        let (prod_devt, store_devt) = {
            let d = jsnap.devs().map_err(|err| CtrError {
                msg: c"The jsnap device is being removed",
                err,
            })?;
            let prod = jsnap.prod(&d).map_err(CtrError::nomem)?;
            match jsnap.store(&d) {
                Ok(st) => (prod.devt(), st.devt()),
                Err(_) => return Err(CtrError::inval(c"The jsnap device has no store")),
            }
        };
        let open = |ti: &mut Ctr<'_>, devt: u32, write: bool| {
            let path = CString::try_from_fmt(fmt!("{}:{}", devt >> 20, devt & 0xfffff))
                .map_err(CtrError::nomem)?;
            ti.get_device(&path, write).map_err(|err| CtrError {
                msg: c"Cannot open the jsnap device's production or store",
                err,
            })
        };
        let prod = open(ti, prod_devt, false)?;
        let store = open(ti, store_devt, mode != ViewMode::Ro)?;
        let devs = ti.devices().map_err(CtrError::nomem)?;
        // Mirror writes are journaled whole: no larger than jsnap accepts,
        // and a power of two no larger than a chunk, so that no bio crosses
        // a chunk boundary (jsnap's limit, half the ring, need not be one).
        let jmax = jsnap.max_io.max(1);
        let max_io = u64::from(jsnap.chunk_sectors)
            .min(MAX_RECORD_SECTORS)
            .min(1u64 << (63 - jmax.leading_zeros()));
        ti.set_max_io_len(max_io).map_err(|err| CtrError {
            msg: c"Cannot set the maximum I/O size",
            err,
        })?;
        // Writes of a `rw` or `mirror` view reach the store, whose cache a
        // flush must empty.
        ti.setup(false, true);
        let wq = OwnedQueue::new(c"jsnap_view").map_err(CtrError::nomem)?;
        let (begin, len) = (ti.begin(), ti.len());
        // No destage batch collected before the snapshot (it took no chunk
        // locks) may still run once reads of this view start.
        jsnap.wait_batch();
        let view = Arc::pin_init(
            try_pin_init!(Self {
                wq,
                jsnap,
                devs,
                prod,
                store,
                _held: held,
                mode,
                begin,
                len,
                queue <- new_spinlock!(BioList::new(), "jsnap_view_queue"),
                work <- new_work!("jsnap_view_work"),
            }),
            GFP_KERNEL,
        )
        .map_err(|err| CtrError {
            msg: c"Cannot allocate view state",
            err,
        })?;
        attached.dismiss();
        Ok(view)
    }

    fn dtr(&self) {
        self.wq.flush();
        let _ = self.jsnap.attach_view(false);
    }

    fn map(this: ArcBorrow<'_, Self>, bio: MapBio<'_>) -> Mapped {
        let mut bio = bio.into_bio();
        // dm maps only bios inside the target: never below `begin`.
        let start = bio.sector().saturating_sub(this.begin);
        let kind = bio.kind();
        match kind {
            BioKind::Read | BioKind::Write => {
                if kind == BioKind::Write && !lookup::view_writable(this.mode) {
                    // Refused before it can be deferred: the worker would
                    // make its chunk the view's own first.
                    return Mapped::complete(bio, Err(EROFS));
                }
                let c = this.jsnap.chunk_of(start);
                if this.jsnap.is_suspended() {
                    // Nothing may reach the store now: the worker waits.
                    return Self::defer(this, bio);
                }
                // An entry in the lookup table (a preserved chunk) is final.
                let has_entry = this.jsnap.chunk_is_preserved(c);
                let to_store = if kind == BioKind::Read {
                    lookup::view_read(has_entry) == ReadFrom::Store
                } else {
                    match lookup::view_map_write(this.mode, has_entry) {
                        MapWrite::Refuse => {
                            bio.endio(Err(EROFS));
                            return Mapped::Submitted;
                        }
                        MapWrite::Store => true,
                        MapWrite::Worker => false,
                    }
                };
                // Our own handle on the store (held by this table).
                if to_store
                    && this.jsnap.devs().is_ok()
                    && this.remap_to_store(&mut bio, start).is_ok()
                {
                    return Mapped::Remap(bio);
                }
                Self::defer(this, bio)
            }
            BioKind::Flush => match (this.mode, this.jsnap.devs().is_ok()) {
                (ViewMode::Rw, true) if this.remap_to_store(&mut bio, 0).is_ok() => {
                    Mapped::Remap(bio)
                }
                _ => {
                    // ro: nothing to flush; mirror: store writes are FUA and
                    // the journal is durable.
                    bio.endio(Ok(()));
                    Mapped::Submitted
                }
            },
            BioKind::Discard | BioKind::WriteZeroes | BioKind::Other => {
                Mapped::complete(bio, Err(EOPNOTSUPP))
            }
        }
    }

    fn status(&self, kind: StatusType, out: &mut Out<'_>) {
        match kind {
            StatusType::Info => {
                let _ = write!(
                    out,
                    "mode={} snapshot_active={}",
                    self.mode.name(),
                    u8::from(self.jsnap.snapshot_active())
                );
            }
            StatusType::Table => {
                let _ = write!(out, "{} {}", DevNum(self.jsnap.devt), self.mode.name());
            }
            StatusType::Ima => {}
        }
    }

    fn iterate_devices(&self, it: &mut DeviceIter<'_>) -> i32 {
        let Ok(d) = self.devs.access() else {
            return 0;
        };
        match d.dev(self.store).map(|st| it.call(st, 0, self.len)) {
            Ok(0) => d.dev(self.prod).map_or(0, |p| it.call(p, 0, self.len)),
            Ok(r) => r,
            Err(_) => 0,
        }
    }

    fn postsuspend(this: ArcBorrow<'_, Self>) {
        this.wq.flush();
    }
}

impl WorkItem for View {
    type Pointer = Arc<View>;

    fn run(this: Arc<View>) {
        let _noio = crate::ffi::wq::NoIo::begin();
        loop {
            let Some(bio) = this.queue.lock().pop() else {
                return;
            };
            this.process(bio);
        }
    }
}
