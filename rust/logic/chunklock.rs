//! The decisions of the chunk-range lock (the "lock mechanism
//! independent of the images"), one [`Holders`] per locked chunk.
//!
//! A chunk is locked shared (readers of the snapshot's view of an
//! unpreserved chunk) or exclusive (preserving a chunk and overwriting it on
//! production, view writes, hydration).  Writers are preferred: once a
//! writer waits for a chunk, new readers of that chunk wait behind it, so a
//! steady stream of overlapping snapshot reads cannot starve destage (and,
//! behind destage, every production write once the journal is full).
//!
//! This is deadlock-free with the callers' discipline: exclusive holders
//! take several chunks only in ascending order, and a shared holder holds a
//! single chunk and never waits for another chunk lock while holding it.
//!
//! The kernel keeps one entry per chunk with holders or waiters in an
//! rbtree under a spinlock (`jsnap/chunklock.rs`) and sleeps on a condition
//! variable whenever [`Holders::acquire`] says no.

/// Lock state of one chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    /// Shared holders.
    pub readers: u32,
    /// Held exclusively.
    pub writer: bool,
    /// Writers sleeping until the chunk is free.
    pub writers_waiting: u32,
}

/// [`Holders::release`] of a lock that is not held that way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotHeld;

impl Holders {
    /// Tries to take the lock, shared or `exclusive`.  `queued` is the
    /// caller's own flag, false on its first attempt: a writer that has to
    /// wait is counted once in `writers_waiting` (and `queued` set) until it
    /// gets the lock.  Returns whether the lock was taken.
    pub fn acquire(&mut self, exclusive: bool, queued: &mut bool) -> bool {
        if exclusive {
            if !self.writer && self.readers == 0 {
                if *queued {
                    self.writers_waiting = self.writers_waiting.saturating_sub(1);
                    *queued = false;
                }
                self.writer = true;
                return true;
            }
            if !*queued {
                self.writers_waiting = self.writers_waiting.saturating_add(1);
                *queued = true;
            }
            false
        } else if !self.writer && self.writers_waiting == 0 {
            match self.readers.checked_add(1) {
                Some(r) => {
                    self.readers = r;
                    true
                }
                None => false,
            }
        } else {
            false
        }
    }

    /// Releases a lock taken with the same `exclusive`.
    pub fn release(&mut self, exclusive: bool) -> Result<(), NotHeld> {
        if exclusive {
            if !self.writer {
                return Err(NotHeld);
            }
            self.writer = false;
        } else {
            self.readers = self.readers.checked_sub(1).ok_or(NotHeld)?;
        }
        Ok(())
    }

    /// No holder and no waiter: the entry can be forgotten.
    pub fn idle(&self) -> bool {
        self.readers == 0 && !self.writer && self.writers_waiting == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use std::vec::Vec;

    #[test]
    fn shared_exclusive_and_writer_preference() {
        let mut h = Holders::default();
        let (mut q1, mut q2, mut qr) = (false, false, false);
        assert!(h.acquire(false, &mut qr));
        assert!(h.acquire(false, &mut qr));
        assert!(!h.acquire(true, &mut q1));
        assert!(q1);
        assert_eq!(h.writers_waiting, 1);
        // Retrying does not count the writer twice.
        assert!(!h.acquire(true, &mut q1));
        assert_eq!(h.writers_waiting, 1);
        // A writer waits: new readers wait too.
        assert!(!h.acquire(false, &mut qr));
        assert_eq!(h.readers, 2);
        h.release(false).unwrap();
        assert!(!h.acquire(true, &mut q1));
        h.release(false).unwrap();
        assert!(h.acquire(true, &mut q1));
        assert!(!q1);
        assert_eq!(h.writers_waiting, 0);
        assert!(!h.acquire(true, &mut q2));
        assert!(!h.acquire(false, &mut qr));
        h.release(true).unwrap();
        assert!(!h.acquire(false, &mut qr)); // q2 still waits
        assert!(h.acquire(true, &mut q2));
        h.release(true).unwrap();
        assert!(h.idle());
        assert_eq!(h.release(true), Err(NotHeld));
        assert_eq!(h.release(false), Err(NotHeld));
        assert!(h.idle());
    }

    /// Random schedules of actors: never a writer together with another
    /// holder, a waiting writer always gets the chunk once the holders it
    /// found leave, the entry is idle exactly when nobody holds or waits.
    #[test]
    fn random_schedules_keep_the_invariants() {
        #[derive(Clone, Copy, PartialEq)]
        enum A {
            Idle,
            Waiting(bool),
            Holding(bool),
        }
        for seed in 1..200u64 {
            let mut rng = Rng::new(seed);
            let mut h = Holders::default();
            let mut actors: Vec<(A, bool)> = (0..6).map(|_| (A::Idle, false)).collect();
            for _ in 0..2000 {
                let i = (rng.next() % actors.len() as u64) as usize;
                let (state, queued) = actors[i];
                let mut q = queued;
                actors[i] = match state {
                    A::Idle => {
                        let ex = rng.next().is_multiple_of(3);
                        if h.acquire(ex, &mut q) {
                            (A::Holding(ex), q)
                        } else {
                            (A::Waiting(ex), q)
                        }
                    }
                    A::Waiting(ex) => {
                        if h.acquire(ex, &mut q) {
                            (A::Holding(ex), q)
                        } else {
                            (A::Waiting(ex), q)
                        }
                    }
                    A::Holding(ex) => {
                        h.release(ex).unwrap();
                        (A::Idle, q)
                    }
                };
                let writers = actors.iter().filter(|a| a.0 == A::Holding(true)).count();
                let readers = actors.iter().filter(|a| a.0 == A::Holding(false)).count();
                let waiting = actors.iter().filter(|a| a.0 == A::Waiting(true)).count();
                assert!(writers <= 1 && (writers == 0 || readers == 0));
                assert_eq!(h.readers as usize, readers);
                assert_eq!(h.writer, writers == 1);
                assert_eq!(h.writers_waiting as usize, waiting);
                assert_eq!(h.idle(), writers + readers + waiting == 0);
                assert!(actors.iter().all(|a| a.1 == (a.0 == A::Waiting(true))));
                // Readers never join while a writer waits.
                if waiting > 0 {
                    let mut q = false;
                    let mut probe = h;
                    assert!(!probe.acquire(false, &mut q));
                }
            }
        }
    }
}
