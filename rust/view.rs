// SPDX-License-Identifier: GPL-2.0

//! The `jsnap-view` target: the snapshot as a volume of its own.
//!
//! Table line (DESIGN.md §2.2): `<start> <len> jsnap-view <jsnap_dev> <ro|rw|mirror>`
//!
//! * reads return the snapshot's content (see `jsnap::snapshot`);
//! * `ro`: writes fail;
//! * `rw` (seed 003): a write first makes its chunk store-owned (preserving
//!   it), then goes to the store only;
//! * `mirror` (seeds 002/004, volume A): a write makes its chunk
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

use crate::ffi::bio::{Bio, BioKind, BioList};
use crate::ffi::dm::{Ctr, CtrError, DeviceIter, DmDev, Mapped, Out, StatusType, Target};
use crate::ffi::registry;
use crate::ffi::wq::OwnedQueue;
use crate::jsnap::{nomem, str_args, table_line, Jsnap, MAX_RECORD_SECTORS};
use crate::logic::lookup::{self, MapWrite, ReadFrom, WriteTo};
use crate::logic::table::{self, ViewMode};
use core::fmt::Write;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, SpinLock};
use kernel::workqueue::{Work, WorkItem};
use kernel::{new_spinlock, new_work};

/// One `jsnap-view` target instance.
#[pin_data]
pub(crate) struct View {
    wq: OwnedQueue,
    jsnap: Arc<Jsnap>,
    dev: DmDev,
    mode: ViewMode,
    begin: u64,
    len: u64,
    table: KVec<u8>,
    /// Bios waiting for the worker.
    #[pin]
    queue: SpinLock<BioList>,
    #[pin]
    pub(crate) work: Work<View>,
}

impl View {
    fn defer(this: ArcBorrow<'_, Self>, bio: Bio) -> Mapped {
        this.queue.lock().push(bio);
        let arc: Arc<Self> = this.into();
        let _ = arc.wq.enqueue(arc.clone());
        Mapped::Submitted
    }

    /// Worker side of one bio.
    fn process(&self, mut bio: Bio) {
        let j = &self.jsnap;
        let start = bio.sector() - self.begin;
        if bio.kind() == BioKind::Read {
            if let Some(b) = j.snapshot_read(bio, start) {
                b.submit();
            }
            return;
        }
        let c = start / u64::from(j.chunk_sectors);
        let in_store = match j.own_chunk(c, &bio, start) {
            Ok(x) => x,
            Err(e) => {
                bio.endio(Err(e));
                return;
            }
        };
        let d = j.devs();
        let store = d.as_ref().ok().and_then(|d| d.store.as_ref());
        match (lookup::view_write_to(self.mode), store) {
            // The whole chunk was written to the store already.
            (
                Some(WriteTo {
                    production: false, ..
                }),
                Some(_),
            ) if in_store => bio.endio(Ok(())),
            (
                Some(WriteTo {
                    production: false, ..
                }),
                Some(store),
            ) => {
                bio.remap(store, start);
                bio.submit();
            }
            // Volume B: the same write through the journal, after the
            // store half is durable.
            (
                Some(WriteTo {
                    production: true, ..
                }),
                Some(_),
            ) if in_store => Jsnap::submit_write(j.as_arc_borrow(), bio),
            (
                Some(WriteTo {
                    production: true, ..
                }),
                Some(_),
            ) => match j.write_bio_to_store(&bio, start) {
                Ok(()) => Jsnap::submit_write(j.as_arc_borrow(), bio),
                Err(e) => bio.endio(Err(e)),
            },
            _ => bio.endio(Err(EROFS)),
        }
        j.unlock_chunk(c);
    }
}

#[vtable]
impl Target for View {
    const NAME: &'static CStr = c"jsnap-view";
    const VERSION: [u32; 3] = [0, 3, 0];

    fn ctr(ti: &mut Ctr<'_>, args: &[&CStr]) -> core::result::Result<Arc<Self>, CtrError> {
        if args.len() != 2 {
            return Err(CtrError::inval(
                c"Invalid argument count: need <jsnap_dev> <ro|rw|mirror>",
            ));
        }
        let mut sbuf = [""; 64];
        let n = str_args(args, &mut sbuf)?;
        let s = &sbuf[..n];
        let mode = table::parse_view_mode(s[1]).map_err(|e| CtrError::inval(e.msg()))?;
        let table = table_line(s)?;
        let dev = ti
            .get_device(args[0], mode != ViewMode::Ro)
            .map_err(|err| CtrError {
                msg: c"Error opening the jsnap device",
                err,
            })?;
        let jsnap =
            registry::find(dev.devt()).ok_or(CtrError::inval(c"Device is not a jsnap device"))?;
        if ti.len() != jsnap.len {
            return Err(CtrError::inval(
                c"View length must equal the jsnap device length",
            ));
        }
        if !jsnap.has_store {
            return Err(CtrError::inval(c"The jsnap device has no store"));
        }
        let max_io = u64::from(jsnap.chunk_sectors).min(MAX_RECORD_SECTORS);
        ti.set_max_io_len(max_io).map_err(|err| CtrError {
            msg: c"Cannot set the maximum I/O size",
            err,
        })?;
        ti.setup(0, false);
        let wq = OwnedQueue::new(c"jsnap_view").map_err(nomem)?;
        let (begin, len) = (ti.begin(), ti.len());
        jsnap.attach_view(true).map_err(|err| CtrError {
            msg: c"The jsnap device has no active snapshot",
            err,
        })?;
        let undo = jsnap.clone();
        Arc::pin_init(
            try_pin_init!(Self {
                wq,
                jsnap,
                dev,
                mode,
                begin,
                len,
                table,
                queue <- new_spinlock!(BioList::new(), "jsnap_view_queue"),
                work <- new_work!("jsnap_view_work"),
            }),
            GFP_KERNEL,
        )
        .map_err(|err| {
            let _ = undo.attach_view(false);
            CtrError {
                msg: c"Cannot allocate view state",
                err,
            }
        })
    }

    fn dtr(&self) {
        self.wq.flush();
        let _ = self.jsnap.attach_view(false);
    }

    fn map(this: ArcBorrow<'_, Self>, mut bio: Bio) -> Mapped {
        let start = bio.sector() - this.begin;
        let kind = bio.kind();
        match kind {
            BioKind::Read | BioKind::Write => {
                let c = start / u64::from(this.jsnap.chunk_sectors);
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
                if to_store {
                    if let Some(store) = this
                        .jsnap
                        .devs()
                        .ok()
                        .as_ref()
                        .and_then(|d| d.store.as_ref())
                    {
                        bio.remap(store, start);
                        return Mapped::Remap(bio);
                    }
                }
                Self::defer(this, bio)
            }
            BioKind::Flush => match (this.mode, this.jsnap.devs()) {
                (ViewMode::Rw, Ok(d)) => match d.store.as_ref() {
                    Some(store) => {
                        bio.remap(store, 0);
                        Mapped::Remap(bio)
                    }
                    None => {
                        bio.endio(Err(EIO));
                        Mapped::Submitted
                    }
                },
                _ => {
                    // ro: nothing to flush; mirror: store writes are FUA and
                    // the journal is durable.
                    bio.endio(Ok(()));
                    Mapped::Submitted
                }
            },
            BioKind::Discard | BioKind::WriteZeroes | BioKind::Other => {
                bio.endio(Err(EOPNOTSUPP));
                Mapped::Submitted
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
                let _ = out.write_str(core::str::from_utf8(&self.table).unwrap_or(""));
            }
            StatusType::Ima => {}
        }
    }

    fn iterate_devices(&self, it: &mut DeviceIter<'_>) -> i32 {
        it.call(&self.dev, 0, self.len)
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
