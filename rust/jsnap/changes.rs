// SPDX-License-Identifier: GPL-2.0

//! The changes table: the rbtree of journal extents by target sector
//! (`JournalState::changes`) and the table of pre-snapshot pieces
//! superseded by newer writes (`JournalState::snap_table`), with the node
//! reservations that let a write change them without allocating under the
//! state lock.

use super::{JournalState, Rec, SnapshotState, State};
use crate::logic::extent::{self, Extent, Which};
use kernel::alloc::Flags;
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

/// Table-node reservations made before taking `state`.
pub(crate) struct Nodes {
    pub(super) list: [Option<RBTreeNodeReservation<u64, Extent>>; 4],
}

impl Nodes {
    /// No nodes.
    pub(crate) fn empty() -> Self {
        Self {
            list: [None, None, None, None],
        }
    }

    /// Allocates nodes until there are `n` (at most 4).
    pub(crate) fn fill(&mut self, n: usize, gfp: Flags) -> Result {
        let missing = n.saturating_sub(self.count());
        for _ in 0..missing {
            self.put(RBTreeNodeReservation::new(gfp)?);
        }
        Ok(())
    }

    /// Adds `node` (dropped if all four slots are full).
    pub(super) fn put(&mut self, node: RBTreeNodeReservation<u64, Extent>) {
        if let Some(slot) = self.list.iter_mut().find(|s| s.is_none()) {
            *slot = Some(node);
        }
    }

    pub(super) fn count(&self) -> usize {
        self.list.iter().filter(|n| n.is_some()).count()
    }

    pub(super) fn take(&mut self) -> Option<RBTreeNodeReservation<u64, Extent>> {
        self.list.iter_mut().find_map(Option::take)
    }
}

/// The first extent of `table` overlapping `start..end`, if any.
pub(crate) fn first_overlap(table: &RBTree<u64, Extent>, start: u64, end: u64) -> Option<Extent> {
    let (prev, next) = match table.cursor_lower_bound(&start) {
        Some(c) => (c.peek_prev().map(|(_, v)| *v), Some(*c.current().1)),
        None => (table.cursor_back().map(|c| *c.current().1), None),
    };
    if let Some(p) = prev.filter(|p| p.end() > start) {
        return Some(p);
    }
    next.filter(|n| n.start < end)
}

/// The changes table and the snapshot table of the journal, with the nodes
/// reserved for one write, as [`extent::insert`] changes them (the
/// snapshot's validity map only read).
struct Tables<'a> {
    journal: &'a mut JournalState,
    snapshot: &'a SnapshotState,
    nodes: &'a mut Nodes,
    /// The node of the extent removed last: used first, else recycled.
    freed: Option<RBTreeNodeReservation<u64, Extent>>,
}

impl extent::Tables for Tables<'_> {
    fn first_overlap(&self, start: u64, end: u64) -> Option<Extent> {
        first_overlap(&self.journal.changes, start, end)
    }

    fn remove(&mut self, start: u64) -> bool {
        let len = self.journal.changes.get(&start).map_or(0, |e| e.len);
        let Some(n) = self.journal.changes.remove_node(&start) else {
            return false;
        };
        self.journal.extents = self.journal.extents.saturating_sub(1);
        self.journal.live_sectors = self.journal.live_sectors.saturating_sub(len);
        if let Some(old) = self.freed.replace(n.into_reservation()) {
            self.journal.recycle(old);
        }
        true
    }

    fn insert(&mut self, which: Which, ext: Extent) -> bool {
        let Some(r) = self.freed.take().or_else(|| self.nodes.take()) else {
            return false;
        };
        match which {
            Which::Changes => {
                self.journal.changes.insert(r.into_node(ext.start, ext));
                self.journal.extents += 1;
            }
            Which::Snap => {
                self.journal.snap_table.insert(r.into_node(ext.start, ext));
                self.journal.snap_extents += 1;
            }
        }
        self.journal.live_sectors += ext.len;
        true
    }

    fn replace(&mut self, ext: Extent) -> Option<Extent> {
        let x = self.journal.changes.get_mut(&ext.start).filter(|x| x.len == ext.len)?;
        Some(core::mem::replace(x, ext))
    }

    fn rec(&mut self, seq: u64) -> Option<&mut Rec> {
        self.journal.rec(seq)
    }

    fn preserved(&self, c: u64) -> bool {
        self.snapshot.is_preserved(c)
    }
}

/// Inserts `ext` (the newest record) into the changes table, carving the
/// older extents it overlaps; pre-snapshot data that the snapshot still
/// needs moves to `snap_table` ([`extent::insert`] decides, with the
/// reference counts).  Needs up to [`extent::nodes_needed`] nodes.
pub(super) fn insert_extent(st: &mut State, ext: Extent, nodes: &mut Nodes, chunk_sectors: u32) {
    let State { journal, snapshot, .. } = st;
    let epoch = snapshot.epoch();
    let mut t = Tables {
        journal,
        snapshot,
        nodes,
        freed: None,
    };
    extent::insert(&mut t, ext, epoch, chunk_sectors);
    if let Some(n) = t.freed.take() {
        t.journal.recycle(n);
    }
}
