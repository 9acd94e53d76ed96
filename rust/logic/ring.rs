//! Space accounting of the journal: the data ring and the descriptor slots.
//!
//! Pure state, no locking: the caller holds the journal lock. All ring
//! positions and lengths are in sectors.
//!
//! A record's data is contiguous in the ring. When it does not fit between
//! the head and the end of the ring, the end of the ring is skipped and the
//! data goes at position 0; the skipped sectors count as used and belong to
//! that reservation, so they are freed with it. Space is freed strictly in
//! reservation order (FIFO), which is the order records are retired in.
//!
//! A single reservation is limited to half the ring
//! ([`Ring::max_reservation`]): that way any reservation fits once the ring
//! is empty, wherever the head is, so a writer waiting for destage always
//! makes progress.

/// Why a reservation or release was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// A reservation of zero sectors.
    ZeroLength,
    /// Larger than [`Ring::max_reservation`]: can never fit.
    TooBig,
    /// Not enough free ring space or no free descriptor slot now: wait for
    /// retirement.
    Full,
    /// The release is not for the oldest live reservation.
    NotOldest,
    /// The position or sequence number is not inside the live region.
    NotLive,
    /// Inconsistent state passed to a constructor.
    BadState,
}

/// A reserved ring region: data at `pos..pos + len`, preceded by `skipped`
/// sectors at the end of the ring when the reservation wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Ring position of the data.
    pub pos: u64,
    /// Length of the data.
    pub len: u64,
    /// End-of-ring sectors skipped (and owned) by this reservation.
    pub skipped: u64,
}

/// The data ring: `used` sectors starting at `tail` (circularly) are live,
/// new reservations are placed at `head`.
///
/// # Invariants
///
/// `size > 0`, `tail < size`, `used <= size`, `head == (tail + used) % size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    size: u64,
    head: u64,
    tail: u64,
    used: u64,
}

impl Ring {
    /// A ring of `size` sectors whose live region is `used` sectors from
    /// `tail` (`Ring::new(size, pos, 0)` for an empty ring).
    pub fn new(size: u64, tail: u64, used: u64) -> Result<Self, RingError> {
        if tail >= size || used > size {
            return Err(RingError::BadState);
        }
        // INVARIANT: checked above; `head` is computed without overflow.
        Ok(Ring {
            size,
            head: Self::advance(size, tail, used),
            tail,
            used,
        })
    }

    /// `(pos + n) % size` for `pos < size`, `n <= size`, without overflow.
    fn advance(size: u64, pos: u64, n: u64) -> u64 {
        if n >= size - pos {
            n - (size - pos)
        } else {
            pos + n
        }
    }

    /// Size of the ring.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the next reservation would start if it fits before the end.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Start of the oldest live reservation (including its skipped area).
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// Live sectors, skipped areas included.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Free sectors (not necessarily contiguous).
    pub fn free(&self) -> u64 {
        self.size - self.used
    }

    /// Largest reservation accepted: half the ring.
    pub fn max_reservation(&self) -> u64 {
        self.size / 2
    }

    /// Position just after a reservation's data, where the next one starts.
    pub fn end_of(&self, r: &Reservation) -> u64 {
        Self::advance(self.size, r.pos.min(self.size - 1), r.len.min(self.size))
    }

    /// Reserves `n` contiguous sectors at the head, or at 0 after skipping
    /// the end of the ring.
    pub fn reserve(&mut self, n: u64) -> Result<Reservation, RingError> {
        if n == 0 {
            return Err(RingError::ZeroLength);
        }
        if n > self.max_reservation() {
            return Err(RingError::TooBig);
        }
        let free = self.free();
        let to_end = self.size - self.head;
        let r = if n <= free.min(to_end) {
            Reservation {
                pos: self.head,
                len: n,
                skipped: 0,
            }
        } else if free >= to_end && n <= free - to_end {
            Reservation {
                pos: 0,
                len: n,
                skipped: to_end,
            }
        } else {
            return Err(RingError::Full);
        };
        self.head = Self::advance(self.size, r.pos, n);
        self.used += r.skipped + n;
        Ok(r)
    }

    /// Frees `r`, which must be the oldest live reservation.
    pub fn release(&mut self, r: &Reservation) -> Result<(), RingError> {
        let start = if r.skipped == 0 {
            Some(r.pos)
        } else {
            self.size.checked_sub(r.skipped)
        };
        if start != Some(self.tail) {
            return Err(RingError::NotOldest);
        }
        match r.len.checked_add(r.skipped) {
            Some(total)
                if r.len > 0
                    && total <= self.used
                    && r.pos.checked_add(r.len).is_some_and(|e| e <= self.size) =>
            {
                self.release_to(self.end_of(r))
            }
            _ => Err(RingError::NotLive),
        }
    }

    /// Frees everything from the tail up to ring position `end`, which must
    /// be the end of a live reservation (`end == tail` frees a full ring).
    /// This is how retirement frees records whose reservations are not at
    /// hand, e.g. after recovery, where never-persisted records leave holes.
    pub fn release_to(&mut self, end: u64) -> Result<(), RingError> {
        // A record that ends exactly at the end of the ring ends at `size`:
        // the same position as 0.
        let end = if end == self.size { 0 } else { end };
        if end >= self.size {
            return Err(RingError::NotLive);
        }
        let d = if end >= self.tail {
            end - self.tail
        } else {
            self.size - self.tail + end
        };
        let d = if d == 0 && self.used == self.size {
            self.size
        } else {
            d
        };
        if d == 0 || d > self.used {
            return Err(RingError::NotLive);
        }
        self.tail = end;
        self.used -= d;
        Ok(())
    }
}

/// Ring space plus descriptor slots: record `seq` uses slot
/// `seq % desc_count`, so at most `desc_count` records may be live.
///
/// # Invariants
///
/// `tail_seq <= next_seq`, `next_seq - tail_seq <= desc_count`, and the ring
/// is empty exactly when no record is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalSpace {
    ring: Ring,
    desc_count: u32,
    tail_seq: u64,
    next_seq: u64,
}

impl JournalSpace {
    /// Journal accounting with records `tail_seq..next_seq` live in `ring`.
    /// A fresh journal is `JournalSpace::new(Ring::new(size, tail_pos, 0)?,
    /// desc_count, tail_seq, tail_seq)`; after a crash use
    /// `replay::ReplayPlan::space`.
    pub fn new(
        ring: Ring,
        desc_count: u32,
        tail_seq: u64,
        next_seq: u64,
    ) -> Result<Self, RingError> {
        match next_seq.checked_sub(tail_seq) {
            Some(live)
                if desc_count > 0
                    && live <= u64::from(desc_count)
                    && (live == 0) == (ring.used() == 0) =>
            {
                // INVARIANT: checked above.
                Ok(JournalSpace {
                    ring,
                    desc_count,
                    tail_seq,
                    next_seq,
                })
            }
            _ => Err(RingError::BadState),
        }
    }

    /// Reserves a descriptor slot and `n` ring sectors for the next record;
    /// returns its sequence number and ring region.
    pub fn reserve(&mut self, n: u64) -> Result<(u64, Reservation), RingError> {
        if self.pending() >= u64::from(self.desc_count) {
            return Err(RingError::Full);
        }
        let next = self.next_seq.checked_add(1).ok_or(RingError::Full)?;
        let r = self.ring.reserve(n)?;
        let seq = self.next_seq;
        self.next_seq = next;
        Ok((seq, r))
    }

    /// Retires every record up to and including `seq`, whose ring data ends
    /// at `ring_end`; their slots and space become free.
    pub fn retire_through(&mut self, seq: u64, ring_end: u64) -> Result<(), RingError> {
        if seq < self.tail_seq || seq >= self.next_seq {
            return Err(RingError::NotLive);
        }
        let mut ring = self.ring;
        ring.release_to(ring_end)?;
        let tail_seq = seq + 1;
        if (tail_seq == self.next_seq) != (ring.used() == 0) {
            return Err(RingError::NotLive);
        }
        self.ring = ring;
        self.tail_seq = tail_seq;
        Ok(())
    }

    /// The data ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Number of descriptor slots.
    pub fn desc_count(&self) -> u32 {
        self.desc_count
    }

    /// Oldest live record (the superblock's `tail_seq`).
    pub fn tail_seq(&self) -> u64 {
        self.tail_seq
    }

    /// Ring position to persist as the superblock's `tail_pos`.
    pub fn tail_pos(&self) -> u64 {
        self.ring.tail()
    }

    /// Sequence number of the next record.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Number of live (not yet retired) records.
    pub fn pending(&self) -> u64 {
        self.next_seq - self.tail_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::vec;

    fn res(pos: u64, len: u64, skipped: u64) -> Reservation {
        Reservation { pos, len, skipped }
    }

    #[test]
    fn constructor_checks() {
        assert_eq!(Ring::new(0, 0, 0), Err(RingError::BadState));
        assert_eq!(Ring::new(10, 10, 0), Err(RingError::BadState));
        assert_eq!(Ring::new(10, 0, 11), Err(RingError::BadState));
        let r = Ring::new(10, 7, 5).unwrap();
        assert_eq!((r.head(), r.tail(), r.used(), r.free()), (2, 7, 5, 5));
        let full = Ring::new(u64::MAX, u64::MAX - 1, u64::MAX).unwrap();
        assert_eq!(full.head(), u64::MAX - 1);
    }

    /// Regression: a record ending exactly at the ring end retires
    /// (uniform 4 KiB writes end there every lap).
    #[test]
    fn record_ending_at_ring_end_retires() {
        let mut space = JournalSpace::new(Ring::new(32, 0, 0).unwrap(), 8, 1, 1).unwrap();
        for i in 0..4u64 {
            let (seq, r) = space.reserve(8).unwrap();
            assert_eq!((seq, r.pos), (1 + i, i * 8));
        }
        assert_eq!(space.ring().free(), 0);
        // Ends are `pos + len`, as the target records them.
        space.retire_through(3, 24).unwrap();
        space.retire_through(4, 32).unwrap();
        assert_eq!((space.pending(), space.ring().used(), space.tail_pos()), (0, 0, 0));
        let (seq, r) = space.reserve(8).unwrap();
        assert_eq!((seq, r.pos), (5, 0));
        let mut ring = Ring::new(16, 8, 8).unwrap();
        ring.release_to(16).unwrap();
        assert_eq!((ring.used(), ring.tail()), (0, 0));
        assert_eq!(ring.release_to(17), Err(RingError::NotLive));
    }

    #[test]
    fn reserve_errors() {
        let mut r = Ring::new(100, 0, 0).unwrap();
        assert_eq!(r.reserve(0), Err(RingError::ZeroLength));
        assert_eq!(r.reserve(51), Err(RingError::TooBig));
        assert_eq!(r.reserve(u64::MAX), Err(RingError::TooBig));
        assert_eq!(r.reserve(50), Ok(res(0, 50, 0)));
        assert_eq!(r.reserve(50), Ok(res(50, 50, 0)));
        assert_eq!((r.head(), r.used()), (0, 100));
        assert_eq!(r.reserve(1), Err(RingError::Full));
        assert_eq!(r, Ring::new(100, 0, 100).unwrap());
    }

    #[test]
    fn exact_fill_and_fifo_release() {
        let mut r = Ring::new(100, 30, 0).unwrap();
        let a = r.reserve(40).unwrap();
        let b = r.reserve(30).unwrap();
        let c = r.reserve(30).unwrap();
        assert_eq!((a, b, c), (res(30, 40, 0), res(70, 30, 0), res(0, 30, 0)));
        assert_eq!((r.used(), r.head(), r.tail()), (100, 30, 30));
        assert_eq!(r.release(&b), Err(RingError::NotOldest));
        assert_eq!(r.release(&c), Err(RingError::NotOldest));
        r.release(&a).unwrap();
        assert_eq!((r.used(), r.tail()), (60, 70));
        assert_eq!(r.release(&a), Err(RingError::NotOldest));
        r.release(&b).unwrap();
        assert_eq!((r.used(), r.tail()), (30, 0));
        r.release(&c).unwrap();
        assert_eq!((r.used(), r.tail(), r.head()), (0, 30, 30));
    }

    #[test]
    fn wrap_skips_the_end_of_the_ring() {
        let mut r = Ring::new(100, 0, 0).unwrap();
        let a = r.reserve(45).unwrap();
        let b = r.reserve(45).unwrap();
        r.release(&a).unwrap();
        // 10 sectors left at the end: a 20-sector record skips them.
        let c = r.reserve(20).unwrap();
        assert_eq!(c, res(0, 20, 10));
        assert_eq!((r.used(), r.head()), (75, 20));
        assert_eq!(r.end_of(&c), 20);
        // 25 free before the tail (45): 26 does not fit, 25 does.
        assert_eq!(r.reserve(26), Err(RingError::Full));
        let d = r.reserve(25).unwrap();
        assert_eq!(d, res(20, 25, 0));
        assert_eq!(r.used(), 100);
        r.release(&b).unwrap();
        assert_eq!((r.tail(), r.used()), (90, 55));
        // The skipped area is freed with c.
        r.release(&c).unwrap();
        assert_eq!((r.tail(), r.used()), (20, 25));
        // Not enough room at the end, nor before the tail after skipping it.
        let mut r = Ring::new(100, 30, 60).unwrap();
        assert_eq!(r.reserve(31), Err(RingError::Full));
        assert_eq!(r.reserve(30), Ok(res(0, 30, 10)));
        assert_eq!(r.used(), 100);
        let mut r = Ring::new(100, 30, 60).unwrap();
        assert_eq!(r.reserve(10), Ok(res(90, 10, 0)));
        assert_eq!(r.reserve(31), Err(RingError::Full));
        assert_eq!(r.reserve(30), Ok(res(0, 30, 0)));
    }

    #[test]
    fn any_allowed_size_fits_an_empty_ring() {
        for size in [1u64, 2, 7, 8, 100, 101] {
            for head in 0..size {
                for n in 1..=size / 2 {
                    let mut r = Ring::new(size, head, 0).unwrap();
                    let got = r.reserve(n).unwrap();
                    assert!(got.pos + got.len <= size);
                }
            }
        }
    }

    #[test]
    fn release_to_checks_liveness() {
        let mut r = Ring::new(100, 90, 30).unwrap();
        // The end of the ring is position 0 (a record ending there).
        let mut at_end = r;
        assert_eq!(at_end.release_to(100), Ok(()));
        assert_eq!((at_end.tail(), at_end.used()), (0, 20));
        assert_eq!(r.release_to(101), Err(RingError::NotLive));
        assert_eq!(r.release_to(90), Err(RingError::NotLive));
        assert_eq!(r.release_to(21), Err(RingError::NotLive));
        assert_eq!(r.release_to(50), Err(RingError::NotLive));
        r.release_to(5).unwrap();
        assert_eq!((r.tail(), r.used()), (5, 15));
        let mut full = Ring::new(100, 40, 100).unwrap();
        full.release_to(40).unwrap();
        assert_eq!(full.used(), 0);
        let mut bogus = Ring::new(100, 0, 10).unwrap();
        assert_eq!(bogus.release(&res(0, 0, 0)), Err(RingError::NotLive));
        assert_eq!(bogus.release(&res(0, 11, 0)), Err(RingError::NotLive));
        assert_eq!(bogus.release(&res(5, 1, 100)), Err(RingError::NotLive));
        assert_eq!(bogus.release(&res(0, 5, 200)), Err(RingError::NotOldest));
        let mut wrapped = Ring::new(100, 90, 20).unwrap();
        assert_eq!(
            wrapped.release(&res(u64::MAX, 5, 10)),
            Err(RingError::NotLive)
        );
        assert_eq!(bogus, Ring::new(100, 0, 10).unwrap());
    }

    /// Random reserve/release sequences against a per-sector model.
    #[test]
    fn random_against_model() {
        let mut rng = crate::Rng::new(42);
        for round in 0..200 {
            let size = rng.range(1, 64);
            let mut ring = Ring::new(size, rng.range(0, size - 1), 0).unwrap();
            let mut owner = vec![false; size as usize];
            let mut live = VecDeque::new();
            for _ in 0..300 {
                if !rng.next().is_multiple_of(3) || live.is_empty() {
                    let n = rng.range(1, size / 2 + 1);
                    let h = ring.head();
                    let free = |a: u64, b: u64| (a..b).all(|s| !owner[s as usize]);
                    let at_head = h + n <= size && free(h, h + n);
                    let at_zero = n <= size && free(h, size) && free(0, n);
                    match ring.reserve(n) {
                        Ok(r) => {
                            assert!(n <= size / 2);
                            assert_eq!(r.pos, if at_head { h } else { 0 }, "round {round}");
                            assert!(at_head || at_zero);
                            let region = (r.pos..r.pos + r.len).chain(size - r.skipped..size);
                            for s in region {
                                assert!(!owner[s as usize], "overlap at {s}");
                                owner[s as usize] = true;
                            }
                            live.push_back(r);
                        }
                        Err(RingError::TooBig) => assert!(n > size / 2),
                        Err(e) => {
                            assert_eq!(e, RingError::Full);
                            assert!(!at_head && !at_zero, "round {round}: refused {n} at {h}");
                        }
                    }
                } else {
                    let r = live.pop_front().unwrap();
                    if let Some(young) = live.back() {
                        assert_eq!(ring.release(young), Err(RingError::NotOldest));
                    }
                    ring.release(&r).unwrap();
                    for s in (r.pos..r.pos + r.len).chain(size - r.skipped..size) {
                        owner[s as usize] = false;
                    }
                }
                let busy = owner.iter().filter(|&&o| o).count() as u64;
                assert_eq!(ring.used(), busy);
                assert!(ring.used() <= size);
                assert_eq!(ring.head(), (ring.tail() + ring.used()) % size);
            }
        }
    }

    #[test]
    fn journal_space_limits_live_records_to_desc_count() {
        let mut js = JournalSpace::new(Ring::new(1000, 0, 0).unwrap(), 3, 10, 10).unwrap();
        assert_eq!(js.reserve(10), Ok((10, res(0, 10, 0))));
        assert_eq!(js.reserve(10), Ok((11, res(10, 10, 0))));
        assert_eq!(js.reserve(0), Err(RingError::ZeroLength));
        assert_eq!(js.reserve(10), Ok((12, res(20, 10, 0))));
        assert_eq!(js.reserve(10), Err(RingError::Full));
        assert_eq!(js.pending(), 3);
        assert_eq!(js.retire_through(9, 10), Err(RingError::NotLive));
        assert_eq!(js.retire_through(13, 40), Err(RingError::NotLive));
        // The end must match: retiring 11 but claiming the ring is empty.
        assert_eq!(js.retire_through(11, 30), Err(RingError::NotLive));
        assert_eq!(js.retire_through(12, 20), Err(RingError::NotLive));
        js.retire_through(11, 20).unwrap();
        assert_eq!(
            (js.tail_seq(), js.tail_pos(), js.pending(), js.ring().used()),
            (12, 20, 1, 10)
        );
        assert_eq!(js.reserve(10), Ok((13, res(30, 10, 0))));
        js.retire_through(13, 40).unwrap();
        assert_eq!(
            (
                js.tail_seq(),
                js.next_seq(),
                js.ring().used(),
                js.desc_count()
            ),
            (14, 14, 0, 3)
        );
    }

    #[test]
    fn journal_space_constructor_checks() {
        let empty = Ring::new(100, 0, 0).unwrap();
        let busy = Ring::new(100, 0, 10).unwrap();
        assert!(JournalSpace::new(empty, 4, 5, 5).is_ok());
        assert!(JournalSpace::new(busy, 4, 5, 9).is_ok());
        assert_eq!(JournalSpace::new(empty, 0, 5, 5), Err(RingError::BadState));
        assert_eq!(JournalSpace::new(busy, 4, 5, 10), Err(RingError::BadState));
        assert_eq!(JournalSpace::new(busy, 4, 5, 4), Err(RingError::BadState));
        assert_eq!(JournalSpace::new(busy, 4, 5, 5), Err(RingError::BadState));
        assert_eq!(JournalSpace::new(empty, 4, 5, 6), Err(RingError::BadState));
        let mut last = JournalSpace::new(empty, 4, u64::MAX, u64::MAX).unwrap();
        assert_eq!(last.reserve(1), Err(RingError::Full));
    }
}
