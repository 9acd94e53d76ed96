// SPDX-License-Identifier: GPL-2.0

//! Deterministic fault injection, compiled only into the test build
//! (`--cfg jsnap_fault`, `scripts/build-module.sh --fault`): module
//! parameters that hold a chosen step open so that a test can act (retire,
//! drop, reload, cut the power with sysrq) inside the window after it, make
//! chosen allocations fail, or make a journal record read as poisoned
//! pmem.  In the normal build every hook is an empty inline function.

/// Allocation sites that `fault_enomem_site` can make fail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// In a destage batch, after its chunk locks are taken.
    Destage = 1,
    /// The hydration step's batch.
    Hydrate = 2,
    /// Every changes-table node reservation of a write, from the map path
    /// and from the worker.
    Nodes = 3,
}

#[cfg(jsnap_fault)]
mod on {
    use super::Site;
    use core::sync::atomic::{AtomicI64, Ordering};
    use kernel::prelude::*;

    static HITS: AtomicI64 = AtomicI64::new(0);

    pub(super) fn hold(ms: i64) {
        if ms > 0 {
            kernel::time::delay::fsleep(kernel::time::Delta::from_millis(ms));
        }
    }

    pub(crate) fn copy_window(sector: u64) {
        let want = crate::module_parameters::fault_copy_sector.value();
        if want >= 0 && want as u64 == sector {
            pr_info!("dm-jsnap: fault: holding the copy of sector {}\n", sector);
            hold(crate::module_parameters::fault_copy_ms.value());
        }
    }

    pub(crate) fn preserve_window() {
        hold(crate::module_parameters::fault_preserve_ms.value());
    }

    pub(crate) fn flip_window(stage: i64) {
        if crate::module_parameters::fault_flip_stage.value() == stage {
            pr_info!("dm-jsnap: fault: holding the changed-block flip at stage {}\n", stage);
            hold(crate::module_parameters::fault_flip_ms.value());
        }
    }

    /// Holds only the first copy after the module load: the test needs
    /// one window, and the worker must not stall for every piece.
    pub(crate) fn compact_window(stage: i64) {
        static FIRED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if crate::module_parameters::fault_flip_stage.value() == stage + 3 && !FIRED.swap(true, Ordering::Relaxed) {
            pr_info!("dm-jsnap: fault: holding a compaction copy at stage {}\n", stage);
            hold(crate::module_parameters::fault_flip_ms.value());
        }
    }

    pub(crate) fn ctr_window() {
        let ms = crate::module_parameters::fault_ctr_ms.value();
        if ms > 0 {
            pr_info!("dm-jsnap: fault: holding the constructor\n");
            hold(ms);
        }
    }

    pub(crate) fn enomem(site: Site) -> Result {
        if crate::module_parameters::fault_enomem_site.value() != site as i64 {
            return Ok(());
        }
        let count = crate::module_parameters::fault_enomem_count.value();
        let hit = HITS.fetch_add(1, Ordering::Relaxed);
        if count >= 0 && hit >= count {
            return Ok(());
        }
        // The first few only: a busy loop would flood the log.
        if hit < 8 {
            pr_info!("dm-jsnap: fault: ENOMEM at site {}\n", site as i64);
        }
        Err(ENOMEM)
    }

    pub(crate) fn cow_overwritten() {
        crate::ffi::pmem::Pmem::cow_overwritten();
    }

    pub(crate) fn pool_prefill(n: usize) -> usize {
        if crate::module_parameters::fault_enomem_site.value() == Site::Nodes as i64 {
            0
        } else {
            n
        }
    }

    pub(crate) fn poisoned(sector: u64, len: u64) -> bool {
        let p = crate::module_parameters::fault_poison_sector.value();
        let hit = p >= 0 && (p as u64) >= sector && (p as u64) < sector.saturating_add(len);
        if hit {
            pr_info!("dm-jsnap: fault: journal data of sector {} reads as poisoned\n", p);
        }
        hit
    }
}

#[cfg(jsnap_fault)]
pub(crate) use on::{
    compact_window, copy_window, cow_overwritten, ctr_window, enomem, flip_window, poisoned,
    pool_prefill, preserve_window,
};

/// A destage batch overwrote production in chunks it preserved first (with
/// shadow pmem, `fault_cut_after_cow=1`, a parameter of
/// `rust/ffi/pmem_shadow.c`, cuts the power at the next fence: the
/// validity bits must be durable by now).
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn cow_overwritten() {}

/// Between the changes-table insert of a write at `sector` and its copy to
/// pmem (a superseded record must not retire here; a preservation must
/// not copy the record before it is persistent).
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn copy_window(_sector: u64) {}

/// Inside a preservation step, after the store copy is durable and before
/// the validity bits are set (a drop or a new snapshot meanwhile).
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn preserve_window() {}

/// In `snapshot`'s changed-block flip (`changed::flip_around`): stage 1
/// after the previous interval is forgotten on pmem and its map slot
/// zeroed, stage 2 after the commit of the new intervals (a power cut
/// there must find the old intervals, or the new ones, whole).
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn flip_window(_stage: i64) {}

/// In a compaction of the journal tail (`compact`), for each copy: stage 1
/// after its data is fenced and before its descriptor is written, stage 2
/// after the descriptor is durable and before the tables switch to it
/// (`fault_flip_stage` 4 and 5; only the first copy after the load).
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn compact_window(_stage: i64) {}

/// In the jsnap constructor, between its first check for attached views
/// and its registration (a view attaching meanwhile).
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn ctr_window() {}

/// How many table nodes beyond the worker's the pool gets at table load,
/// `n` normally: none while node allocations are made to fail, so that
/// writes meet the failure and the worker's nodes carry them.
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn pool_prefill(n: usize) -> usize {
    n
}

/// An injected allocation failure at `site`.
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn enomem(_site: Site) -> kernel::error::Result {
    Ok(())
}

/// Whether the journal data of target sectors `sector..sector+len` is to
/// read as poisoned pmem, as the machine-check-safe copy reports.
#[cfg(not(jsnap_fault))]
#[inline(always)]
pub(crate) fn poisoned(_sector: u64, _len: u64) -> bool {
    false
}
