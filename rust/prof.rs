// SPDX-License-Identifier: GPL-2.0

//! Per-stage cost of a journal write, of a hydration step and of a destage
//! batch, compiled only into the profiling build (`--cfg jsnap_profile`, `JSNAP_PROFILE=1 scripts/build-module.sh`):
//! each stage's total time and count, printed when the target is removed.
//! In the normal build every hook is an empty inline function.

/// The stages of one write, in order.
#[derive(Clone, Copy)]
pub(crate) enum Stage {
    /// `devs()` and the node reservation.
    Reserve = 0,
    /// First state-lock section: ring reservation, changes-table insert.
    Insert = 1,
    /// Waiting for the first state lock (charged separately from `Insert`).
    Lock = 7,
    /// The data copy into pmem and its fence.
    Copy = 2,
    /// Descriptor encode, write and fence.
    Desc = 3,
    /// Second state-lock section and the waiter wake-up.
    Persisted = 4,
    /// `bio_endio`.
    Endio = 5,
    /// After the write: the watermark check.
    Tail = 6,
    /// Hydration step: choosing the chunks (state lock, validity scan).
    HydCollect = 8,
    /// Hydration step: taking the chunks' exclusive locks.
    HydLock = 9,
    /// Preservation: the production → store copy (dm-kcopyd).
    PresCopy = 10,
    /// Preservation: pinning and writing the pre-snapshot journal pieces.
    PresOverlay = 11,
    /// Preservation: the store flush.
    PresFlush = 12,
    /// Preservation: validity bits persisted, pieces freed (state lock).
    PresMark = 13,
    /// Hydration step: releasing the chunk locks.
    HydUnlock = 14,
    /// Destage batch: collecting the extents (state lock).
    DstCollect = 15,
    /// Destage batch: writing the runs to production and its flush.
    DstWrite = 16,
    /// Destage batch: dropping the destaged pieces from the table.
    DstDrop = 17,
    /// Retiring records: the superblock commit (with the changed-block
    /// pages) that moves the tail.
    Retire = 18,
    /// The worker serving deferred writes (copying them into pmem).
    DstServe = 19,
    /// The worker's 1 ms sleep when it found nothing to destage yet.
    DstSleep = 20,
    /// One run of the worker, from its start to its return.
    WorkerRun = 21,
    /// Destage batch: the production flush (part of `DstWrite`).
    DstFlush = 22,
}

#[cfg(jsnap_profile)]
mod on {
    use super::Stage;
    use core::sync::atomic::{AtomicU64, Ordering};
    use kernel::prelude::*;
    use kernel::time::{Instant, Monotonic};

    const N: usize = 23;
    const NAMES: [&str; N] = [
        "reserve",
        "insert",
        "copy",
        "desc+fence",
        "persisted",
        "endio",
        "tail",
        "lock wait",
        "hyd collect",
        "hyd lock",
        "pres copy",
        "pres overlay",
        "pres flush",
        "pres mark",
        "hyd unlock",
        "dst collect",
        "dst write",
        "dst drop",
        "retire",
        "dst serve",
        "dst sleep",
        "worker run",
        "dst flush",
    ];
    static NS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
    static COUNT: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];

    /// A running stopwatch over the stages of one write.
    pub(crate) struct Clock(Instant<Monotonic>);

    impl Clock {
        #[inline]
        pub(crate) fn start() -> Self {
            Self(Instant::now())
        }

        /// Charges the time since the last mark to `s`.
        #[inline]
        pub(crate) fn mark(&mut self, s: Stage) {
            let now = Instant::now();
            let d = (now - self.0).as_nanos();
            self.0 = now;
            NS[s as usize].fetch_add(d as u64, Ordering::Relaxed);
            COUNT[s as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prints and resets the totals.
    pub(crate) fn report() {
        for i in 0..N {
            let n = COUNT[i].swap(0, Ordering::Relaxed);
            let ns = NS[i].swap(0, Ordering::Relaxed);
            if n > 0 {
                pr_info!(
                    "dm-jsnap: profile: {:>12}: {} calls, {} ns each, {} us in all\n",
                    NAMES[i],
                    n,
                    ns / n,
                    ns / 1000
                );
            }
        }
    }
}

#[cfg(not(jsnap_profile))]
mod on {
    use super::Stage;

    pub(crate) struct Clock;

    impl Clock {
        #[inline(always)]
        pub(crate) fn start() -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn mark(&mut self, _: Stage) {}
    }

    #[inline(always)]
    pub(crate) fn report() {}
}

pub(crate) use on::*;
