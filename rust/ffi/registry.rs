// SPDX-License-Identifier: GPL-2.0

//! The registry of live `jsnap` targets, keyed by the device number of
//! their mapped device, so that a `jsnap-view` can find the volume whose
//! snapshot it exposes.  A global lock is the only way to share state
//! between two targets' constructors; it is never taken on the I/O path.

use crate::jsnap::Jsnap;
use kernel::prelude::*;
use kernel::sync::Arc;

kernel::sync::global_lock! {
    // SAFETY: initialised by `init` in the module initialiser before any
    // target can be constructed.
    unsafe(uninit) static REGISTRY: Mutex<KVec<(u32, Arc<Jsnap>)>> = KVec::new();
}

/// Initialises the registry; called once from the module initialiser.
pub(crate) fn init() {
    // SAFETY: called exactly once, before any other use.
    unsafe { REGISTRY.init() };
}

/// Adds `j` as the newest instance for `devt`, unless a view is attached
/// to an instance of `devt` (EBUSY): the check and the insertion are one
/// step with respect to [`attach_view`].
pub(crate) fn add_unless_viewed(devt: u32, j: Arc<Jsnap>) -> Result {
    let mut reg = REGISTRY.lock();
    if reg.iter().any(|(d, x)| *d == devt && x.views() > 0) {
        return Err(EBUSY);
    }
    reg.push((devt, j), GFP_KERNEL)?;
    Ok(())
}

/// Attaches a view to the newest instance for `devt` (see
/// `Jsnap::attach_view`), atomically with respect to [`add_unless_viewed`].
pub(crate) fn attach_view(devt: u32) -> core::result::Result<Arc<Jsnap>, Error> {
    let reg = REGISTRY.lock();
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
pub(crate) fn remove(j: &Jsnap) {
    let mut reg = REGISTRY.lock();
    if let Some(i) = reg.iter().position(|(_, x)| core::ptr::eq(&**x, j)) {
        let _ = reg.remove(i);
    }
}

/// The newest instance for `devt`.
pub(crate) fn find(devt: u32) -> Option<Arc<Jsnap>> {
    REGISTRY
        .lock()
        .iter()
        .rev()
        .find(|(d, _)| *d == devt)
        .map(|(_, j)| j.clone())
}
