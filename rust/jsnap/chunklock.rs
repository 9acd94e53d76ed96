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
use kernel::sync::{CondVar, SpinLock, SpinLockGuard};

type Node = RBTreeNodeReservation<u64, Holders>;

/// Nodes kept for reuse: a hydration step's worth (1024 chunks at most)
/// and some for destage and the views.
pub(crate) const SPARE_NODES: usize = 1024 + 64;

/// Chunks taken or released per hold of the spinlock by the batch paths.
const HOLD_CHUNKS: usize = 256;

/// The entries, and the nodes of entries that went idle.
pub(crate) struct Held {
    tree: RBTree<u64, Holders>,
    /// Never grows past the capacity it was made with: nothing is
    /// allocated under the spinlock.
    spare: KVec<Node>,
}

impl Held {
    /// Keeps `node` for reuse if there is room, else frees it.
    fn recycle(&mut self, node: Node) {
        let _ = self.spare.push_within_capacity(node);
    }

    /// Releases chunk `c`, locked with the same `exclusive`; forgets an
    /// entry that has neither holders nor waiters left.
    fn release(&mut self, c: u64, exclusive: bool) {
        let idle = match self.tree.get_mut(&c) {
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
            if let Some(node) = self.tree.remove_node(&c) {
                self.recycle(node.into_reservation());
            }
        }
    }
}

/// Per-chunk shared/exclusive locks.
#[pin_data]
pub(crate) struct ChunkLocks {
    #[pin]
    held: SpinLock<Held>,
    #[pin]
    cond: CondVar,
}

impl ChunkLocks {
    /// `spare` is an empty vector with room for [`SPARE_NODES`].
    pub(crate) fn new(spare: KVec<Node>) -> impl PinInit<Self> {
        pin_init!(Self {
            held <- new_spinlock!(Held { tree: RBTree::new(), spare }, "jsnap_chunk_locks"),
            cond <- new_condvar!("jsnap_chunk_cond"),
        })
    }

    /// Locks chunk `c`, shared or exclusive, sleeping while it conflicts
    /// (a waiting writer holds new readers back).  The lock is released when
    /// the guard is dropped, so no early return can leak it.
    pub(crate) fn lock(&self, c: u64, exclusive: bool) -> Result<ChunkGuard<'_>> {
        let mut node = None;
        let mut held = self.acquire(self.held.lock(), c, exclusive, &mut node)?;
        if let Some(n) = node {
            held.recycle(n);
        }
        drop(held);
        Ok(ChunkGuard {
            locks: self,
            c,
            exclusive,
        })
    }

    /// Locks every chunk of `chunks` exclusively, in the order given (the
    /// caller sorts them: exclusive holders lock in ascending order).  On
    /// failure nothing stays locked.
    ///
    /// The nodes come from the spare list, the rest allocated before the
    /// spinlock is taken; then the chunks are taken [`HOLD_CHUNKS`] per hold
    /// of it, which is also dropped to wait for a chunk that is busy.
    pub(crate) fn lock_all<'a>(&'a self, chunks: &'a [u64]) -> Result<ChunksGuard<'a>> {
        let mut g = ChunksGuard {
            locks: self,
            chunks,
            locked: 0,
        };
        let mut nodes: KVVec<Node> = KVVec::with_capacity(chunks.len(), GFP_KERNEL)?;
        {
            let mut held = self.held.lock();
            while nodes.len() < chunks.len() {
                let Some(n) = held.spare.pop() else {
                    break;
                };
                if let Err(e) = nodes.push_within_capacity(n) {
                    held.recycle(e.0);
                    break;
                }
            }
        }
        while nodes.len() < chunks.len() {
            let n = match RBTreeNodeReservation::new(GFP_KERNEL) {
                Ok(n) => n,
                Err(e) => {
                    // The spare nodes taken stay spare.
                    let mut held = self.held.lock();
                    for n in nodes.drain_all() {
                        held.recycle(n);
                    }
                    return Err(e.into());
                }
            };
            if nodes.push_within_capacity(n).is_err() {
                break;
            }
        }
        let mut held = self.held.lock();
        for (i, &c) in chunks.iter().enumerate() {
            if i > 0 && i % HOLD_CHUNKS == 0 {
                // Let others in between slices of a long batch.
                drop(held);
                held = self.held.lock();
            }
            let mut node = nodes.pop();
            let res = self.acquire(held, c, true, &mut node);
            // An unused node goes back with the others.
            if let Some(n) = node {
                let _ = nodes.push_within_capacity(n);
            }
            held = res?;
            g.locked += 1;
        }
        for n in nodes.drain_all() {
            held.recycle(n);
        }
        Ok(g)
    }

    /// Takes chunk `c` with `held` locked, waiting on the condition
    /// variable (which releases the spinlock) while it conflicts.  `node`
    /// makes the entry if there is none (else a spare one does, else one is
    /// allocated with the spinlock dropped).  Returns the spinlock, held.
    fn acquire<'a>(
        &'a self,
        mut held: SpinLockGuard<'a, Held>,
        c: u64,
        exclusive: bool,
        node: &mut Option<Node>,
    ) -> Result<SpinLockGuard<'a, Held>> {
        let mut queued = false;
        loop {
            if held.tree.get(&c).is_none() {
                // No entry: the chunk is idle (a queued writer keeps its
                // entry, so `queued` is false here).
                let n = match node.take().or_else(|| held.spare.pop()) {
                    Some(n) => n,
                    None => {
                        drop(held);
                        *node = Some(RBTreeNodeReservation::new(GFP_KERNEL)?);
                        held = self.held.lock();
                        continue;
                    }
                };
                held.tree.insert(n.into_node(c, Holders::default()));
            }
            if let Some(h) = held.tree.get_mut(&c) {
                if h.acquire(exclusive, &mut queued) {
                    return Ok(held);
                }
            }
            self.cond.wait(&mut held);
        }
    }

    /// Unlocks chunk `c`, locked with the same `exclusive`.
    fn unlock(&self, c: u64, exclusive: bool) {
        self.held.lock().release(c, exclusive);
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

/// Chunks locked exclusively by [`ChunkLocks::lock_all`]; unlocked on drop,
/// [`HOLD_CHUNKS`] per hold of the spinlock, with one wake-up.
pub(crate) struct ChunksGuard<'a> {
    locks: &'a ChunkLocks,
    chunks: &'a [u64],
    locked: usize,
}

impl Drop for ChunksGuard<'_> {
    fn drop(&mut self) {
        if self.locked == 0 {
            return;
        }
        let locked = self.chunks.get(..self.locked).unwrap_or_default();
        for slice in locked.chunks(HOLD_CHUNKS) {
            let mut held = self.locks.held.lock();
            for &c in slice {
                held.release(c, true);
            }
        }
        self.locks.cond.notify_all();
    }
}
