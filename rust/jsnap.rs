// SPDX-License-Identifier: GPL-2.0

//! The `jsnap` target: the production volume.
//!
//! Table line (DESIGN.md §2.1):
//! `<start> <len> jsnap <production_dev> <journal_dev> <store_dev|-> <chunk_sectors> [<#features> <feature>*]`

use crate::ffi::bio::{Bio, BioKind};
use crate::ffi::dm::{Ctr, CtrError, DeviceIter, DmDev, Mapped, Out, StatusType, Target};
use crate::logic::format;
use crate::logic::table::{self, Features};
use core::fmt::Write;
use kernel::prelude::*;
use kernel::sync::Arc;

/// Longest table line we keep for `dmsetup table`.
const MAX_TABLE: usize = 1024;

/// One `jsnap` target instance.
pub(crate) struct Jsnap {
    prod: DmDev,
    journal: DmDev,
    store: Option<DmDev>,
    len: u64,
    chunk_sectors: u32,
    features: Features,
    geometry: format::Geometry,
    /// The table arguments exactly as loaded.
    table: KVec<u8>,
}

/// Converts the C arguments to `&str`, refusing non-UTF-8.
fn str_args<'a>(args: &[&'a CStr], out: &mut [&'a str; 64]) -> core::result::Result<usize, CtrError> {
    for (slot, a) in out.iter_mut().zip(args) {
        *slot = a.to_str().map_err(|_| CtrError::inval(c"Arguments must be valid UTF-8"))?;
    }
    Ok(args.len().min(64))
}

/// Remembers the arguments for `dmsetup table`.
fn table_line(args: &[&str]) -> core::result::Result<KVec<u8>, CtrError> {
    let mut line = KVec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            line.push(b' ', GFP_KERNEL).map_err(|_| CtrError { msg: c"Out of memory", err: ENOMEM })?;
        }
        line.extend_from_slice(a.as_bytes(), GFP_KERNEL)
            .map_err(|_| CtrError { msg: c"Out of memory", err: ENOMEM })?;
    }
    if line.len() > MAX_TABLE {
        return Err(CtrError::inval(c"Table line too long"));
    }
    Ok(line)
}

impl Jsnap {
    fn open_devices(
        ti: &mut Ctr<'_>,
        args: &[&CStr],
        store_none: bool,
    ) -> core::result::Result<(DmDev, DmDev, Option<DmDev>), CtrError> {
        let len = ti.len();
        let prod = ti
            .get_device(args[0], true)
            .map_err(|err| CtrError { msg: c"Error opening production device", err })?;
        if prod.sectors() < len {
            return Err(CtrError::inval(c"Production device is smaller than the target length"));
        }
        let journal = ti
            .get_device(args[1], true)
            .map_err(|err| CtrError { msg: c"Error opening journal device", err })?;
        if journal.devt() == prod.devt() {
            return Err(CtrError::inval(c"Production and journal must be different devices"));
        }
        if !journal.has_dax() {
            return Err(CtrError::inval(c"Journal device does not support DAX"));
        }
        let store = if store_none {
            None
        } else {
            let store = ti
                .get_device(args[2], true)
                .map_err(|err| CtrError { msg: c"Error opening store device", err })?;
            if store.devt() == prod.devt() || store.devt() == journal.devt() {
                return Err(CtrError::inval(c"Store must differ from production and journal"));
            }
            if store.sectors() < len {
                return Err(CtrError::inval(c"Store device is smaller than the target length"));
            }
            Some(store)
        };
        Ok((prod, journal, store))
    }
}

#[vtable]
impl Target for Jsnap {
    const NAME: &'static CStr = c"jsnap";
    const VERSION: [u32; 3] = [0, 1, 0];

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
        let chunk_sectors = table::parse_chunk_sectors(s[3]).map_err(|e| CtrError::inval(e.msg()))?;
        let features = table::parse_features(&s[4..]).map_err(|e| CtrError::inval(e.msg()))?;
        let len = ti.len();
        if len == 0 {
            return Err(CtrError::inval(c"Target length must not be zero"));
        }
        let table = table_line(s)?;
        let (prod, journal, store) = Self::open_devices(ti, args, s[2] == "-")?;
        let geometry = format::plan_geometry(journal.sectors() << 9, len, chunk_sectors)
            .map_err(|_| CtrError::inval(c"Journal device is too small for this target"))?;
        ti.setup(0, true);
        let this = Arc::new(
            Self { prod, journal, store, len, chunk_sectors, features, geometry, table },
            GFP_KERNEL,
        )
        .map_err(|_| CtrError { msg: c"Out of memory", err: ENOMEM })?;
        Ok(this)
    }

    fn map(&self, mut bio: Bio) -> Mapped {
        match bio.kind() {
            BioKind::Read | BioKind::Write | BioKind::Flush | BioKind::Discard => {
                let sector = bio.sector();
                bio.remap(&self.prod, sector);
                Mapped::Remap(bio)
            }
            BioKind::WriteZeroes | BioKind::Other => {
                bio.endio(Err(EOPNOTSUPP));
                Mapped::Submitted
            }
        }
    }

    fn status(&self, kind: StatusType, out: &mut Out<'_>) {
        match kind {
            StatusType::Info => {
                let chunks = self.len.div_ceil(u64::from(self.chunk_sectors));
                let _ = write!(
                    out,
                    "journal_used=0 journal_size={} pending=0 snapshot=none preserved=0 \
                     chunks={} hydration=off errors=0 state=ok",
                    self.geometry.ring_sectors << 9,
                    chunks
                );
            }
            StatusType::Table => {
                let _ = out.write_str(core::str::from_utf8(&self.table).unwrap_or(""));
            }
            StatusType::Ima => {}
        }
    }

    fn message(&self, args: &[&CStr], _out: &mut Out<'_>) -> Result {
        let mut sbuf = [""; 64];
        let n = str_args(args, &mut sbuf).map_err(|e| e.err)?;
        match table::parse_message(&sbuf[..n]) {
            Ok(table::Message::Drain) => Ok(()),
            Ok(_) => {
                pr_err!("dm-jsnap: message not supported yet\n");
                Err(EOPNOTSUPP)
            }
            Err(e) => {
                pr_err!("dm-jsnap: {}\n", e.msg().to_str().unwrap_or("bad message"));
                Err(EINVAL)
            }
        }
    }

    fn iterate_devices(&self, it: &mut DeviceIter<'_>) -> i32 {
        it.call(&self.prod, 0, self.len)
    }
}
