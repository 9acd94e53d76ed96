// SPDX-License-Identifier: GPL-2.0

//! Compaction of the journal tail (feature `compact`; the rules and why
//! they keep every crash point consistent are in `logic::compact`): the
//! destage worker copies the live pieces of the oldest records to the head
//! of the ring, as new records, instead of writing them to production.
//!
//! Per piece:
//!
//! 1. under the lock: the piece is still, whole, the newest data of its
//!    sectors, compaction is allowed and the next sequence number lies in
//!    the piece's changed-block interval; reserve ring space and a
//!    sequence number, record the copy as not persistent (it is in no
//!    table yet), pin the original;
//! 2. copy pmem to pmem, fence, write the descriptor, fence;
//! 3. under the lock: unpin; switch every table extent that still points
//!    into the original within the piece to the copy (same sectors, the
//!    copy's ring position): no node allocated, newer writes untouched.
//!
//! The originals then retire through the usual superblock commit.  A copy
//! that failed (poisoned source) leaves a slot with no descriptor that
//! retires in turn, and the piece is destaged.

use super::changes::first_overlap;
use super::{Jsnap, Rec, State};
use crate::ffi::pmem::Pmem;
use crate::logic::compact::{self, TailSpan};
use crate::logic::extent::Extent;
use crate::logic::format::{self, Descriptor, SnapState};
use kernel::prelude::*;

impl Jsnap {
    /// Whether compaction may run now.
    pub(super) fn compact_allowed(&self, st: &State) -> bool {
        compact::Allow {
            enabled: self.features.compact > 0,
            // (`dropping` is only set while the snapshot is still there)
            snapshot_none: st.snapshot.snap == SnapState::None,
            draining: st.destage.drains > 0,
        }
        .ok()
    }

    /// Whether the batch that `collect` took from the oldest records should
    /// be copied within the journal: `last` is the newest record it took
    /// pieces of.
    pub(super) fn compact_wanted(&self, st: &State, batch: &[Extent], last: u64) -> bool {
        if !self.compact_allowed(st) {
            return false;
        }
        let (records, sectors) =
            compact::span_of(&st.journal.recs, st.journal.space.tail_seq(), last);
        let mut span = TailSpan {
            records,
            sectors,
            ..TailSpan::default()
        };
        for x in batch {
            span.add_piece(x.len);
        }
        compact::should_compact(&span, self.features.compact)
    }

    /// Writes the descriptor of record `seq` (`n` sectors at `sector`, data
    /// at ring position `pos`), not fenced.  The data must be fenced
    /// before: a descriptor on pmem implies its data is there
    /// (`DESC_ORDERED`), so recovery needs no checksum of the data.
    pub(super) fn write_descriptor(
        &self,
        pmem: &Pmem,
        seq: u64,
        sector: u64,
        pos: u64,
        n: u64,
    ) -> Result {
        let desc = Descriptor {
            flags: format::DESC_ORDERED,
            seq,
            sector,
            ring_pos: pos,
            nr_sectors: n as u32,
            data_crc: 0,
        };
        let mut buf = [0u8; format::DESC_BYTES];
        desc.encode(&mut buf);
        pmem.write(self.geometry.desc_slot_offset(seq) as usize, &buf)
    }

    /// Copies the pieces of `batch` within the journal (see the module
    /// documentation); returns the sectors copied.  The pieces it does not
    /// copy go to `rest`, for destage to write to production in the same
    /// round: those of another changed-block interval, those copied
    /// [`compact::MAX_COPIES`] times already, one whose copy failed, and
    /// all that remain once compaction is no longer allowed (a snapshot, a
    /// drain) or the ring is full.  Pieces that newer writes carved
    /// meanwhile are left to the next batch.
    pub(super) fn compact_batch(&self, batch: &[Extent], rest: &mut KVec<Extent>) -> Result<u64> {
        let d = self.devs()?;
        let pmem = d.pmem()?;
        let mut copied = 0;
        for (i, x) in batch.iter().enumerate() {
            // Step 1.
            let mut st = self.state.lock();
            let stop = !self.compact_allowed(&st);
            if !stop && first_overlap(&st.journal.changes, x.start, x.end()) != Some(*x) {
                continue;
            }
            let next = st.journal.space.next_seq();
            let copies = st.journal.rec_ref(x.seq).map_or(u8::MAX, |r| r.copies);
            if !stop
                && (!compact::same_interval(x.seq, next, |s| st.cbt.iv.of(s))
                    || !compact::may_copy(copies))
            {
                drop(st);
                rest.push(*x, GFP_KERNEL)?;
                continue;
            }
            let reserved = if stop {
                None
            } else {
                st.journal.space.reserve(x.len).ok()
            };
            let Some((seq, res)) = reserved else {
                drop(st);
                for y in batch.get(i..).unwrap_or_default() {
                    rest.push(*y, GFP_KERNEL)?;
                }
                break;
            };
            if let Some(r) = st.journal.rec(seq) {
                *r = Rec {
                    copies: copies.saturating_add(1),
                    ..Rec::reserved(seq, res.pos + res.len, x.start, x.len as u32)
                };
            }
            if let Some(r) = st.journal.rec(x.seq) {
                r.pins += 1;
            }
            drop(st);

            // Step 2.
            let io = if crate::fault::poisoned(x.start, x.len) {
                Err(EIO)
            } else {
                pmem.copy_within(
                    self.ring_off(x.ring_pos),
                    self.ring_off(res.pos),
                    (x.len << 9) as usize,
                )
            };
            let io = io.and_then(|()| {
                pmem.fence();
                crate::fault::compact_window(1);
                self.write_descriptor(pmem, seq, x.start, res.pos, x.len)
            });
            pmem.fence();
            if io.is_ok() {
                crate::fault::compact_window(2);
            }

            // Step 3.
            let mut st = self.state.lock();
            if let Some(r) = st.journal.rec(x.seq) {
                r.pins = r.pins.saturating_sub(1);
            }
            match io {
                Ok(()) => {
                    if let Some(r) = st.journal.rec(seq) {
                        r.persisted = true;
                    }
                    switch_to_copy(&mut st, x, seq, res.pos);
                    st.stats.compacted_bytes += x.len << 9;
                    copied += x.len;
                }
                Err(e) => {
                    // No descriptor was written and no table refers to the
                    // slot: it retires in turn, as a write that failed its
                    // copy does (replay sees a hole); the piece stays in
                    // the original and goes to production.
                    if let Some(r) = st.journal.rec(seq) {
                        r.persisted = true;
                    }
                    drop(st);
                    pr_err!(
                        "dm-jsnap: compacting record {} ({} sectors at {}) failed ({:?}): destaging it\n",
                        x.seq,
                        x.len,
                        x.start,
                        e
                    );
                    rest.push(*x, GFP_KERNEL)?;
                }
            }
        }
        Ok(copied)
    }
}

/// Points the extents of `changes` that still refer to record `x.seq`
/// within the piece `x` to its copy `seq` at ring position `pos`.
fn switch_to_copy(st: &mut State, x: &Extent, seq: u64, pos: u64) {
    let mut at = x.start;
    let mut moved = 0u32;
    while at < x.end() {
        let Some(y) = first_overlap(&st.journal.changes, at, x.end()) else {
            break;
        };
        if y.seq == x.seq && y.start >= x.start && y.end() <= x.end() {
            if let Some(e) = st.journal.changes.get_mut(&y.start) {
                e.seq = seq;
                e.ring_pos = pos + (y.start - x.start);
                moved += 1;
            }
        }
        at = y.end().max(at + 1);
    }
    if let Some(r) = st.journal.rec(x.seq) {
        r.refs = r.refs.saturating_sub(moved);
        // The copy is persistent: the original may retire (`retire`).
        r.superseded_by = r.superseded_by.max(seq);
    }
    if let Some(r) = st.journal.rec(seq) {
        r.refs += moved;
    }
}
