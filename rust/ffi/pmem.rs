// SPDX-License-Identifier: GPL-2.0

//! Direct access to the pmem journal through DAX.
//!
//! The journal device is mapped once into the kernel address space (as
//! dm-writecache does).  Writes use non-temporal stores
//! (`memcpy_flushcache`) and become durable at the next [`Pmem::fence`]
//! (`pmem_wmb`).  Every access is bounds-checked against the mapping.
//!
//! C header: [`include/linux/dax.h`](srctree/include/linux/dax.h)

use super::dmdev::DmDev;
use super::sys;
use core::ptr::NonNull;
use kernel::prelude::*;

/// A mapped pmem range and the device it maps.
///
/// # Invariants
///
/// `addr..addr+len` is mapped kernel memory of the DAX device `dev` for the
/// lifetime of `self`: `Pmem` owns `dev`, and `drop` unmaps before the
/// field `dev` is put.
///
/// The mapping is device memory that Rust never references: every access
/// is a bounds-checked copy by a C routine (`memcpy_flushcache`,
/// `copy_mc_to_kernel`, dm-io reading it for a write), exactly as
/// `kernel::io` reaches MMIO through `&self`.  Copies that overlap in time
/// and range therefore give unspecified bytes in the range, never
/// undefined behaviour outside it; keeping them apart is the caller's
/// protocol, not a memory-safety condition (the journal's ring reservation
/// hands each write its own range, the `sb` mutex serialises superblock
/// commits, the `validity_io` mutex the validity map words).  No lock or range
/// check is taken per access.
pub(crate) struct Pmem {
    addr: NonNull<u8>,
    len: usize,
    vmapped: bool,
    dev: DmDev,
}

// SAFETY: the mapping may be used and unmapped from any thread.
unsafe impl Send for Pmem {}
// SAFETY: every method taking `&self` copies through C routines only, never
// forming a Rust reference to the mapping (see the type documentation).
unsafe impl Sync for Pmem {}

impl Pmem {
    /// Maps the first `bytes` bytes (a multiple of the page size) of `dev`,
    /// which the mapping owns from now on.
    pub(super) fn map(dev: DmDev, bytes: u64) -> Result<Self> {
        let len = usize::try_from(bytes).map_err(|_| EINVAL)?;
        // The C side maps whole pages: a length that is not a multiple of
        // the page size would leave its tail outside the mapping.
        if len == 0 || len % kernel::page::PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let mut vmapped = false;
        // SAFETY: `dev` is a held device; `vmapped` is a valid out pointer.
        let p = unsafe { sys::jsnap_dax_map(dev.raw(), bytes, &mut vmapped) };
        let p = kernel::error::from_err_ptr(p)?;
        let addr = NonNull::new(p.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: mapped above for `bytes` bytes of `dev`.
        Ok(Self {
            addr,
            len,
            vmapped,
            dev,
        })
    }

    /// The device mapped.
    pub(super) fn dev(&self) -> &DmDev {
        &self.dev
    }

    /// Pointer to `off..off+len`, bounds-checked, for the copy routines of
    /// this layer only.
    pub(super) fn ptr_for(&self, off: usize, len: usize) -> Result<*mut u8> {
        match off.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: `off + len <= self.len`, the length of the mapping
                // (type invariant), so the result stays in it.
                Ok(unsafe { self.addr.as_ptr().add(off) })
            }
            _ => Err(ERANGE),
        }
    }

    /// Persistent copy of `data` to `off` (durable after [`Pmem::fence`]).
    pub(crate) fn write(&self, off: usize, data: &[u8]) -> Result {
        let dst = self.ptr_for(off, data.len())?;
        // SAFETY: `dst` is valid for `data.len()` bytes.
        unsafe { sys::jsnap_pmem_copy(dst.cast(), data.as_ptr().cast(), data.len()) };
        Ok(())
    }

    /// Orders and makes durable every preceding [`Pmem::write`].
    pub(crate) fn fence(&self) {
        // SAFETY: `pmem_wmb` is a store fence: no argument, no memory
        // access of its own.
        unsafe { sys::jsnap_pmem_fence() }
    }

    /// Test build: a destage batch overwrote chunks it preserved (shadow
    /// pmem with `fault_cut_after_cow=1` cuts the power at the next fence).
    #[cfg(jsnap_fault)]
    pub(crate) fn cow_overwritten() {
        // SAFETY: reads two flags and sets a counter; no arguments.
        unsafe { sys::jsnap_shadow_cow_overwritten() }
    }

    /// Copies `off..off+buf.len()` into `buf` with the machine-check-safe
    /// copy: `EIO` if the range holds poisoned memory.
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) -> Result {
        let src = self.ptr_for(off, buf.len())?;
        // SAFETY: `src` is valid for `buf.len()` bytes and does not overlap
        // `buf` (kernel memory outside the mapping).
        kernel::error::to_result(unsafe {
            sys::jsnap_pmem_read_mc(buf.as_mut_ptr().cast(), src.cast(), buf.len())
        })
    }

    /// Persistent copy of `src..src+len` to `dst..dst+len` within the
    /// mapping (durable after [`Pmem::fence`]), read with the
    /// machine-check-safe copy: `EIO` if the source holds poisoned memory
    /// (the destination then holds part of the copy), `EINVAL` if the two
    /// ranges overlap.
    pub(crate) fn copy_within(&self, src: usize, dst: usize, len: usize) -> Result {
        let s = self.ptr_for(src, len)?;
        let d = self.ptr_for(dst, len)?;
        // Both ends are in bounds (checked above), so neither sum overflows.
        if src < dst + len && dst < src + len {
            return Err(EINVAL);
        }
        // SAFETY: `s` and `d` are valid for `len` bytes of the mapping and
        // the ranges are disjoint (checked above).
        kernel::error::to_result(unsafe { sys::jsnap_pmem_move_mc(d.cast(), s.cast(), len) })
    }

    /// CRC32C (standard convention) of `off..off+len`, read with the
    /// machine-check-safe copy: `EIO` if the range holds poisoned memory.
    pub(crate) fn crc(&self, off: usize, len: usize) -> Result<u32> {
        let src = self.ptr_for(off, len)?;
        let mut crc = 0u32;
        // SAFETY: `src` is valid for `len` bytes; `crc` is a valid out
        // pointer.
        kernel::error::to_result(unsafe { sys::jsnap_pmem_crc_mc(src.cast(), len, &mut crc) })?;
        Ok(crc)
    }
}

impl Drop for Pmem {
    fn drop(&mut self) {
        // SAFETY: mapped by `jsnap_dax_map` with this `vmapped` flag.
        unsafe { sys::jsnap_dax_unmap(self.addr.as_ptr().cast(), self.vmapped) }
    }
}

/// CRC32C (standard convention) of `data`, using the kernel's accelerated
/// implementation.
pub(crate) fn crc32c(crc: u32, data: &[u8]) -> u32 {
    // SAFETY: `data` is valid for its length.
    unsafe { sys::jsnap_crc32c(crc, data.as_ptr().cast(), data.len()) }
}

/// Fills `buf` with random bytes (journal UUIDs).
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { sys::jsnap_random(buf.as_mut_ptr().cast(), buf.len()) }
}

/// A page of zeroes for clearing pmem.
static ZEROES: [u8; 4096] = [0; 4096];

impl Pmem {
    /// Persistently zeroes `off..off+len` (durable after [`Pmem::fence`]).
    pub(crate) fn zero(&self, off: usize, len: usize) -> Result {
        self.ptr_for(off, len)?;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROES.len());
            self.write(off + done, &ZEROES[..n])?;
            done += n;
        }
        Ok(())
    }
}
