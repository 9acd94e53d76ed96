// SPDX-License-Identifier: GPL-2.0

//! Deterministic fault injection, compiled only into the test build
//! (`--cfg jsnap_fault`, `scripts/build-module.sh --fault`): module
//! parameters that hold a chosen step open so that a test can act (retire,
//! drop, cut the power with sysrq) inside the window after it.  In the
//! normal build every hook is an empty inline function.

#[cfg(jsnap_fault)]
fn hold(ms: i64) {
    if ms > 0 {
        kernel::time::delay::fsleep(kernel::time::Delta::from_millis(ms));
    }
}

/// Between the changes-table insert of a write at `sector` and its copy to
/// pmem (issue 10 item 1: a superseded record must not retire here).
#[cfg(jsnap_fault)]
pub(crate) fn copy_window(sector: u64) {
    let want = crate::module_parameters::fault_copy_sector.value();
    if want >= 0 && want as u64 == sector {
        kernel::pr_info!("dm-jsnap: fault: holding the copy of sector {}\n", sector);
        hold(crate::module_parameters::fault_copy_ms.value());
    }
}

/// Inside a preservation step, after the store copy is durable and before
/// the validity bits are set
/// (items 6, 11, 12: drop/snapshot, ring reuse under the overlay).
#[cfg(jsnap_fault)]
pub(crate) fn preserve_window() {
    hold(crate::module_parameters::fault_preserve_ms.value());
}

#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn copy_window(_sector: u64) {}

#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn preserve_window() {}
