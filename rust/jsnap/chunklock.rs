// SPDX-License-Identifier: GPL-2.0

//! The chunk-range lock (the one-way mirror's "lock mechanism independent of the
//! images"): serialises, per chunk, the decisions and data movements that
//! involve the validity map — preserving a chunk and overwriting it on
//! production (exclusive), and reading the snapshot's view of an unpreserved
//! chunk (shared).  It lives apart from the changes table and from the data;
//! only chunks with holders or waiters have an entry, so unrelated I/O never
//! waits.  The decisions (writer preference included) are the pure
//! [`crate::logic::chunklock::Holders`], tested on the host and in KUnit.

use crate::logic::chunklock::Holders;
use kernel::new_condvar;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{CondVar, SpinLock};

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

    /// Locks chunk `c`, shared or exclusive, sleeping while it conflicts
    /// (a waiting writer holds new readers back).  The lock is released when
    /// the guard is dropped, so no early return can leak it.
    pub(crate) fn lock(&self, c: u64, exclusive: bool) -> Result<ChunkGuard<'_>> {
        self.acquire(c, exclusive)?;
        Ok(ChunkGuard {
            locks: self,
            c,
            exclusive,
        })
    }

    /// Locks every chunk of `chunks` exclusively, in the order given (the
    /// caller sorts them: exclusive holders lock in ascending order).  On
    /// failure nothing stays locked.
    pub(crate) fn lock_all<'a>(&'a self, chunks: &'a [u64]) -> Result<ChunksGuard<'a>> {
        let mut g = ChunksGuard {
            locks: self,
            chunks,
            locked: 0,
        };
        for &c in chunks {
            self.acquire(c, true)?;
            g.locked += 1;
        }
        Ok(g)
    }

    fn acquire(&self, c: u64, exclusive: bool) -> Result {
        let mut node = Some(RBTreeNodeReservation::new(GFP_KERNEL)?);
        let mut queued = false;
        let mut held = self.held.lock();
        loop {
            if held.get(&c).is_none() {
                // No entry: the chunk is idle (a queued writer keeps its
                // entry, so `queued` is false here).
                let n = match node.take() {
                    Some(n) => n,
                    None => {
                        // A reader woke up after the entry went away.
                        drop(held);
                        node = Some(RBTreeNodeReservation::new(GFP_KERNEL)?);
                        held = self.held.lock();
                        continue;
                    }
                };
                held.insert(n.into_node(c, Holders::default()));
            }
            if let Some(h) = held.get_mut(&c) {
                if h.acquire(exclusive, &mut queued) {
                    return Ok(());
                }
            }
            self.cond.wait(&mut held);
        }
    }

    /// Unlocks chunk `c`, locked with the same `exclusive`.
    fn unlock(&self, c: u64, exclusive: bool) {
        let mut held = self.held.lock();
        let idle = match held.get_mut(&c) {
            Some(h) => {
                if h.release(exclusive).is_err() {
                    pr_err!("dm-jsnap: unbalanced unlock of chunk {}\n", c);
                }
                h.idle()
            }
            None => {
                pr_err!("dm-jsnap: unlock of chunk {} that is not locked\n", c);
                false
            }
        };
        if idle {
            held.remove(&c);
        }
        drop(held);
        self.cond.notify_all();
    }
}

/// One locked chunk; unlocked on drop.
pub(crate) struct ChunkGuard<'a> {
    locks: &'a ChunkLocks,
    c: u64,
    exclusive: bool,
}

impl Drop for ChunkGuard<'_> {
    fn drop(&mut self) {
        self.locks.unlock(self.c, self.exclusive);
    }
}

/// Chunks locked exclusively by [`ChunkLocks::lock_all`]; unlocked on drop.
pub(crate) struct ChunksGuard<'a> {
    locks: &'a ChunkLocks,
    chunks: &'a [u64],
    locked: usize,
}

impl Drop for ChunksGuard<'_> {
    fn drop(&mut self) {
        for &c in self.chunks.iter().take(self.locked) {
            self.locks.unlock(c, true);
        }
    }
}
