// SPDX-License-Identifier: GPL-2.0

//! An owned workqueue (the kernel crate offers only the system ones).
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)

use super::sys;
use core::ptr::NonNull;
use kernel::prelude::*;
use kernel::workqueue::{Queue, RawWorkItem};

/// A workqueue allocated with `WQ_MEM_RECLAIM`, destroyed on drop.
///
/// # Invariants
///
/// `0` is a live workqueue owned by `self`.
pub(crate) struct OwnedQueue(NonNull<sys::workqueue_struct>);

// SAFETY: a workqueue is not tied to the thread that allocated it; it may
// be destroyed from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: `queue_work` and `flush_workqueue` may be called concurrently
// from any thread; `&OwnedQueue` offers nothing else.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Allocates a workqueue named `name`.
    pub(crate) fn new(name: &CStr) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated; it is copied by the callee.
        let wq = unsafe { sys::jsnap_alloc_workqueue(name.as_char_ptr()) };
        NonNull::new(wq).map(Self).ok_or(ENOMEM)
    }

    fn queue(&self) -> &Queue {
        // SAFETY: the queue is live for the lifetime of `self`.
        unsafe { Queue::from_raw(self.0.as_ptr().cast()) }
    }

    /// Queues `w` unless already queued.
    pub(crate) fn enqueue<W: RawWorkItem<ID> + Send + 'static, const ID: u64>(
        &self,
        w: W,
    ) -> W::EnqueueOutput {
        self.queue().enqueue(w)
    }

    /// Waits for every queued work item to finish.
    pub(crate) fn flush(&self) {
        // SAFETY: live by the type invariant.
        unsafe { sys::jsnap_flush_workqueue(self.0.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: live by the type invariant; destroy drains it first.
        unsafe { sys::jsnap_destroy_workqueue(self.0.as_ptr()) }
    }
}

/// While alive, every allocation of this thread behaves as `GFP_NOIO`
/// (`memalloc_noio_save`): workers that do I/O for a block device must not
/// recurse into reclaim that could wait for that same I/O.
pub(crate) struct NoIo {
    flags: u32,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl NoIo {
    /// Enters the scope.
    pub(crate) fn begin() -> Self {
        // SAFETY: no preconditions; paired with `memalloc_noio_restore` in
        // `drop` on the same thread (`NoIo` is not `Send`).
        let flags = unsafe { sys::jsnap_noio_begin() };
        Self {
            flags,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for NoIo {
    fn drop(&mut self) {
        // SAFETY: restores what `begin` saved, on the same thread.
        unsafe { sys::jsnap_noio_end(self.flags) }
    }
}
