//! What a journal device holds, and whether `create` may load a table on
//! it without `--format`.  The checks are those of the module's table
//! constructor (`rust/jsnap/metadata.rs`), made before anything is loaded
//! so that the refusal is one clear line; the superblock decoder is the
//! module's own (`rust/logic/format.rs`).  Pure: the caller reads the
//! bytes.

use jsnap_logic::format::{self, Error as FmtError, SnapState, Superblock};

/// Bytes at the start of the journal that decide what it holds (the two
/// superblock slots).
pub const HEAD_BYTES: usize = 2 * format::SB_SLOT_BYTES;

/// The kernel's internal device number (`MKDEV`), as the journal records it.
pub fn kdev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xfffff)
}

/// `major:minor` of a kernel device number.
pub fn kdev_str(k: u32) -> String {
    format!("{}:{}", k >> 20, k & 0xfffff)
}

/// What the superblock area of a journal device holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// All zero: the module formats it at the first activation.
    Blank,
    /// Neither zero nor a jsnap superblock.
    Foreign,
    /// A jsnap superblock of a version the module does not read.
    Unsupported,
    /// A jsnap superblock that fails its checks.
    Corrupt,
    /// A valid journal.
    Journal(Superblock),
}

/// Classifies the first [`HEAD_BYTES`] of a journal device, as the module
/// does at table load.
pub fn classify(head: &[u8]) -> Content {
    let head = &head[..head.len().min(HEAD_BYTES)];
    if head.len() < HEAD_BYTES {
        return Content::Corrupt;
    }
    let (s0, s1) = head.split_at(format::SB_SLOT_BYTES);
    let blank = head.iter().all(|&b| b == 0);
    match format::pick_superblock(s0, s1) {
        Ok((sb, _)) => Content::Journal(sb),
        Err(FmtError::NotFormatted) if blank => Content::Blank,
        Err(FmtError::NotFormatted) | Err(FmtError::BadMagic) => Content::Foreign,
        Err(FmtError::BadVersion) => Content::Unsupported,
        Err(_) => Content::Corrupt,
    }
}

/// The table `create` is about to load, as the journal sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub prod_kdev: u32,
    /// 0: no store
    pub store_kdev: u32,
    pub len: u64,
    pub chunk: u32,
    /// usable bytes of the journal device (whole 4 KiB pages)
    pub journal_bytes: u64,
    pub relocated: bool,
}

/// What the activation will do with the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `--format` given: the journal is initialised.
    Format,
    /// A compatible journal: replayed, its data and snapshot kept.
    Replay {
        snapshot: SnapState,
        generation: u64,
    },
}

/// Decides whether the table may be loaded on a journal with this content;
/// the error names the problem (and what would override it).
pub fn plan(path: &str, content: &Content, want: &Want, format: bool) -> Result<Plan, String> {
    // Too small for a new journal: only an existing one (laid out before
    // changed-block tracking needed more room) may load.
    let existing = matches!(content, Content::Journal(_)) && !format;
    if !existing && format::plan_geometry(want.journal_bytes, want.len, want.chunk).is_err() {
        return Err(format!(
            "journal {path} ({} bytes) is too small for a {}-sector target with {}-sector chunks",
            want.journal_bytes, want.len, want.chunk
        ));
    }
    if format {
        return Ok(Plan::Format);
    }
    let over = "(--format overwrites it)";
    let sb = match content {
        // A zero superblock area is not proof of an empty device (a file
        // system may keep its first 8 KiB zero): formatting is asked for.
        Content::Blank => {
            return Err(format!(
                "journal {path} holds no jsnap journal (its superblock area is zero): --format initialises it"
            ))
        }
        Content::Foreign => {
            return Err(format!(
                "journal {path} holds data that is not a jsnap journal {over}"
            ))
        }
        Content::Unsupported => {
            return Err(format!(
                "journal {path} has an unsupported jsnap format version {over}"
            ))
        }
        Content::Corrupt => {
            return Err(format!(
                "journal {path} has a corrupt jsnap superblock {over}"
            ))
        }
        Content::Journal(sb) => sb,
    };
    if sb.prod_devt != want.prod_kdev && !want.relocated {
        return Err(format!(
            "journal {path} belongs to production device {}, not {} (--relocated if it was renumbered; --format overwrites it)",
            kdev_str(sb.prod_devt),
            kdev_str(want.prod_kdev)
        ));
    }
    if sb.prod_sectors != want.len {
        return Err(format!(
            "journal {path} belongs to a target of {} sectors, not {} {over}",
            sb.prod_sectors, want.len
        ));
    }
    if sb.chunk_sectors != want.chunk {
        return Err(format!(
            "journal {path} was formatted with {}-sector chunks, not {} {over}",
            sb.chunk_sectors, want.chunk
        ));
    }
    if sb.geometry.dev_bytes > want.journal_bytes {
        return Err(format!(
            "journal {path} is smaller ({} bytes) than its superblock says ({}) {over}",
            want.journal_bytes, sb.geometry.dev_bytes
        ));
    }
    let store_sectors = if want.store_kdev != 0 { want.len } else { 0 };
    if sb.snap_state != SnapState::None && sb.store_sectors != store_sectors {
        return Err(format!(
            "journal {path} holds a snapshot: the store cannot {} (--format overwrites it)",
            if store_sectors == 0 {
                "be left out"
            } else {
                "change"
            }
        ));
    }
    if sb.snap_state != SnapState::None
        && sb.store_devt != 0
        && sb.store_devt != want.store_kdev
        && !want.relocated
    {
        return Err(format!(
            "journal {path} holds a snapshot on store {}, not {} (--relocated if it was renumbered; --format overwrites it)",
            kdev_str(sb.store_devt),
            kdev_str(want.store_kdev)
        ));
    }
    Ok(Plan::Replay {
        snapshot: sb.snap_state,
        generation: sb.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn want() -> Want {
        Want {
            prod_kdev: kdev(259, 1),
            store_kdev: kdev(259, 2),
            len: 2 * 1024 * 1024,
            chunk: 64,
            journal_bytes: 256 * MIB,
            relocated: false,
        }
    }

    /// A journal as the module formats it for `w`, with `f` applied.
    fn journal(w: &Want, f: impl FnOnce(&mut Superblock)) -> Vec<u8> {
        let geometry = format::plan_geometry(w.journal_bytes, w.len, w.chunk).unwrap();
        let mut sb = Superblock {
            generation: 1,
            uuid: [7; 16],
            prod_sectors: w.len,
            chunk_sectors: w.chunk,
            store_sectors: if w.store_kdev != 0 { w.len } else { 0 },
            geometry,
            tail_seq: 0,
            tail_pos: 0,
            snap_state: SnapState::None,
            snap_seq: 0,
            snap_id: 0,
            hydrate: false,
            prod_devt: w.prod_kdev,
            store_devt: w.store_kdev,
            cbt: jsnap_logic::cbt::Intervals::fresh(1),
        };
        f(&mut sb);
        let mut head = vec![0u8; HEAD_BYTES];
        let mut slot = [0u8; format::SB_SLOT_BYTES];
        sb.encode(&mut slot);
        head[..format::SB_SLOT_BYTES].copy_from_slice(&slot);
        head
    }

    #[test]
    fn kernel_device_numbers() {
        assert_eq!(kdev(259, 1), (259 << 20) | 1);
        assert_eq!(kdev_str(kdev(253, 12)), "253:12");
    }

    #[test]
    fn blank_foreign_corrupt() {
        let w = want();
        let blank = vec![0u8; HEAD_BYTES];
        assert_eq!(classify(&blank), Content::Blank);
        let e = plan("/dev/pmem0", &Content::Blank, &w, false).unwrap_err();
        assert!(e.contains("holds no jsnap journal") && e.contains("--format"), "{e}");
        assert_eq!(plan("/dev/pmem0", &Content::Blank, &w, true), Ok(Plan::Format));
        let mut foreign = blank.clone();
        foreign[5000] = 1; // slot 1 not zero, no magic anywhere
        assert_eq!(classify(&foreign), Content::Foreign);
        let e = plan("/dev/pmem0", &classify(&foreign), &w, false).unwrap_err();
        assert!(
            e.contains("not a jsnap journal") && e.contains("--format"),
            "{e}"
        );
        assert_eq!(
            plan("/dev/pmem0", &Content::Foreign, &w, true),
            Ok(Plan::Format)
        );
        let mut corrupt = journal(&w, |_| {});
        corrupt[40] ^= 1; // prod_sectors, checksum now wrong
        assert_eq!(classify(&corrupt), Content::Corrupt);
        assert!(plan("/dev/pmem0", &Content::Corrupt, &w, false)
            .unwrap_err()
            .contains("corrupt"));
        let mut newer = journal(&w, |_| {});
        newer[8] = 9; // version
        assert_eq!(classify(&newer), Content::Unsupported);
        assert_eq!(classify(&blank[..100]), Content::Corrupt);
    }

    #[test]
    fn compatible_journal_is_replayed() {
        let w = want();
        let c = classify(&journal(&w, |sb| sb.generation = 5));
        assert_eq!(
            plan("/dev/pmem0", &c, &w, false),
            Ok(Plan::Replay {
                snapshot: SnapState::None,
                generation: 5
            })
        );
        // relocated accepts another production number
        let c = classify(&journal(&w, |sb| sb.prod_devt = kdev(8, 0)));
        assert!(plan("/dev/pmem0", &c, &w, false)
            .unwrap_err()
            .contains("production device 8:0, not 259:1"));
        let wr = Want {
            relocated: true,
            ..want()
        };
        assert!(plan("/dev/pmem0", &c, &wr, false).is_ok());
    }

    #[test]
    fn other_geometry_is_refused_unless_format() {
        let w = want();
        let c = classify(&journal(&w, |_| {}));
        let w128 = Want {
            chunk: 128,
            ..want()
        };
        let e = plan("/dev/pmem0", &c, &w128, false).unwrap_err();
        assert_eq!(e, "journal /dev/pmem0 was formatted with 64-sector chunks, not 128 (--format overwrites it)");
        assert_eq!(plan("/dev/pmem0", &c, &w128, true), Ok(Plan::Format));
        let wlen = Want {
            len: 1024 * 1024,
            ..want()
        };
        assert!(plan("/dev/pmem0", &c, &wlen, false)
            .unwrap_err()
            .contains("target of 2097152 sectors, not 1048576"));
        let small = Want {
            journal_bytes: 128 * MIB,
            ..want()
        };
        assert!(plan("/dev/pmem0", &c, &small, false)
            .unwrap_err()
            .contains("smaller"));
    }

    #[test]
    fn snapshot_pins_the_store() {
        let w = want();
        let c = classify(&journal(&w, |sb| sb.snap_state = SnapState::Active));
        assert!(matches!(
            plan("/dev/pmem0", &c, &w, false),
            Ok(Plan::Replay {
                snapshot: SnapState::Active,
                ..
            })
        ));
        let nostore = Want {
            store_kdev: 0,
            ..want()
        };
        assert!(plan("/dev/pmem0", &c, &nostore, false)
            .unwrap_err()
            .contains("cannot be left out"));
        let other = Want {
            store_kdev: kdev(259, 9),
            ..want()
        };
        assert!(plan("/dev/pmem0", &c, &other, false)
            .unwrap_err()
            .contains("store 259:2, not 259:9"));
        // without a snapshot the store may change
        let c = classify(&journal(&w, |_| {}));
        assert!(plan("/dev/pmem0", &c, &other, false).is_ok());
        assert!(plan("/dev/pmem0", &c, &nostore, false).is_ok());
    }

    #[test]
    fn too_small_journal() {
        let w = Want {
            journal_bytes: MIB,
            ..want()
        };
        let e = plan("/dev/pmem0", &Content::Blank, &w, true).unwrap_err();
        assert!(e.contains("too small"), "{e}");
    }
}
