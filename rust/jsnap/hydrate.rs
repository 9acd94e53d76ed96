// SPDX-License-Identifier: GPL-2.0

//! Hydration: the background copier that preserves every chunk of the
//! snapshot, so that it becomes a full, independent copy, while user I/O
//! keeps priority.

use super::{Jsnap, State};
use crate::logic::format::SnapState;
use crate::logic::validity;
use kernel::prelude::*;
use kernel::time::Delta;

impl Jsnap {

    fn hydrating(st: &State) -> bool {
        st.snapshot.hydrate && st.snapshot.snap == SnapState::Active && !st.stopping && !st.suspended
    }

    /// Whether the background copier is to run (checked before it
    /// allocates: `hydrate off` stops it even while memory is short).
    fn hydrate_wanted(&self) -> bool {
        Self::hydrating(&self.state.lock())
    }

    /// One round of the background copier: preserve up to `hydrate_chunks`
    /// consecutive unpreserved chunks with one store flush, then yield to
    /// user I/O.  Returns whether work remains.
    pub(crate) fn hydrate_step(&self) -> bool {
        let max = self.features.hydrate_chunks(self.chunk_sectors) as usize;
        let mut clock = crate::prof::Clock::start();
        if !self.hydrate_wanted() {
            return false;
        }
        let Ok(mut batch) = crate::fault::enomem(crate::fault::Site::Hydrate)
            .and_then(|()| KVec::<u64>::with_capacity(max, GFP_KERNEL).map_err(|_| ENOMEM))
        else {
            // No memory now: back off instead of spinning.
            kernel::time::delay::fsleep(Delta::from_millis(100));
            return true;
        };
        let io_before = {
            let mut st = self.state.lock();
            if !Self::hydrating(&st) {
                return false;
            }
            let mut from = st.snapshot.hydrate_cursor;
            if validity::first_clear_from(&st.snapshot.validity, st.snapshot.nr_chunks, from)
                .ok()
                .flatten()
                .is_none()
            {
                from = 0;
            }
            while batch.len() < max {
                let Some(c) = validity::first_clear_from(&st.snapshot.validity, st.snapshot.nr_chunks, from)
                    .ok()
                    .flatten()
                else {
                    break;
                };
                if batch.push(c, GFP_NOWAIT).is_err() {
                    break;
                }
                from = c + 1;
            }
            st.snapshot.hydrate_cursor = from;
            st.stats.io_count
        };
        if batch.is_empty() {
            return false;
        }
        clock.mark(crate::prof::Stage::HydCollect);
        let res = self.locks.lock_all(&batch).and_then(|guard| {
            clock.mark(crate::prof::Stage::HydLock);
            let res = self.preserve_chunks(&batch);
            let mut clock = crate::prof::Clock::start();
            drop(guard);
            clock.mark(crate::prof::Stage::HydUnlock);
            res
        });
        if res.is_err() {
            kernel::time::delay::fsleep(Delta::from_millis(100));
        } else if self.state.lock().stats.io_count != io_before {
            // User I/O keeps priority: back off while it is active.
            kernel::time::delay::fsleep(Delta::from_millis(10));
        }
        true
    }
}
