// SPDX-License-Identifier: GPL-2.0

//! A value that can be revoked while other threads may still hold the
//! object that contains it, and whose users may sleep.
//!
//! `kernel::revocable::Revocable` protects its users with RCU, so they may
//! not sleep; block I/O does.  This one uses SRCU: [`SleepRevocable::access`]
//! enters an SRCU read section and checks the revoked flag;
//! [`SleepRevocable::revoke`] sets the flag, waits for every read section
//! with `synchronize_srcu` and only then drops the value.
//!
//! Each target's devices and pmem mapping live in one, inside its
//! [`DevSet`](super::devices::DevSet): a `jsnap-view` holds the `jsnap`
//! state alive, but when the `jsnap` table is destroyed (even by `dmsetup
//! remove --force` with the view still open) its devices must be put there
//! and then, and nothing may touch them after.

use core::cell::UnsafeCell;
use core::mem::ManuallyDrop;
use core::ops::Deref;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::new_srcu;
use kernel::prelude::*;
use kernel::sync::srcu::Guard;
use kernel::sync::Srcu;

/// A sleepable revocable value.
///
/// # Invariants
///
/// `data` is initialised until `revoked` is set by [`Self::revoke`], which
/// drops it only after every [`Access`] that observed `revoked == false`
/// has ended (SRCU grace period).
#[pin_data(PinnedDrop)]
pub(crate) struct SleepRevocable<T> {
    #[pin]
    srcu: Srcu,
    revoked: AtomicBool,
    data: UnsafeCell<ManuallyDrop<T>>,
}

// SAFETY: `T` is only shared (`&T` through `Access`) and dropped once, from
// any thread.
unsafe impl<T: Send + Sync> Sync for SleepRevocable<T> {}
// SAFETY: moving the container moves `T`.
unsafe impl<T: Send> Send for SleepRevocable<T> {}

impl<T> SleepRevocable<T> {
    /// Wraps `data`.
    pub(crate) fn new(data: T) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            srcu <- new_srcu!("jsnap_revocable"),
            revoked: AtomicBool::new(false),
            data: UnsafeCell::new(ManuallyDrop::new(data)),
        }? Error)
    }

    /// The value, unless revoked; valid while the returned guard lives.
    pub(crate) fn access(&self) -> Option<Access<'_, T>> {
        let guard = self.srcu.read_lock();
        if self.revoked.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: not revoked when checked inside the read section, so by
        // the type invariant `data` stays initialised until `guard` ends.
        let data = unsafe { &**self.data.get() };
        Some(Access {
            _guard: guard,
            data,
        })
    }

    /// Revokes and drops the value, waiting for current users.  Must not be
    /// called while the caller holds an [`Access`] of `self`.
    pub(super) fn revoke(&self) {
        if self.revoked.swap(true, Ordering::AcqRel) {
            return;
        }
        self.srcu.synchronize();
        // SAFETY: `revoked` was set by us (once); every `Access` that saw it
        // clear has ended; new ones see it set.  So nobody references
        // `data` and it is dropped exactly once.
        unsafe { ManuallyDrop::drop(&mut *self.data.get()) };
    }
}

/// Shared access to a [`SleepRevocable`] value inside an SRCU read section.
pub(crate) struct Access<'a, T> {
    _guard: Guard<'a>,
    data: &'a T,
}

impl<T> Deref for Access<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.data
    }
}

#[pinned_drop]
impl<T> PinnedDrop for SleepRevocable<T> {
    fn drop(self: Pin<&mut Self>) {
        if !self.revoked.load(Ordering::Acquire) {
            // SAFETY: not revoked, so `data` is initialised; we are the last
            // user (dropping the container).
            unsafe { ManuallyDrop::drop(&mut *self.data.get()) };
        }
    }
}
