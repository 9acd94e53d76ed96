//! The lookup-table decisions of the snapshot volume and of the one-way
//! mirror (volume A = the view, volume B = production; the seed figures
//! each decision realises are listed in `docs/ARCHITECTURE.md`).
//!
//! The lookup table is the validity map: chunk `c` has an entry (is
//! preserved) when the store holds the view's own copy of it, i.e. where
//! volume A (the view) may differ from volume B (production).  Every
//! decision below is taken under the chunk's lock (see [`super::chunklock`]),
//! except the `map`-time shortcuts for chunks that already have an entry,
//! which is final: an entry is never removed while the snapshot lives.

use super::epoch::Epoch;
use super::args::ViewMode;

/// Where a read of the view finds its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The chunk has an entry: the store (volume A's own image).
    Store,
    /// No entry: production (volume B's image), overlaid with the
    /// pre-snapshot data still in the journal.
    Production,
}

/// A read of the view: from A's own image if the chunk has an entry, else
/// from B's.
pub fn view_read(has_entry: bool) -> ReadFrom {
    if has_entry {
        ReadFrom::Store
    } else {
        ReadFrom::Production
    }
}

/// What `map` does with a write to the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapWrite {
    /// `ro`: fail it.
    Refuse,
    /// The chunk has an entry and the write goes to the store only:
    /// remap it there at once.
    Store,
    /// Needs the chunk lock and synchronous I/O: the view's worker.
    Worker,
}

/// Whether the view takes writes at all (`ro` does not).  Asked before
/// anything else is done for a write, in `map` and in the worker alike
/// (also for a write deferred while the jsnap volume was suspended): a
/// refused write must never make its chunk the view's own, which would
/// put the refused data into the snapshot.
pub fn view_writable(mode: ViewMode) -> bool {
    mode != ViewMode::Ro
}

/// A write to the view, as seen by `map` (no lock held).
pub fn view_map_write(mode: ViewMode, has_entry: bool) -> MapWrite {
    if !view_writable(mode) {
        return MapWrite::Refuse;
    }
    match (mode, has_entry) {
        (ViewMode::Ro, _) => MapWrite::Refuse,
        (ViewMode::Rw, true) => MapWrite::Store,
        // A mirror write always has a second half (volume B).
        (ViewMode::Rw, false) | (ViewMode::Mirror, _) => MapWrite::Worker,
    }
}

/// How a view write makes its chunk the view's own (under the exclusive
/// chunk lock), before its data is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Own {
    /// The chunk has an entry already: no copy.
    Already,
    /// No entry: copy the chunk's snapshot content to the store, persist
    /// the entry, then write.
    CopyFirst,
    /// No entry, but the write covers the whole chunk: skip the copy; the
    /// data goes to the store (durably) and only then the entry is
    /// persisted.
    WholeChunk,
}

/// The lookup decision of a write to the view: copy the chunk first unless
/// it has an entry or the write covers it whole.
pub fn view_own(has_entry: bool, covers_whole_chunk: bool) -> Own {
    match (has_entry, covers_whole_chunk) {
        (true, _) => Own::Already,
        (false, true) => Own::WholeChunk,
        (false, false) => Own::CopyFirst,
    }
}

/// What a view write does once its chunk is owned (under the chunk lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewWrite {
    /// `ro`: fail it (EROFS).
    Refuse,
    /// `rw`, and the whole-chunk ownership wrote the data to the store
    /// already: complete it.
    Done,
    /// `rw`: remap it to the store (volume A) only.
    Store,
    /// `mirror`, the store half written already: journal it on production
    /// (volume B).
    Journal,
    /// `mirror`: write the store half (durably), then journal the same
    /// write on production; acknowledged once both are durable.
    StoreThenJournal,
}

/// The images a view write updates: `in_store` when owning the chunk
/// wrote the data to the store already ([`Own::WholeChunk`]).
pub fn view_write(mode: ViewMode, in_store: bool) -> ViewWrite {
    match (mode, in_store) {
        (ViewMode::Ro, _) => ViewWrite::Refuse,
        (ViewMode::Rw, true) => ViewWrite::Done,
        (ViewMode::Rw, false) => ViewWrite::Store,
        (ViewMode::Mirror, true) => ViewWrite::Journal,
        (ViewMode::Mirror, false) => ViewWrite::StoreThenJournal,
    }
}

/// Before destage writes journal record `seq` to a chunk of
/// production (volume B), must the chunk's snapshot content be copied to
/// the store first?  Only post-snapshot data in a chunk without an entry.
pub fn destage_copies_first(epoch: Epoch, seq: u64, has_entry: bool) -> bool {
    epoch.must_preserve(seq) && !has_entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        // Every combination, against the rules above.
        for mode in [ViewMode::Ro, ViewMode::Rw, ViewMode::Mirror] {
            for entry in [false, true] {
                let m = view_map_write(mode, entry);
                let want = match mode {
                    ViewMode::Ro => MapWrite::Refuse,
                    ViewMode::Rw if entry => MapWrite::Store,
                    _ => MapWrite::Worker,
                };
                assert_eq!(m, want, "{mode:?} entry={entry}");
                assert_eq!(view_writable(mode), mode != ViewMode::Ro);
                for in_store in [false, true] {
                    let w = view_write(mode, in_store);
                    let want = match (mode, in_store) {
                        (ViewMode::Ro, _) => ViewWrite::Refuse,
                        (ViewMode::Rw, true) => ViewWrite::Done,
                        (ViewMode::Rw, false) => ViewWrite::Store,
                        (ViewMode::Mirror, true) => ViewWrite::Journal,
                        (ViewMode::Mirror, false) => ViewWrite::StoreThenJournal,
                    };
                    assert_eq!(w, want, "{mode:?} in_store={in_store}");
                }
                for whole in [false, true] {
                    let o = view_own(entry, whole);
                    assert_eq!(o == Own::Already, entry);
                    assert_eq!(o == Own::WholeChunk, !entry && whole);
                }
            }
        }
        assert_eq!(view_read(true), ReadFrom::Store);
        assert_eq!(view_read(false), ReadFrom::Production);
        let e = Epoch {
            active: true,
            snap_seq: 7,
        };
        assert!(destage_copies_first(e, 7, false));
        assert!(!destage_copies_first(e, 7, true));
        assert!(!destage_copies_first(e, 6, false));
        assert!(!destage_copies_first(Epoch::NONE, 9, false));
    }
}
