//! Pure `core` logic of dm-jsnap: the on-media format, ring arithmetic,
//! replay, extent algebra, snapshot epochs, retirement, the validity map,
//! the lock and lookup decisions and the argument grammar.
//!
//! This file is the one list of these modules: the kernel module includes
//! it as `mod logic`, and the host test crate (`rust/host`) as well, so that
//! `cargo test` exercises exactly what the module runs.  Every module uses
//! only `core`; paths are spelled out so that both builds find the files.
#![forbid(unsafe_code)]

#[path = "logic/bypass.rs"]
pub mod bypass;
#[path = "logic/cbt.rs"]
pub mod cbt;
#[path = "logic/chunklock.rs"]
pub mod chunklock;
#[path = "logic/compact.rs"]
pub mod compact;
#[path = "logic/crc.rs"]
pub mod crc;
#[path = "logic/epoch.rs"]
pub mod epoch;
#[path = "logic/extent.rs"]
pub mod extent;
#[path = "logic/format.rs"]
pub mod format;
#[allow(missing_docs)] // each case is named in `CASES`
#[path = "logic/kunit_cases.rs"]
pub mod kunit_cases;
#[path = "logic/lookup.rs"]
pub mod lookup;
#[path = "logic/replay.rs"]
pub mod replay;
#[path = "logic/retire.rs"]
pub mod retire;
#[path = "logic/ring.rs"]
pub mod ring;
#[path = "logic/sort.rs"]
pub mod sort;
#[path = "logic/args.rs"]
pub mod args;
#[path = "logic/validity.rs"]
pub mod validity;
