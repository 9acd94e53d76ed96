// SPDX-License-Identifier: GPL-2.0

//! The chunk-range lock (seed 004's "lock mechanism independent of the
//! images"): serialises, per chunk, the decisions and data movements that
//! involve the validity map — preserving a chunk and overwriting it on
//! production (exclusive), and reading the snapshot's view of an unpreserved
//! chunk (shared).  It lives apart from the changes table and from the data;
//! only chunks that are locked have an entry, so unrelated I/O never waits.

use kernel::new_condvar;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{CondVar, SpinLock};

#[derive(Clone, Copy, Default)]
struct Holders {
    readers: u32,
    writer: bool,
}

/// Per-chunk shared/exclusive locks.
#[pin_data]
pub(crate) struct ChunkLocks {
    #[pin]
    held: SpinLock<RBTree<u64, Holders>>,
    #[pin]
    cond: CondVar,
}

impl ChunkLocks {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            held <- new_spinlock!(RBTree::new(), "jsnap_chunk_locks"),
            cond <- new_condvar!("jsnap_chunk_cond"),
        })
    }

    /// Locks chunk `c`, shared or exclusive, sleeping while it conflicts.
    pub(crate) fn lock(&self, c: u64, exclusive: bool) -> Result {
        let mut node = Some(RBTreeNodeReservation::new(GFP_KERNEL)?);
        let mut held = self.held.lock();
        loop {
            match held.get_mut(&c) {
                None => {
                    let h = Holders {
                        readers: u32::from(!exclusive),
                        writer: exclusive,
                    };
                    if let Some(n) = node.take() {
                        held.insert(n.into_node(c, h));
                    }
                    return Ok(());
                }
                Some(h) if !h.writer && !exclusive => {
                    h.readers += 1;
                    return Ok(());
                }
                Some(_) => self.cond.wait(&mut held),
            }
        }
    }

    /// Unlocks chunk `c`, locked with the same `exclusive`.
    pub(crate) fn unlock(&self, c: u64, exclusive: bool) {
        let mut held = self.held.lock();
        let free = match held.get_mut(&c) {
            Some(h) if exclusive => {
                h.writer = false;
                h.readers == 0
            }
            Some(h) => {
                h.readers = h.readers.saturating_sub(1);
                h.readers == 0 && !h.writer
            }
            None => false,
        };
        if free {
            held.remove(&c);
        }
        drop(held);
        self.cond.notify_all();
    }
}
