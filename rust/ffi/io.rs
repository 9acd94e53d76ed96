// SPDX-License-Identifier: GPL-2.0

//! Synchronous block I/O for the destage and copy workers, through dm-io,
//! and device-to-device copies through dm-kcopyd.
//!
//! C headers: [`include/linux/dm-io.h`](srctree/include/linux/dm-io.h),
//! [`include/linux/dm-kcopyd.h`](srctree/include/linux/dm-kcopyd.h)

use super::dmdev::DmDev;
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

// SAFETY: a dm-io client is a pair of mempools and a bioset, not tied to
// the thread that made it; it may be destroyed from any thread.
unsafe impl Send for IoClient {}
// SAFETY: `dm_io` may be called concurrently on one client (its mempools
// and bioset are thread-safe); `&IoClient` offers nothing else.
unsafe impl Sync for IoClient {}

impl IoClient {
    /// Creates a client.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: `dm_io_client_create` takes no argument; the result is
        // checked below and owned by `Self` (destroyed once, on drop).
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
        // bytes of kmalloc or vmalloc memory (what `jsnap_io` tells apart);
        // `dev` is held; the client is live.
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

    /// Writes several runs of pmem to `dev` at once (all in flight
    /// together) and waits for all: `(sector, pmem byte offset, sectors)`.
    pub(crate) fn write_many_from_pmem(
        &self,
        dev: &DmDev,
        pmem: &Pmem,
        runs: &[(u64, usize, u64)],
    ) -> Result {
        let n = runs.len();
        let mut sectors = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut counts = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut mems: KVVec<*mut c_void> = KVVec::with_capacity(n, GFP_KERNEL)?;
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

    /// Reads the first `len` bytes (a multiple of 512, not 0) of `buf` from
    /// `dev` at `sector`.  The buffer is a `KVVec`, kmalloc or vmalloc
    /// memory (the two kinds dm-io can build a bio from: a slice of a
    /// static or of the stack is neither).
    pub(crate) fn read(&self, dev: &DmDev, sector: u64, buf: &mut KVVec<u8>, len: usize) -> Result {
        if len == 0 || len % 512 != 0 {
            return Err(EINVAL);
        }
        // Non-empty, so inside the vector's allocation.
        let b = buf.get_mut(..len).ok_or(EINVAL)?;
        self.io(dev, sector, (len >> 9) as u64, b.as_mut_ptr(), false, false)
    }

    /// Writes the first `len` bytes (a multiple of 512, not 0) of `buf` to
    /// `dev` at `sector` (see [`IoClient::read`] for the buffer).
    pub(crate) fn write(&self, dev: &DmDev, sector: u64, buf: &KVVec<u8>, len: usize, fua: bool) -> Result {
        if len == 0 || len % 512 != 0 {
            return Err(EINVAL);
        }
        let b = buf.get(..len).ok_or(EINVAL)?;
        // dm-io does not write to memory on a WRITE request.
        self.io(dev, sector, (len >> 9) as u64, b.as_ptr().cast_mut(), true, fua)
    }
}

impl Drop for IoClient {
    fn drop(&mut self) {
        // SAFETY: live by the type invariant; no I/O is in flight (all I/O
        // through this client is synchronous).
        unsafe { sys::jsnap_io_client_destroy(self.0.as_ptr()) }
    }
}

/// A dm-kcopyd client: copies between devices with the kernel's copy
/// engine (its own reserved pages, sub-jobs in parallel).
///
/// # Invariants
///
/// `0` is a live client, destroyed on drop.
pub(crate) struct Kcopyd(NonNull<sys::dm_kcopyd_client>);

// SAFETY: a kcopyd client (its pages and its own workqueue) is not tied to
// the thread that made it; it may be destroyed from any thread.
unsafe impl Send for Kcopyd {}
// SAFETY: `dm_kcopyd_copy` may be called concurrently on one client (jobs
// are queued under the client's locks); `&Kcopyd` offers nothing else.
unsafe impl Sync for Kcopyd {}

impl Kcopyd {
    /// Creates a client.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: `dm_kcopyd_client_create` takes only a null throttle; the
        // result is checked below and owned by `Self`.
        let c = unsafe { sys::jsnap_kcopyd_create() };
        NonNull::new(c).map(Self).ok_or(ENOMEM)
    }

    /// Copies the runs `(sector, sectors)` of `src` to the same sectors of
    /// `dst`, all in flight together, and waits for all of them.
    pub(crate) fn copy_many(&self, src: &DmDev, dst: &DmDev, runs: &[(u64, u64)]) -> Result {
        let n = runs.len();
        let mut sectors = KVVec::with_capacity(n, GFP_KERNEL)?;
        let mut counts = KVVec::with_capacity(n, GFP_KERNEL)?;
        for &(sector, count) in runs {
            sectors.push(sector, GFP_KERNEL)?;
            counts.push(count, GFP_KERNEL)?;
        }
        let n = u32::try_from(n).map_err(|_| EINVAL)?;
        // SAFETY: both arrays hold `n` entries and outlive the call, which
        // waits for every job; both devices are held; the client is live.
        to_result(unsafe {
            sys::jsnap_kcopyd_copy_many(
                self.0.as_ptr(),
                src.bdev(),
                dst.bdev(),
                sectors.as_ptr(),
                counts.as_ptr(),
                n,
            )
        })
    }
}

impl Drop for Kcopyd {
    fn drop(&mut self) {
        // SAFETY: live by the type invariant; no job is in flight (every
        // copy waits for its jobs).
        unsafe { sys::jsnap_kcopyd_destroy(self.0.as_ptr()) }
    }
}

/// Flushes the volatile write cache of `dev`.
pub(crate) fn flush(dev: &DmDev) -> Result {
    // SAFETY: `dev` is held.
    to_result(unsafe { sys::jsnap_flush(dev.bdev()) })
}
