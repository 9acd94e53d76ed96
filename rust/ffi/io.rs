// SPDX-License-Identifier: GPL-2.0

//! Synchronous block I/O for the destage and copy workers, through dm-io.
//!
//! C header: [`include/linux/dm-io.h`](srctree/include/linux/dm-io.h)

use super::dm::DmDev;
use super::pmem::Pmem;
use super::sys;
use core::ptr::NonNull;
use kernel::error::to_result;
use kernel::prelude::*;

/// A dm-io client (its own mempools, so I/O makes progress under memory
/// pressure).
///
/// # Invariants
///
/// `0` is a live client, destroyed on drop.
pub(crate) struct IoClient(NonNull<sys::dm_io_client>);

// SAFETY: dm-io clients may be used concurrently from any thread.
unsafe impl Send for IoClient {}
// SAFETY: as above.
unsafe impl Sync for IoClient {}

impl IoClient {
    /// Creates a client.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions.
        let c = unsafe { sys::jsnap_io_client_create() };
        NonNull::new(c).map(Self).ok_or(ENOMEM)
    }

    fn io(
        &self,
        dev: &DmDev,
        sector: u64,
        sectors: u64,
        mem: *mut u8,
        write: bool,
        fua: bool,
    ) -> Result {
        // SAFETY: the caller checked that `mem` is valid for `sectors * 512`
        // bytes; `dev` is held; the client is live.
        to_result(unsafe {
            sys::jsnap_io(
                self.0.as_ptr(),
                dev.bdev(),
                sector,
                sectors,
                mem.cast(),
                write,
                fua,
            )
        })
    }

    /// Writes `sectors` sectors of pmem at byte `off` to `dev` at `sector`.
    pub(crate) fn write_from_pmem(
        &self,
        dev: &DmDev,
        sector: u64,
        pmem: &Pmem,
        off: usize,
        sectors: u64,
    ) -> Result {
        let len = usize::try_from(sectors << 9).map_err(|_| EINVAL)?;
        let p = pmem.ptr_for(off, len)?;
        self.io(dev, sector, sectors, p, true, false)
    }

    /// Writes several runs of pmem to `dev` at once (all in flight
    /// together) and waits for all: `(sector, pmem byte offset, sectors)`.
    pub(crate) fn write_many_from_pmem(
        &self,
        dev: &DmDev,
        pmem: &Pmem,
        runs: &[(u64, usize, u64)],
    ) -> Result {
        let n = runs.len();
        let mut sectors = KVec::with_capacity(n, GFP_KERNEL)?;
        let mut counts = KVec::with_capacity(n, GFP_KERNEL)?;
        let mut mems: KVec<*mut c_void> = KVec::with_capacity(n, GFP_KERNEL)?;
        for &(sector, off, count) in runs {
            let len = usize::try_from(count << 9).map_err(|_| EINVAL)?;
            mems.push(pmem.ptr_for(off, len)?.cast(), GFP_KERNEL)?;
            sectors.push(sector, GFP_KERNEL)?;
            counts.push(count, GFP_KERNEL)?;
        }
        let n = u32::try_from(n).map_err(|_| EINVAL)?;
        // SAFETY: the three arrays hold `n` entries; every `mems[i]` is
        // valid for `counts[i] * 512` bytes of the mapping (checked by
        // `ptr_for`) and outlives the call, which waits for all I/O; `dev`
        // is held; the client is live.
        to_result(unsafe {
            sys::jsnap_io_write_many(
                self.0.as_ptr(),
                dev.bdev(),
                sectors.as_ptr(),
                counts.as_ptr(),
                mems.as_ptr(),
                n,
            )
        })
    }

    /// Reads `buf.len()` bytes (a multiple of 512) from `dev` at `sector`.
    pub(crate) fn read(&self, dev: &DmDev, sector: u64, buf: &mut [u8]) -> Result {
        if buf.len() % 512 != 0 {
            return Err(EINVAL);
        }
        self.io(
            dev,
            sector,
            (buf.len() >> 9) as u64,
            buf.as_mut_ptr(),
            false,
            false,
        )
    }

    /// Writes `buf` (a multiple of 512 bytes) to `dev` at `sector`.
    pub(crate) fn write(&self, dev: &DmDev, sector: u64, buf: &[u8], fua: bool) -> Result {
        if buf.len() % 512 != 0 {
            return Err(EINVAL);
        }
        // dm-io does not write to memory on a WRITE request.
        self.io(
            dev,
            sector,
            (buf.len() >> 9) as u64,
            buf.as_ptr().cast_mut(),
            true,
            fua,
        )
    }
}

impl Drop for IoClient {
    fn drop(&mut self) {
        // SAFETY: live by the type invariant; no I/O is in flight (all I/O
        // through this client is synchronous).
        unsafe { sys::jsnap_io_client_destroy(self.0.as_ptr()) }
    }
}

/// Flushes the volatile write cache of `dev`.
pub(crate) fn flush(dev: &DmDev) -> Result {
    // SAFETY: `dev` is held.
    to_result(unsafe { sys::jsnap_flush(dev.bdev()) })
}
