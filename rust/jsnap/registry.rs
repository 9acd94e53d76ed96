// SPDX-License-Identifier: GPL-2.0

//! The registry of live `jsnap` targets, keyed by the device number of
//! their mapped device, so that a `jsnap-view` can find the volume whose
//! snapshot it exposes.
//!
//! One registry is made by the module initialiser and handed to both target
//! registrations, which pass it to every constructor (as binder's context
//! is shared by its devices): no global state.  Its mutex is never taken on
//! the I/O path.

use super::Jsnap;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// Every `jsnap` instance, newest last.
#[pin_data]
pub(crate) struct Registry {
    #[pin]
    list: Mutex<KVec<(u32, Arc<Jsnap>)>>,
}

impl Registry {
    /// An empty registry.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            list <- new_mutex!(KVec::new(), "jsnap_registry"),
        })
    }

    /// Adds `j` as the newest instance for `devt`, unless a view is attached
    /// to an instance of `devt` (EBUSY): the check and the insertion are one
    /// step with respect to [`Registry::attach_view`].
    pub(crate) fn add_unless_viewed(&self, devt: u32, j: Arc<Jsnap>) -> Result {
        let mut reg = self.list.lock();
        if reg.iter().any(|(d, x)| *d == devt && x.views() > 0) {
            return Err(EBUSY);
        }
        reg.push((devt, j), GFP_KERNEL)?;
        Ok(())
    }

    /// Attaches a view to the newest instance for `devt` (see
    /// `Jsnap::attach_view`), atomically with respect to
    /// [`Registry::add_unless_viewed`].
    pub(crate) fn attach_view(&self, devt: u32) -> Result<Arc<Jsnap>> {
        let reg = self.list.lock();
        let j = reg
            .iter()
            .rev()
            .find(|(d, _)| *d == devt)
            .map(|(_, j)| j.clone())
            .ok_or(ENODEV)?;
        j.attach_view(true)?;
        Ok(j)
    }

    /// Removes instance `j`.
    pub(crate) fn remove(&self, j: &Jsnap) {
        let mut reg = self.list.lock();
        if let Some(i) = reg.iter().position(|(_, x)| core::ptr::eq(&**x, j)) {
            let _ = reg.remove(i);
        }
    }

    /// The newest instance for `devt`.
    pub(crate) fn find(&self, devt: u32) -> Option<Arc<Jsnap>> {
        self.list
            .lock()
            .iter()
            .rev()
            .find(|(d, _)| *d == devt)
            .map(|(_, j)| j.clone())
    }
}
