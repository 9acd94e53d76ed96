// SPDX-License-Identifier: GPL-2.0

//! Bios handed to a target's `map`.
//!
//! [`Bio`] is an owned handle: it must be completed ([`Bio::endio`]),
//! remapped (returned from `map`) or parked in a [`BioList`].  Dropping it
//! completes it with an I/O error, so a forgotten bio fails instead of
//! hanging its submitter.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h)

use super::dmdev::DmDev;
use super::pmem::Pmem;
use super::sys;
use core::ptr::NonNull;
use kernel::prelude::*;

/// What a bio asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BioKind {
    /// Read data.
    Read,
    /// Write data (possibly with REQ_PREFLUSH / REQ_FUA).
    Write,
    /// An empty flush.
    Flush,
    /// Discard a range.
    Discard,
    /// Write zeroes to a range.
    WriteZeroes,
    /// Anything else.
    Other,
}

/// An owned bio.
///
/// # Invariants
///
/// `0` is a valid bio that this handle owns until it is completed,
/// remapped or handed to a [`BioList`], and that a jsnap target's `map`
/// was given: its per-bio data names the target that mapped it (see
/// [`Bio::remap`]).
pub(crate) struct Bio(NonNull<sys::bio>);

// SAFETY: a bio may be completed or submitted from any thread.
unsafe impl Send for Bio {}

impl Bio {
    /// # Safety
    ///
    /// `bio` must be valid and owned by the caller, who hands ownership
    /// over, and be a bio that `map_cb` recorded its owner in.
    pub(super) unsafe fn from_raw(bio: *mut sys::bio) -> Option<Self> {
        NonNull::new(bio).map(Self)
    }

    /// Gives up ownership without completing (the bio was remapped).
    pub(crate) fn into_raw(self) -> *mut sys::bio {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }

    fn raw(&self) -> *mut sys::bio {
        self.0.as_ptr()
    }

    /// Whether this is the bio at `p`.
    pub(super) fn is(&self, p: *const sys::bio) -> bool {
        core::ptr::eq(self.raw(), p)
    }

    /// What the bio asks for.
    pub(crate) fn kind(&self) -> BioKind {
        // SAFETY: the bio is valid by the type invariant.
        match unsafe { sys::jsnap_bio_kind(self.raw()) } {
            0 => BioKind::Read,
            1 => BioKind::Write,
            2 => BioKind::Flush,
            3 => BioKind::Discard,
            4 => BioKind::WriteZeroes,
            _ => BioKind::Other,
        }
    }

    /// First sector (relative to the mapped device, as dm passes it).
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: the bio is valid by the type invariant.
        unsafe { sys::jsnap_bio_sector(self.raw()) }
    }

    /// Size in bytes.
    pub(crate) fn bytes(&self) -> u32 {
        // SAFETY: the bio is valid by the type invariant.
        unsafe { sys::jsnap_bio_size(self.raw()) }
    }

    /// Size in sectors.
    pub(crate) fn sectors(&self) -> u32 {
        self.bytes() >> 9
    }

    /// Sets the bio's sector, keeping its device: for a bio that the
    /// target completes itself and hands to another target's journal.
    pub(crate) fn set_sector(&mut self, sector: u64) {
        // SAFETY: the bio is valid by the type invariant.
        unsafe { sys::jsnap_bio_set_sector(self.raw(), sector) }
    }

    /// Points the bio at `dev`, sector `sector`.
    ///
    /// Only a device of the target that mapped the bio (its owner, recorded
    /// by `map_cb`) is accepted: device-mapper keeps that target's devices
    /// open until the bio ends, while another target's may be put meanwhile
    /// (`EXDEV`).
    pub(crate) fn remap(&mut self, dev: &DmDev, sector: u64) -> Result {
        // SAFETY: every `Bio` is a bio a jsnap target mapped (the type
        // invariant; `Bio::from_raw` is only used for those), whose per-bio
        // data `map_cb` filled.
        if !core::ptr::eq(unsafe { sys::jsnap_bio_owner(self.raw()) }, dev.ti()) {
            return Err(EXDEV);
        }
        // SAFETY: the bio is valid, and the device is held by the target
        // that mapped it, until the bio ends.
        unsafe { sys::jsnap_bio_remap(self.raw(), dev.bdev(), sector) };
        Ok(())
    }

    /// Tags the bio for the target's `end_io` (0: no call).  The tag lives
    /// in the per-bio data of the target that mapped it.
    pub(crate) fn set_tag(&mut self, tag: usize) {
        // SAFETY: every `Bio` is a bio a jsnap target mapped (type
        // invariant), whose per-bio data `map_cb` filled.
        unsafe { sys::jsnap_bio_set_tag(self.raw(), tag as _) }
    }

    /// Asks for the write to be durable on the device when it completes
    /// (`REQ_FUA`); nothing for a bio that is not a plain write.
    pub(crate) fn set_fua(&mut self) {
        // SAFETY: the bio is valid by the type invariant.
        unsafe { sys::jsnap_bio_set_fua(self.raw()) }
    }

    /// Copies the whole bio into `pmem` at byte `off` with non-temporal
    /// stores (durable after [`Pmem::fence`]).
    pub(crate) fn copy_to_pmem(&self, pmem: &Pmem, off: usize) -> Result {
        let dst = pmem.ptr_for(off, self.bytes() as usize)?;
        // SAFETY: `dst` is valid for `bytes()` bytes of the mapping (checked
        // by `ptr_for`); the bio is valid.
        unsafe { sys::jsnap_bio_copy_to_pmem(self.raw(), dst.cast()) };
        Ok(())
    }

    /// Copies `len` bytes of `pmem` at `off` into the bio at byte `skip`.
    pub(crate) fn copy_from_pmem(
        &mut self,
        skip: u32,
        pmem: &Pmem,
        off: usize,
        len: u32,
    ) -> Result {
        if skip.checked_add(len).is_none_or(|e| e > self.bytes()) {
            return Err(EINVAL);
        }
        let src = pmem.ptr_for(off, len as usize)?;
        // SAFETY: `src` is valid for `len` bytes; the bio has room for
        // `skip + len` bytes (checked above).  The copy is machine-check
        // safe: poisoned pmem fails the read with EIO instead of a panic.
        kernel::error::to_result(unsafe {
            sys::jsnap_bio_copy_from_pmem_mc(self.raw(), skip, src.cast(), len)
        })
    }

    /// Copies `src` into the bio at byte `skip`.
    pub(crate) fn copy_from_slice(&mut self, skip: u32, src: &[u8]) -> Result {
        let len = u32::try_from(src.len()).map_err(|_| EINVAL)?;
        if skip.checked_add(len).is_none_or(|e| e > self.bytes()) {
            return Err(EINVAL);
        }
        // SAFETY: `src` is valid for `len` bytes and the bio has room.
        unsafe { sys::jsnap_bio_copy_from(self.raw(), skip, src.as_ptr().cast(), len) };
        Ok(())
    }

    /// Copies the bio's data from byte `skip` into `dst`.
    pub(crate) fn copy_to_slice(&self, skip: u32, dst: &mut [u8]) -> Result {
        let len = u32::try_from(dst.len()).map_err(|_| EINVAL)?;
        if skip.checked_add(len).is_none_or(|e| e > self.bytes()) {
            return Err(EINVAL);
        }
        // SAFETY: `dst` is valid for `len` bytes and the bio holds them.
        unsafe { sys::jsnap_bio_copy_to_buf(self.raw(), skip, dst.as_mut_ptr().cast(), len) };
        Ok(())
    }

    /// Submits a remapped bio from a worker (outside `map`).
    pub(crate) fn submit(self) {
        let p = self.into_raw();
        // SAFETY: we owned the remapped bio and hand it to the block layer.
        unsafe { sys::jsnap_bio_submit(p) }
    }

    /// Completes the bio with `res`.
    pub(crate) fn endio(self, res: Result) {
        let err = match res {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        };
        let p = self.into_raw();
        // SAFETY: we owned the bio and give it back to the block layer.
        unsafe { sys::jsnap_bio_endio(p, err) }
    }
}

impl Drop for Bio {
    fn drop(&mut self) {
        pr_err!("dm-jsnap: bio dropped without completion, failing it\n");
        // SAFETY: we own the bio (type invariant) and complete it once.
        unsafe { sys::jsnap_bio_endio(self.raw(), EIO.to_errno()) }
    }
}

/// A bio inside the target's `map` callback: what may be done with a bio
/// only there (`dm_accept_partial_bio`), besides everything a [`Bio`] can.
/// The lifetime keeps it from leaving `map`; [`MapBio::into_bio`] gives the
/// plain bio (to remap, queue or complete).
///
/// # Invariants
///
/// `mapped` is the bio device-mapper's `map` is running for, for `'a`.
/// `bio` starts as that bio, but safe code may swap another [`Bio`] in
/// through `DerefMut`: [`MapBio::accept_partial`] acts only while `bio`
/// still is `mapped`.
pub(crate) struct MapBio<'a> {
    bio: Bio,
    mapped: NonNull<sys::bio>,
    _map: core::marker::PhantomData<&'a mut ()>,
}

impl MapBio<'_> {
    /// # Safety
    ///
    /// As for [`Bio::from_raw`], and the caller is device-mapper's `map` for
    /// this bio, which lasts as long as the result.
    pub(super) unsafe fn from_raw(bio: *mut sys::bio) -> Option<Self> {
        let mapped = NonNull::new(bio)?;
        // SAFETY: by the caller.
        let bio = unsafe { Bio::from_raw(bio) }?;
        // INVARIANT: `map` runs for `mapped` while the result lives.
        Some(Self {
            bio,
            mapped,
            _map: core::marker::PhantomData,
        })
    }

    /// Keeps only the first `sectors` sectors; device-mapper resubmits the
    /// rest to `map` as a new bio.  Does nothing if another bio was swapped
    /// in (see the type invariants).
    pub(crate) fn accept_partial(&mut self, sectors: u32) {
        if self.bio.raw() != self.mapped.as_ptr() {
            return;
        }
        // device-mapper cuts only data bios (it BUG()s on zone operations
        // and duplicated bios such as flushes).
        if !matches!(self.bio.kind(), BioKind::Read | BioKind::Write) {
            return;
        }
        if sectors > 0 && sectors < self.bio.sectors() {
            // SAFETY: `bio` is the one `map` runs for, and `map` still runs
            // (type invariants); the length lies strictly inside it.
            unsafe { sys::dm_accept_partial_bio(self.bio.raw(), sectors) }
        }
    }

    /// The bio, past the point where it may be cut.
    pub(crate) fn into_bio(self) -> Bio {
        self.bio
    }
}

impl core::ops::Deref for MapBio<'_> {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        &self.bio
    }
}

impl core::ops::DerefMut for MapBio<'_> {
    fn deref_mut(&mut self) -> &mut Bio {
        &mut self.bio
    }
}

/// A FIFO of bios linked through `bi_next`; never allocates.
///
/// # Invariants
///
/// `head..tail` is a `bi_next`-linked list of bios this list owns.
pub(crate) struct BioList {
    head: *mut sys::bio,
    tail: *mut sys::bio,
    len: usize,
}

// SAFETY: the list owns its bios, which may move between threads.
unsafe impl Send for BioList {}

impl BioList {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        Self {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
            len: 0,
        }
    }

    /// Number of bios held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends `bio`.
    pub(crate) fn push(&mut self, bio: Bio) {
        let b = bio.into_raw();
        // SAFETY: `b` is a valid bio we now own; `tail` is valid if non-null.
        unsafe {
            (*b).bi_next = core::ptr::null_mut();
            if self.tail.is_null() {
                self.head = b;
            } else {
                (*self.tail).bi_next = b;
            }
        }
        self.tail = b;
        self.len += 1;
    }

    /// Puts `bio` back at the head (it could not be served yet).
    pub(crate) fn push_front(&mut self, bio: Bio) {
        let b = bio.into_raw();
        // SAFETY: `b` is a valid bio we now own.
        unsafe { (*b).bi_next = self.head };
        if self.head.is_null() {
            self.tail = b;
        }
        self.head = b;
        self.len += 1;
    }

    /// Removes the oldest bio.
    pub(crate) fn pop(&mut self) -> Option<Bio> {
        let b = NonNull::new(self.head)?;
        // SAFETY: `b` is the valid head of our list.
        unsafe {
            self.head = (*b.as_ptr()).bi_next;
            (*b.as_ptr()).bi_next = core::ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        self.len -= 1;
        Some(Bio(b))
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        while let Some(b) = self.pop() {
            b.endio(Err(EIO));
        }
    }
}
