// SPDX-License-Identifier: GPL-2.0

//! One underlying device of a target, opened with `dm_get_device` and put
//! on drop.  Its home is a target's [`DevSet`](super::devices::DevSet) (or
//! a constructor's slots), which decides when it is put; the DAX mapping of
//! the journal ([`Pmem`](super::pmem::Pmem)) owns the one it maps.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)

use super::sys;
use core::ptr::NonNull;

/// An underlying device opened with `dm_get_device`.
///
/// # Invariants
///
/// `dev` is a reference obtained from `dm_get_device(ti, …)` that is put
/// exactly once, on drop, while `ti` is still valid: a `DmDev` lives only
/// in the [`Slots`](super::devices::Slots) of a constructor (dropped before
/// `ctr` returns) or of a [`DevSet`](super::devices::DevSet) (revoked by
/// `dtr_cb`, or by `ctr_cb` when `ctr` fails), or in the [`Pmem`](super::pmem::Pmem) mapping
/// that such a set holds, and is never moved out of them.
pub(crate) struct DmDev {
    ti: NonNull<sys::dm_target>,
    dev: NonNull<sys::dm_dev>,
}

// SAFETY: a `dm_dev` reference may be used and put from any thread.
unsafe impl Send for DmDev {}
// SAFETY: all methods taking `&self` only read immutable fields of `dm_dev`.
unsafe impl Sync for DmDev {}

impl DmDev {
    /// # Safety
    ///
    /// `dev` must have been returned by `dm_get_device(ti, …)`, and the
    /// result must be kept as the type invariant says.
    pub(super) unsafe fn new(ti: NonNull<sys::dm_target>, dev: NonNull<sys::dm_dev>) -> Self {
        // INVARIANT: by the caller.
        Self { ti, dev }
    }

    /// The target that holds this device.
    pub(super) fn ti(&self) -> *mut sys::dm_target {
        self.ti.as_ptr()
    }

    /// Raises a device-mapper event on the table that holds this device
    /// (what `dmsetup wait` and dmeventd wait for).  May sleep.
    pub(crate) fn table_event(&self) {
        // SAFETY: `ti` is valid while `self` is (type invariant), and so is
        // its table, which holds it.
        unsafe { sys::jsnap_table_event(self.ti.as_ptr()) }
    }

    pub(super) fn raw(&self) -> *mut sys::dm_dev {
        self.dev.as_ptr()
    }

    pub(super) fn bdev(&self) -> *mut sys::block_device {
        // SAFETY: `dev` is valid by the type invariant.
        unsafe { sys::jsnap_dev_bdev(self.dev.as_ptr()) }
    }

    /// Size of the device in sectors.
    pub(crate) fn sectors(&self) -> u64 {
        // SAFETY: the block device of a held `dm_dev` is valid.
        unsafe { sys::jsnap_bdev_sectors(self.bdev()) }
    }

    /// Whether the device supports DAX.
    pub(crate) fn has_dax(&self) -> bool {
        // SAFETY: `dev` is valid by the type invariant.
        unsafe { sys::jsnap_dev_has_dax(self.dev.as_ptr()) }
    }

    /// Whether the device's DAX stores are durable once flushed from the
    /// CPU caches (not so for virtio-pmem).
    pub(crate) fn dax_synchronous(&self) -> bool {
        // SAFETY: `dev` is valid by the type invariant.
        unsafe { sys::jsnap_dev_dax_synchronous(self.dev.as_ptr()) }
    }

    /// The device number, to tell devices apart.
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: `dev` is valid by the type invariant.
        unsafe { sys::jsnap_dev_devt(self.dev.as_ptr()) }
    }
}

impl Drop for DmDev {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `ti` is valid and `dev` is held.
        unsafe { sys::dm_put_device(self.ti.as_ptr(), self.dev.as_ptr()) }
    }
}
