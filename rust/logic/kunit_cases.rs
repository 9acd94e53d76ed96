//! Self-tests of the pure logic that run inside the kernel module (KUnit)
//! as well as on the host.
//!
//! Each case uses only `core` and fixed-size buffers (no allocation, at most
//! one 4 KiB buffer on the stack) and reports the first failed check.
//! `for_each_case!` lists them all, once: [`CASES`] (iterated by the host
//! test) and the KUnit suite (`rust/kunit.rs`, a function per case, as
//! `#[kunit_tests]` needs) are made from it, and
//! `tests/guest/00-kunit.sh` checks that every one of them ran in KUnit. The host tests next to each module go much further (exhaustive bit
//! flips, randomised models).

use super::chunklock::{Holders, NotHeld};
use super::crc::crc32c;
use super::epoch::{piece_needed, Epoch};
use super::extent::{self, carve, intersect, merge_adjacent, Carve, Extent, Which};
use super::format::{self, pick_superblock, plan_geometry, Descriptor, SnapState, Superblock};
use super::lookup::{self, MapWrite, Own, ReadFrom, ViewWrite};
use super::replay::{self, RecordInfo, ReplayError};
use super::ring::{JournalSpace, Reservation, Ring, RingError};
use super::args::{self, ArgError, Message, ViewMode};
use super::retire::{oldest_referenced, retire_point, retire_point_from, Rec};
use super::bypass;
use super::compact;
use super::sort;
use super::validity;
use super::epoch::snap_seq_after_replay;

/// A self-test: `Err` carries the failed check.
pub type Case = fn() -> Result<(), &'static str>;

/// Calls `$m!` with the name of every self-test: the one list that
/// [`CASES`] and the KUnit suite (`rust/kunit.rs`) are both made from.
macro_rules! for_each_case {
    ($m:ident) => {
        $m! {
            crc32c_check_value,
            geometry_plan,
            superblock_round_trip,
            superblock_corruption,
            descriptor_round_trip,
            descriptor_corruption,
            ring_wrap_and_fifo,
            journal_space_slots,
            extent_carve,
            replay_wrap_and_holes,
            replay_rejects_corrupt,
            validity_map,
            table_features,
            table_errors,
            messages,
            chunk_lock,
            epoch_histories,
            mirror_lookup_figures,
            retire_rule,
            ring_end_and_replay_boundary,
            changed_blocks,
            bypass_rules,
            compact_rules,
        }
    };
}
// (used by the kernel crate's KUnit suite, not by the host crate)
#[allow(unused_imports)]
pub(crate) use for_each_case;

macro_rules! case_table {
    ($($name:ident),* $(,)?) => {
        /// Every self-test, by name.
        pub const CASES: &[(&str, Case)] = &[$((stringify!($name), $name)),*];
    };
}
for_each_case!(case_table);

fn ensure(ok: bool, what: &'static str) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err(what)
    }
}

pub fn crc32c_check_value() -> Result<(), &'static str> {
    ensure(crc32c(0, b"123456789") == 0xE306_9283, "check value")?;
    ensure(
        crc32c(crc32c(0, b"1234"), b"56789") == 0xE306_9283,
        "incremental",
    )?;
    ensure(crc32c(0, &[0u8; 32]) == 0x8A91_36AA, "32 zero bytes")
}

const PROD: u64 = 1 << 21;

pub fn geometry_plan() -> Result<(), &'static str> {
    let g = plan_geometry(16 << 20, PROD, 8).map_err(|_| "plan failed")?;
    ensure(
        g.map_offset == 8192 && g.map_bytes == 32768,
        "map placement",
    )?;
    ensure(
        g.cbt_offset == 40960 && g.desc_offset == 106496 && g.desc_count == 4008,
        "changed-block maps and descriptor table",
    )?;
    ensure(
        g.ring_offset == 106496 + 258048 && g.ring_sectors == 32056,
        "ring placement",
    )?;
    ensure(g.validate(PROD, 8).is_ok(), "planned geometry validates")?;
    ensure(
        plan_geometry(1 << 20, PROD, 8) == Err(format::Error::TooSmall),
        "too small",
    )?;
    ensure(
        plan_geometry(16 << 20, PROD, 12) == Err(format::Error::BadGeometry),
        "bad chunk",
    )
}

pub fn sample_superblock() -> Result<Superblock, &'static str> {
    Ok(Superblock {
        generation: 41,
        uuid: [7; 16],
        prod_sectors: PROD,
        chunk_sectors: 8,
        store_sectors: 0,
        geometry: plan_geometry(16 << 20, PROD, 8).map_err(|_| "plan failed")?,
        tail_seq: 5,
        tail_pos: 9,
        snap_state: SnapState::Invalid,
        snap_seq: 4,
        snap_id: 2,
        hydrate: false,
        prod_devt: 7,
        store_devt: 9,
        cbt: super::cbt::Intervals::fresh(1).after_snapshot(4),
    })
}

pub fn superblock_round_trip() -> Result<(), &'static str> {
    let sb = sample_superblock()?;
    let mut slot = [0u8; format::SB_SLOT_BYTES];
    sb.encode(&mut slot);
    ensure(slot.get(..8) == Some(&b"JSNAPSB1"[..]), "magic bytes")?;
    ensure(
        slot.get(16..24) == Some(&41u64.to_le_bytes()[..]),
        "generation bytes",
    )?;
    ensure(Superblock::decode(&slot) == Ok(sb), "round trip")?;
    ensure(pick_superblock(&slot, &[]) == Ok((sb, 0)), "pick slot 0")?;
    ensure(pick_superblock(&[], &slot) == Ok((sb, 1)), "pick slot 1")?;
    ensure(
        pick_superblock(&slot[..8], &[]) == Err(format::Error::Truncated),
        "nothing valid",
    )
}

pub fn superblock_corruption() -> Result<(), &'static str> {
    let mut slot = [0u8; format::SB_SLOT_BYTES];
    ensure(
        Superblock::decode(&slot) == Err(format::Error::NotFormatted),
        "zero slot",
    )?;
    sample_superblock()?.encode(&mut slot);
    for i in (0..format::SB_HEADER_BYTES).chain([200, 2048, 4095]) {
        for pat in [0x01u8, 0x80, 0xFF] {
            let b = slot.get_mut(i).ok_or("index")?;
            *b ^= pat;
            let bad = Superblock::decode(&slot).is_err();
            *slot.get_mut(i).ok_or("index")? ^= pat;
            ensure(bad, "a flipped byte was not detected")?;
        }
    }
    *slot.get_mut(0).ok_or("index")? = b'X';
    ensure(
        Superblock::decode(&slot) == Err(format::Error::BadMagic),
        "bad magic",
    )
}

fn sample_descriptor() -> Descriptor {
    Descriptor {
        flags: 0,
        seq: 77,
        sector: 1000,
        ring_pos: 64,
        nr_sectors: 1,
        data_crc: crc32c(0, &[0xA5; 512]),
    }
}

pub fn descriptor_round_trip() -> Result<(), &'static str> {
    let d = sample_descriptor();
    let mut b = [0u8; format::DESC_BYTES];
    d.encode(&mut b);
    ensure(b.get(..4) == Some(&b"JDSC"[..]), "descriptor magic")?;
    ensure(Descriptor::decode(&b, 65) == Ok(d), "round trip")?;
    ensure(
        Descriptor::decode(&b, 64) == Err(format::Error::OutOfRing),
        "outside the ring",
    )?;
    ensure(d.verify_data(&[0xA5; 512]), "data verifies")?;
    ensure(!d.verify_data(&[0xA5; 511]), "short data")?;
    let mut data = [0xA5u8; 512];
    *data.get_mut(500).ok_or("index")? = 0;
    ensure(!d.verify_data(&data), "corrupt data")
}

pub fn descriptor_corruption() -> Result<(), &'static str> {
    let mut b = [0u8; format::DESC_BYTES];
    sample_descriptor().encode(&mut b);
    for i in 0..format::DESC_BYTES {
        for bit in 0..8 {
            let mut s = b;
            *s.get_mut(i).ok_or("index")? ^= 1 << bit;
            ensure(
                Descriptor::decode(&s, 1 << 20).is_err(),
                "a flipped bit was not detected",
            )?;
        }
    }
    Descriptor {
        nr_sectors: 0,
        ..sample_descriptor()
    }
    .encode(&mut b);
    ensure(
        Descriptor::decode(&b, 1 << 20) == Err(format::Error::BadLength),
        "zero length",
    )
}

pub fn ring_wrap_and_fifo() -> Result<(), &'static str> {
    let mut r = Ring::new(100, 0, 0).map_err(|_| "new")?;
    let a = r.reserve(45).map_err(|_| "reserve a")?;
    let b = r.reserve(45).map_err(|_| "reserve b")?;
    ensure(r.reserve(51) == Err(RingError::TooBig), "too big")?;
    ensure(r.reserve(11) == Err(RingError::Full), "full")?;
    ensure(r.release(&b) == Err(RingError::NotOldest), "fifo")?;
    r.release(&a).map_err(|_| "release a")?;
    let c = r.reserve(20).map_err(|_| "reserve c")?;
    ensure(
        c == Reservation {
            pos: 0,
            len: 20,
            skipped: 10,
        },
        "wrap skips the end",
    )?;
    ensure(r.used() == 75 && r.head() == 20, "accounting after wrap")?;
    r.release(&b).map_err(|_| "release b")?;
    r.release(&c).map_err(|_| "release c")?;
    ensure(r.used() == 0 && r.tail() == 20, "empty again")
}

pub fn journal_space_slots() -> Result<(), &'static str> {
    let ring = Ring::new(1000, 0, 0).map_err(|_| "ring")?;
    let mut js = JournalSpace::new(ring, 2, 3, 3).map_err(|_| "new")?;
    ensure(js.reserve(8).map(|x| x.0) == Ok(3), "seq 3")?;
    ensure(js.reserve(8).map(|x| x.0) == Ok(4), "seq 4")?;
    ensure(js.reserve(8) == Err(RingError::Full), "slots exhausted")?;
    js.retire_through(3, 8).map_err(|_| "retire")?;
    ensure(
        js.tail_seq() == 4 && js.tail_pos() == 8 && js.pending() == 1,
        "after retire",
    )?;
    ensure(
        js.retire_through(4, 8) == Err(RingError::NotLive),
        "wrong end",
    )
}

pub fn extent_carve() -> Result<(), &'static str> {
    let e = Extent {
        start: 10,
        len: 10,
        seq: 1,
        ring_pos: 100,
    };
    let piece = |start, len, ring_pos| Extent {
        start,
        len,
        seq: 1,
        ring_pos,
    };
    ensure(carve(&e, 0, 10) == Carve::Untouched, "adjacent left")?;
    ensure(
        carve(&e, 5, 15) == Carve::Trimmed(piece(15, 5, 105)),
        "overlap left",
    )?;
    ensure(
        carve(&e, 12, 15) == Carve::Split(piece(10, 2, 100), piece(15, 5, 105)),
        "inside",
    )?;
    ensure(carve(&e, 10, 20) == Carve::Covered, "exact")?;
    ensure(
        carve(&e, 15, 25) == Carve::Trimmed(piece(10, 5, 100)),
        "overlap right",
    )?;
    ensure(carve(&e, 20, 30) == Carve::Untouched, "adjacent right")?;
    ensure(
        intersect(&e, 15, 30) == Some(piece(15, 5, 105)),
        "intersect",
    )?;
    let next = Extent {
        start: 20,
        len: 2,
        seq: 3,
        ring_pos: 110,
    };
    ensure(
        merge_adjacent(&e, &next)
            == Some(Extent {
                start: 10,
                len: 12,
                seq: 3,
                ring_pos: 100,
            }),
        "merge",
    )?;
    // The insertion built on carve, against the per-sector model.
    insert_refcounts()
}

fn rec(seq: u64, ring_pos: u64, len: u64) -> RecordInfo {
    RecordInfo {
        seq,
        sector: 0,
        nr_sectors: len as u32,
        ring_pos,
        ring_len: len,
    }
}

pub fn replay_wrap_and_holes() -> Result<(), &'static str> {
    // tail 10 at 80; 11 is a hole; 12 wrapped to 0; 3 is stale; 13 torn.
    let mut records = [rec(12, 0, 10), rec(3, 0, 5), rec(10, 80, 10)];
    let p = replay::plan(&mut records, 10, 80, 100, 8).map_err(|_| "plan")?;
    ensure(p.count == 2 && p.next_seq == 13, "records kept")?;
    ensure(records.first().map(|r| r.seq) == Some(10), "sorted")?;
    ensure(p.head == 10 && p.used == 30, "ring accounting")?;
    let again = replay::plan(&mut records, 10, 80, 100, 8).map_err(|_| "replan")?;
    ensure(again == p, "idempotent")?;
    let js = p.space().map_err(|_| "space")?;
    ensure(
        js.pending() == 3 && js.ring().used() == 30,
        "restored space",
    )
}

pub fn replay_rejects_corrupt() -> Result<(), &'static str> {
    let mut overlap = [rec(5, 0, 10), rec(6, 5, 10)];
    ensure(
        replay::plan(&mut overlap, 5, 0, 100, 8) == Err(ReplayError::Corrupt { seq: 6 }),
        "overlap",
    )?;
    let mut outside = [rec(5, 95, 10)];
    ensure(
        replay::plan(&mut outside, 5, 0, 100, 8) == Err(ReplayError::Corrupt { seq: 5 }),
        "outside",
    )?;
    ensure(
        replay::plan(&mut [], 5, 100, 100, 8) == Err(ReplayError::BadArgs),
        "bad tail",
    )
}

pub fn validity_map() -> Result<(), &'static str> {
    let mut map = [0u8; 16];
    ensure(
        validity::set(&mut map, 65) == Ok(Some((8, [2, 0, 0, 0, 0, 0, 0, 0]))),
        "set",
    )?;
    ensure(validity::set(&mut map, 65) == Ok(None), "set twice")?;
    ensure(
        validity::test(&map, 65) == Ok(true) && validity::test(&map, 64) == Ok(false),
        "test",
    )?;
    ensure(validity::count(&map, 128) == Ok(1), "count")?;
    ensure(
        validity::first_clear_from(&map, 128, 65) == Ok(Some(66)),
        "first clear",
    )?;
    ensure(validity::set(&mut map, 128).is_err(), "out of range")?;
    // A batch: one write per run of changed words, holding the new words.
    let mut wide = [0u8; 32];
    let mut writes = [(0usize, 0usize); 4];
    let mut nw = 0;
    let n = validity::set_many(&mut wide, &[0, 1, 63, 64, 200, 300], |off, w| {
        if let Some(slot) = writes.get_mut(nw) {
            *slot = (off, w.len());
        }
        nw += 1;
    });
    ensure(n == 5 && nw == 2, "set_many: counts")?;
    ensure(writes[0] == (0, 16) && writes[1] == (24, 8), "set_many: runs")?;
    ensure(validity::count(&wide, 256) == Ok(5), "set_many: bits")?;
    // Staged (written before the bits are set in core): the words that
    // `set_many` then sets, the map untouched; unsorted input refused.
    let mut pmem = wide;
    let before = wide;
    let staged = validity::stage_many(&wide, &[2, 65, 66, 255], |off, w| {
        if let Some(dst) = pmem.get_mut(off..off + w.len()) {
            dst.copy_from_slice(w);
        }
    });
    ensure(staged == Ok(4) && wide == before, "stage_many: count, map untouched")?;
    ensure(validity::set_many(&mut wide, &[2, 65, 66, 255], |_, _| {}) == 4 && pmem == wide, "stage_many: words")?;
    ensure(validity::stage_many(&wide, &[9, 3], |_, _| {}).is_err(), "stage_many: unsorted")?;
    // Runs of consecutive chunks, as the preservation path walks them.
    let mut r = sort::runs(&[3, 4, 5, 9, 10, 12]);
    ensure(
        r.next() == Some((3, 3)) && r.next() == Some((9, 2)) && r.next() == Some((12, 1)) && r.next().is_none(),
        "runs",
    )
}

/// A fixed buffer for `core::fmt::Write`.
struct Buf {
    bytes: [u8; 128],
    len: usize,
}

impl core::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

pub fn table_features() -> Result<(), &'static str> {
    ensure(args::parse_chunk_sectors("256") == Ok(256), "chunk size")?;
    let args = [
        "5",
        "no_destage",
        "high_watermark",
        "80",
        "destage_batch",
        "128",
    ];
    let f = args::parse_features(&args).map_err(|_| "parse_features failed")?;
    ensure(
        f.no_destage && f.high_watermark == 80 && f.destage_batch == 128,
        "values",
    )?;
    ensure(
        f.low_watermark == 75 && f.hydrate_batch == 0 && !f.format,
        "defaults",
    )?;
    ensure(
        f.hydrate_chunks(128) == 64 && f.hydrate_chunks(8) == 1024 && f.hydrate_chunks(4096) == 16,
        "hydration step: 4 MiB worth of chunks, 16..1024",
    )?;
    let mut buf = Buf {
        bytes: [0; 128],
        len: 0,
    };
    args::features_to_table(&f, &mut buf).map_err(|_| "emit")?;
    let want = "5 no_destage high_watermark 80 destage_batch 128";
    ensure(
        buf.bytes.get(..buf.len) == Some(want.as_bytes()),
        "re-emitted as given",
    )?;
    ensure(
        args::parse_view_mode("mirror") == Ok(ViewMode::Mirror),
        "view mode",
    )
}

pub fn table_errors() -> Result<(), &'static str> {
    ensure(
        args::parse_chunk_sectors("+8") == Err(ArgError::ChunkSize),
        "sign",
    )?;
    ensure(
        args::parse_chunk_sectors("12") == Err(ArgError::ChunkSize),
        "not a power of two",
    )?;
    ensure(
        args::parse_chunk_sectors("2097152") == Err(ArgError::ChunkSize),
        "too large",
    )?;
    ensure(
        args::parse_features(&["2", "format"]) == Err(ArgError::FeatureCount),
        "count",
    )?;
    ensure(
        args::parse_features(&["1", "bogus"]) == Err(ArgError::UnknownFeature),
        "unknown",
    )?;
    ensure(
        args::parse_features(&["2", "format", "format"]) == Err(ArgError::DuplicateFeature),
        "duplicate",
    )?;
    ensure(
        args::parse_features(&["1", "low_watermark"]) == Err(ArgError::MissingValue),
        "missing value",
    )?;
    ensure(
        args::parse_features(&["2", "low_watermark", "60"]) == Err(ArgError::WatermarkOrder),
        "order",
    )?;
    ensure(
        args::parse_view_mode("RW") == Err(ArgError::ViewMode),
        "view mode",
    )
}

pub fn messages() -> Result<(), &'static str> {
    ensure(
        args::parse_message(&["snapshot"]) == Ok(Message::Snapshot),
        "snapshot",
    )?;
    ensure(
        args::parse_message(&["hydrate", "on"]) == Ok(Message::Hydrate(true)),
        "hydrate on",
    )?;
    ensure(
        args::parse_message(&["drain", "now"]) == Err(ArgError::MessageArgs),
        "arity",
    )?;
    ensure(
        args::parse_message(&["hydrate", "1"]) == Err(ArgError::HydrateArg),
        "hydrate arg",
    )?;
    ensure(
        args::parse_message(&["rollback"]) == Err(ArgError::UnknownMessage),
        "unknown",
    )
}

pub fn changed_blocks() -> Result<(), &'static str> {
    use super::cbt::{self, Intervals, Which};
    let iv = Intervals::fresh(1).after_snapshot(10);
    ensure(
        iv.of(9) == Some(Which::Previous) && iv.of(10) == Some(Which::Current) && iv.of(0).is_none(),
        "intervals",
    )?;
    ensure(
        iv.slot(Which::Current) == 1 && iv.without_prev().of(5).is_none(),
        "slots",
    )?;
    ensure(
        Intervals::from_fields(iv.cur_seq, iv.prev_seq, iv.flags()) == Some(iv)
            && iv.after_replay(7).cur_seq == 7,
        "superblock fields and replay",
    )?;
    let mut map = [0u8; 16];
    let mut dirty = [0u8; 1];
    let (a, b) = cbt::chunks_of(7, 9, 8).ok_or("chunks of a write")?;
    ensure((a, b) == (0, 1), "chunks of a write")?;
    ensure(cbt::mark(&mut map, &mut dirty, 0, 0) == Ok(1), "mark")?;
    ensure(cbt::mark(&mut map, &mut dirty, 2, 9) == Ok(8), "mark a range")?;
    ensure(cbt::mark(&mut map, &mut dirty, 0, 200).is_err(), "beyond the map")?;
    ensure(cbt::take_dirty(&mut dirty, 0) == Some(0), "dirty page")?;
    let mut buf = Buf {
        bytes: [0; 128],
        len: 0,
    };
    cbt::answer(&mut buf, Which::Previous, 3, 64, &map, 0, 0, 128, 4096).map_err(|_| "report")?;
    ensure(
        buf.bytes.get(..buf.len)
            == Some(&b"previous since=2 until=3 chunk_sectors=64 first=0 end=128 next=- runs=2 changed=9\n0 1\n2 8"[..]),
        "report text",
    )
}

/// A tiny deterministic generator (xorshift64*) for the randomised cases.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn chunk_lock() -> Result<(), &'static str> {
    let mut h = Holders::default();
    let (mut qw, mut qw2, mut qr) = (false, false, false);
    ensure(
        h.acquire(false, &mut qr) && h.acquire(false, &mut qr),
        "two readers share",
    )?;
    ensure(!h.acquire(true, &mut qw) && qw, "writer waits for readers")?;
    ensure(
        !h.acquire(true, &mut qw) && h.writers_waiting == 1,
        "writer counted once",
    )?;
    ensure(
        !h.acquire(false, &mut qr),
        "no new reader while a writer waits",
    )?;
    ensure(
        h.release(false).is_ok() && h.release(false).is_ok(),
        "readers leave",
    )?;
    ensure(
        h.acquire(true, &mut qw) && !qw,
        "waiting writer gets the chunk",
    )?;
    ensure(h.writers_waiting == 0 && h.writer, "writer holds")?;
    ensure(
        !h.acquire(true, &mut qw2) && !h.acquire(false, &mut qr),
        "exclusive",
    )?;
    ensure(h.release(true).is_ok(), "writer leaves")?;
    ensure(!h.acquire(false, &mut qr), "second writer still first")?;
    ensure(
        h.acquire(true, &mut qw2) && h.release(true).is_ok(),
        "second writer",
    )?;
    ensure(h.idle(), "idle")?;
    ensure(
        h.release(true) == Err(NotHeld) && h.release(false) == Err(NotHeld),
        "unbalanced release refused",
    )?;
    ensure(h == Holders::default(), "refused release changes nothing")
}

/// Target sectors of the insert histories.
pub const EH_SECTORS: usize = 32;
/// Most writes in one history.
pub const EH_WRITES: usize = 48;

/// A changes table (or the kept pieces) as an unsorted array.
struct ExtArray {
    n: usize,
    e: [Extent; EH_SECTORS],
}

impl ExtArray {
    const EMPTY: Extent = Extent {
        start: 0,
        len: 0,
        seq: 0,
        ring_pos: 0,
    };

    fn new() -> Self {
        ExtArray {
            n: 0,
            e: [Self::EMPTY; EH_SECTORS],
        }
    }

    fn live(&self) -> &[Extent] {
        self.e.get(..self.n).unwrap_or(&[])
    }

    /// False when full (more extents than sectors: they overlap).
    fn push(&mut self, x: Extent) -> bool {
        let Some(slot) = self.e.get_mut(self.n) else {
            return false;
        };
        *slot = x;
        self.n += 1;
        true
    }

    fn take(&mut self, i: usize) -> Extent {
        let x = self.e[i];
        self.n -= 1;
        self.e[i] = self.e[self.n];
        x
    }

    /// The overlapping extent with the lowest start (the kernel's order).
    fn first_overlap(&self, start: u64, end: u64) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, x) in self.live().iter().enumerate() {
            if x.start < end && x.end() > start && best.is_none_or(|b| x.start < self.e[b].start) {
                best = Some(i);
            }
        }
        best
    }

    /// (seq, ring position) of the data of sector `s`, (0, 0) if none.
    fn at(&self, s: u64) -> (u64, u64) {
        self.live()
            .iter()
            .find(|x| x.start <= s && s < x.end())
            .map_or((0, 0), |x| (x.seq, x.ring_pos + (s - x.start)))
    }

    /// Pieces pointing into record `seq`.
    fn refs(&self, seq: u64) -> u32 {
        self.live().iter().filter(|x| x.seq == seq).count() as u32
    }
}

/// The kernel's tables as [`extent::insert`] sees them, on arrays, with
/// the kernel's node budget: the node freed by the last removal, then
/// [`extent::nodes_needed`] reserved ones.
struct EhTables {
    table: ExtArray,
    kept: ExtArray,
    recs: [Rec; EH_WRITES + 1],
    preserved: u64,
    chunk: u32,
    freed: bool,
    nodes: usize,
    /// An insert found no node (a piece was lost).
    lost: bool,
    /// An insert found its table full (extents overlap).
    overflow: bool,
}

impl extent::Tables for EhTables {
    fn first_overlap(&self, start: u64, end: u64) -> Option<Extent> {
        self.table
            .first_overlap(start, end)
            .map(|i| self.table.e[i])
    }

    fn remove(&mut self, start: u64) -> bool {
        let Some(i) = self.table.live().iter().position(|x| x.start == start) else {
            return false;
        };
        self.table.take(i);
        self.freed = true;
        true
    }

    fn insert(&mut self, which: Which, ext: Extent) -> bool {
        if self.freed {
            self.freed = false;
        } else if self.nodes > 0 {
            self.nodes -= 1;
        } else {
            self.lost = true;
            return false;
        }
        let t = match which {
            Which::Changes => &mut self.table,
            Which::Snap => &mut self.kept,
        };
        if !t.push(ext) {
            self.overflow = true;
        }
        true
    }

    fn replace(&mut self, ext: Extent) -> Option<Extent> {
        let live = self.table.e.get_mut(..self.table.n)?;
        let x = live.iter_mut().find(|x| x.start == ext.start && x.len == ext.len)?;
        Some(core::mem::replace(x, ext))
    }

    fn rec(&mut self, seq: u64) -> Option<&mut Rec> {
        self.recs.get_mut(seq as usize).filter(|r| r.seq == seq)
    }

    fn preserved(&self, c: u64) -> bool {
        self.preserved
            .checked_shr(c as u32)
            .is_some_and(|m| m & 1 != 0)
    }
}

impl EhTables {
    /// Built in place (not inlined: no second copy on the stack).
    #[inline(never)]
    fn new(chunk: u32) -> Self {
        EhTables {
            table: ExtArray::new(),
            kept: ExtArray::new(),
            recs: [Rec::default(); EH_WRITES + 1],
            preserved: 0,
            chunk,
            freed: false,
            nodes: 0,
            lost: false,
            overflow: false,
        }
    }

    /// Empties the tables and the record states, in place.
    fn reset(&mut self) {
        self.table.n = 0;
        self.kept.n = 0;
        self.recs.fill(Rec::default());
        self.preserved = 0;
    }

    /// Journals write `x` as `journal_write` does: a fresh record state,
    /// the nodes a write reserves, then [`extent::insert`].
    fn write(&mut self, x: Extent, epoch: Epoch) -> Result<(), &'static str> {
        let slot = self.recs.get_mut(x.seq as usize).ok_or("too many writes")?;
        *slot = Rec {
            persisted: false,
            ..Rec::free(x.seq, x.ring_pos + x.len)
        };
        self.freed = false;
        self.nodes = extent::nodes_needed(epoch.active);
        extent::insert(self, x, epoch, self.chunk);
        ensure(!self.lost, "insert ran out of reserved nodes")?;
        ensure(!self.overflow, "table overflow: extents overlap")
    }

    fn needed(&self, p: &Extent) -> bool {
        piece_needed(p, self.chunk, |c| extent::Tables::preserved(self, c))
    }

    /// Preserves chunk `c`: kept pieces no chunk needs any more go, with
    /// their references (`JournalState::remove_snap_piece`).
    fn preserve(&mut self, c: u64) {
        self.preserved |= 1u64.checked_shl(c as u32).unwrap_or(0);
        let mut j = 0;
        while j < self.kept.n {
            if self.needed(&self.kept.e[j]) {
                j += 1;
            } else {
                let x = self.kept.take(j);
                if let Some(r) = extent::Tables::rec(self, x.seq) {
                    r.refs = r.refs.saturating_sub(1);
                }
            }
        }
    }
}

/// Checks the tables against the per-sector models of the current volume
/// (`cur`) and of the snapshot (`snap`): `(seq, ring position)`, (0, 0) =
/// production; and the record states against the pieces (`refs`) and
/// against `sup`, the newest write that overwrote a sector of each record.
#[inline(never)]
fn eh_check(
    t: &EhTables,
    epoch: Epoch,
    n: usize,
    cur: &[(u64, u64); EH_SECTORS],
    snap: &[(u64, u64); EH_SECTORS],
    sup: &[u64; EH_WRITES + 1],
) -> Result<(), &'static str> {
    let cs = u64::from(t.chunk.max(1));
    for (i, a) in t.table.live().iter().enumerate() {
        ensure(a.len > 0, "empty extent")?;
        for b in t.table.live().iter().skip(i + 1) {
            ensure(
                a.end() <= b.start || b.end() <= a.start,
                "table extents overlap",
            )?;
        }
    }
    for (i, a) in t.kept.live().iter().enumerate() {
        ensure(a.len > 0, "empty kept piece")?;
        ensure(
            epoch.in_snapshot(a.seq),
            "kept piece is not pre-snapshot data",
        )?;
        ensure(t.needed(a), "kept piece no chunk needs")?;
        for b in t.kept.live().iter().skip(i + 1) {
            ensure(
                a.end() <= b.start || b.end() <= a.start,
                "kept pieces overlap",
            )?;
        }
        for s in a.start..a.end() {
            ensure(
                snap.get(s as usize) == Some(&(a.seq, a.ring_pos + (s - a.start))),
                "kept piece differs from the snapshot model",
            )?;
        }
    }
    for seq in 1..=n as u64 {
        let r = t.recs.get(seq as usize).ok_or("record out of range")?;
        ensure(
            r.refs == t.table.refs(seq) + t.kept.refs(seq),
            "refs differs from the pieces pointing into the record",
        )?;
        ensure(
            r.superseded_by == sup[seq as usize],
            "superseded_by differs from the newest overwriting write",
        )?;
    }
    for s in 0..EH_SECTORS as u64 {
        let c = t.table.at(s);
        ensure(
            c == cur[s as usize],
            "current content differs from the model",
        )?;
        if !epoch.active {
            continue;
        }
        let k = t.kept.at(s);
        ensure(
            k.0 == 0 || c.0 == 0 || !epoch.in_snapshot(c.0),
            "sector both kept and pre-snapshot in the table",
        )?;
        if extent::Tables::preserved(t, s / cs) {
            continue;
        }
        let view = if epoch.in_snapshot(c.0) { c } else { k };
        ensure(
            view == snap[s as usize],
            "snapshot content differs from the model",
        )?;
    }
    Ok(())
}

/// One step of an insert history: a write of `len` sectors at `start`
/// (inside [`EH_SECTORS`]), after preserving chunk `preserve` if the
/// snapshot is active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EhStep {
    /// First sector written.
    pub start: u8,
    /// Sectors written (at least 1).
    pub len: u8,
    /// Chunk to preserve before the write.
    pub preserve: Option<u8>,
}

/// Runs an insert history through [`extent::insert`] and checks it after
/// every write against per-sector models: the snapshot is taken before
/// write `snap_at` (1-based; 0: never) with chunks `preserved` already
/// preserved; chunks of `chunk` sectors. Then replay (all records
/// re-inserted in seq order with `snap_seq` and the final validity map, as
/// recovery does) must give the same current and snapshot content.
///
/// Uses about 6 KiB of stack; never inlined, so callers do not stack
/// several copies.
#[inline(never)]
pub fn insert_history(
    steps: &[EhStep],
    snap_at: usize,
    preserved: u64,
    chunk: u32,
) -> Result<(), &'static str> {
    let n = steps.len();
    ensure(n <= EH_WRITES, "history too long")?;
    let snapshot = Epoch {
        active: snap_at > 0,
        snap_seq: snap_at as u64,
    };
    let mut t = EhTables::new(chunk);
    let mut cur = [(0u64, 0u64); EH_SECTORS];
    let mut snap = cur;
    let mut sup = [0u64; EH_WRITES + 1];
    for (i, w) in steps.iter().enumerate() {
        let seq = i as u64 + 1;
        if seq == snapshot.snap_seq {
            snap = cur;
            t.preserved = preserved;
        }
        let ep = if snapshot.active && seq >= snapshot.snap_seq {
            snapshot
        } else {
            Epoch::NONE
        };
        if let (true, Some(c)) = (ep.active, w.preserve) {
            t.preserve(u64::from(c));
        }
        let (start, len) = (u64::from(w.start), u64::from(w.len));
        ensure(
            len > 0 && start + len <= EH_SECTORS as u64,
            "write outside the model",
        )?;
        let x = Extent {
            start,
            len,
            seq,
            ring_pos: seq * 64,
        };
        t.write(x, ep)?;
        for s in start..start + len {
            let owner = cur[s as usize].0 as usize;
            if owner != 0 {
                sup[owner] = sup[owner].max(seq);
            }
            cur[s as usize] = (seq, x.ring_pos + (s - start));
        }
        eh_check(&t, ep, i + 1, &cur, &snap, &sup)?;
    }
    // Replay, in the same buffers (the case runs on a kernel stack).
    let final_preserved = t.preserved;
    t.reset();
    t.preserved = final_preserved;
    sup = [0u64; EH_WRITES + 1];
    cur = [(0u64, 0u64); EH_SECTORS];
    for (i, w) in steps.iter().enumerate() {
        let seq = i as u64 + 1;
        let (start, len) = (u64::from(w.start), u64::from(w.len));
        let x = Extent {
            start,
            len,
            seq,
            ring_pos: seq * 64,
        };
        t.write(x, snapshot)?;
        for s in start..start + len {
            let owner = cur[s as usize].0 as usize;
            if owner != 0 {
                sup[owner] = sup[owner].max(seq);
            }
            cur[s as usize] = (seq, x.ring_pos + (s - start));
        }
    }
    eh_check(&t, snapshot, n, &cur, &snap, &sup)
}

/// One random history (seeded): writes, a snapshot, chunks preserved at
/// random moments, more writes; see [`insert_history`].
pub fn epoch_history(seed: u64) -> Result<(), &'static str> {
    let mut rng = Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let chunk = 1u32 << rng.below(6);
    let chunks = EH_SECTORS as u64 / u64::from(chunk);
    let mut steps = [EhStep::default(); EH_WRITES];
    let n_pre = 1 + rng.below(12) as usize;
    let n = (n_pre + 1 + rng.below((EH_WRITES - n_pre - 1) as u64) as usize).min(EH_WRITES);
    for w in steps.iter_mut() {
        let start = rng.below(EH_SECTORS as u64);
        w.start = start as u8;
        w.len = (1 + rng.below((EH_SECTORS as u64 - start).min(12))) as u8;
        w.preserve = (rng.below(4) == 0).then(|| rng.below(chunks) as u8);
    }
    let mask = if chunks >= 64 {
        u64::MAX
    } else {
        (1 << chunks) - 1
    };
    let preserved = rng.next() & rng.next() & mask;
    insert_history(&steps[..n], n_pre + 1, preserved, chunk)
}

/// Writes, a snapshot and more writes, checked against per-sector models
/// after every write ([`insert_history`]), over 200 seeds.
pub fn epoch_histories() -> Result<(), &'static str> {
    for seed in 1..200 {
        epoch_history(seed)?;
    }
    Ok(())
}

/// Every alignment of a write over three extents (with and without a
/// snapshot), then random histories without one: the table, `refs` and
/// `superseded_by` stay equal to the per-sector model. Part of the
/// `extent_carve` case.
pub fn insert_refcounts() -> Result<(), &'static str> {
    // Every (start, len) after a fixed background of three extents.
    let bg = [(0u8, 10u8), (10, 12), (22, 10)];
    for start in 0..EH_SECTORS as u8 {
        for len in 1..=(EH_SECTORS as u8 - start) {
            let mut steps = [EhStep::default(); 5];
            for (k, &(s, l)) in bg.iter().enumerate() {
                steps[k] = EhStep {
                    start: s,
                    len: l,
                    preserve: None,
                };
            }
            steps[3] = EhStep {
                start,
                len,
                preserve: None,
            };
            steps[4] = EhStep {
                start: start / 2,
                len: 1 + len / 2,
                preserve: None,
            };
            insert_history(&steps, 0, 0, 8)?;
            insert_history(&steps, 4, 0b0101, 8)?;
        }
    }
    let mut rng = Prng(0x1234_5678_9abc_def1);
    for _ in 0..100 {
        let mut steps = [EhStep::default(); EH_WRITES];
        for w in steps.iter_mut() {
            let start = rng.below(EH_SECTORS as u64);
            w.start = start as u8;
            w.len = (1 + rng.below(EH_SECTORS as u64 - start)) as u8;
        }
        insert_history(&steps, 0, 0, 8)?;
    }
    Ok(())
}

/// The lookup-table decisions of the one-way mirror (volume A = the
/// `mirror` view, volume B = production), case by case.
pub fn mirror_lookup_figures() -> Result<(), &'static str> {
    let split = Epoch {
        active: true,
        snap_seq: 100,
    };
    // Write to A, no entry: copy the chunk's split-time content
    // to A's image, make the entry, write A and B.
    ensure(
        lookup::view_map_write(ViewMode::Mirror, false) == MapWrite::Worker,
        "write A, no entry: worker",
    )?;
    ensure(
        lookup::view_own(false, false) == Own::CopyFirst,
        "write A, no entry: copy first",
    )?;
    ensure(
        lookup::view_own(false, true) == Own::WholeChunk,
        "write A, no entry: whole chunk skips the copy",
    )?;
    ensure(
        lookup::view_write(ViewMode::Mirror, false) == ViewWrite::StoreThenJournal,
        "write A: A, then B",
    )?;
    ensure(
        lookup::view_write(ViewMode::Mirror, true) == ViewWrite::Journal,
        "write A, whole chunk in A already: B",
    )?;
    // Write to A with an entry: no copy, A and B (still through
    // the worker: B's half is journaled after A's half is durable).
    ensure(
        lookup::view_map_write(ViewMode::Mirror, true) == MapWrite::Worker,
        "write A, entry: worker",
    )?;
    ensure(
        lookup::view_own(true, false) == Own::Already,
        "write A, entry: no copy",
    )?;
    ensure(
        lookup::view_own(true, true) == Own::Already,
        "write A, entry: no copy (whole)",
    )?;
    // Write to B, no entry: A's content is copied out before B
    // is overwritten (at destage) - only for post-split data.
    ensure(
        lookup::destage_copies_first(split, 100, false),
        "write B, no entry: copy before B",
    )?;
    ensure(
        !lookup::destage_copies_first(split, 99, false),
        "write B, no entry: pre-split data",
    )?;
    // Write to B with an entry: B only.
    ensure(
        !lookup::destage_copies_first(split, 150, true),
        "write B, entry: B only",
    )?;
    // Reads of A from either image.
    ensure(
        lookup::view_read(true) == ReadFrom::Store,
        "read A, entry: A's image",
    )?;
    ensure(
        lookup::view_read(false) == ReadFrom::Production,
        "read A, no entry: B's image",
    )?;
    // The other view modes.
    ensure(
        lookup::view_map_write(ViewMode::Ro, false) == MapWrite::Refuse,
        "ro refuses",
    )?;
    ensure(
        lookup::view_write(ViewMode::Ro, false) == ViewWrite::Refuse,
        "ro writes nowhere",
    )?;
    ensure(
        lookup::view_map_write(ViewMode::Rw, true) == MapWrite::Store,
        "rw entry: store",
    )?;
    ensure(
        lookup::view_map_write(ViewMode::Rw, false) == MapWrite::Worker,
        "rw: worker",
    )?;
    ensure(
        lookup::view_write(ViewMode::Rw, false) == ViewWrite::Store,
        "rw: store only",
    )?;
    ensure(
        lookup::view_write(ViewMode::Rw, true) == ViewWrite::Done,
        "rw, whole chunk in the store already: done",
    )
}

/// Regression: a record superseded by one that is not persistent yet
/// does not retire; once its superseder is persistent, it does.  Holes
/// retire freely; a pinned record stops retirement and says so.
pub fn retire_rule() -> Result<(), &'static str> {
    let rec = Rec::free;
    let mut recs = [Rec::default(); 8];
    recs[1] = Rec {
        superseded_by: 2,
        ..rec(1, 8)
    };
    recs[2] = Rec {
        persisted: false,
        refs: 1,
        ..rec(2, 16)
    };
    ensure(retire_point(&recs, 1, 3).through.is_none(), "superseder in copy")?;
    recs[2].persisted = true;
    ensure(retire_point(&recs, 1, 3).through == Some((1, 8)), "superseder persistent")?;
    // A partial supersession two records ahead, behind a persistent one.
    let mut recs = [Rec::default(); 8];
    recs[3] = Rec {
        superseded_by: 5,
        ..rec(3, 8)
    };
    recs[4] = rec(4, 16);
    recs[5] = Rec {
        persisted: false,
        refs: 1,
        ..rec(5, 24)
    };
    ensure(retire_point(&recs, 3, 6).through.is_none(), "far superseder in copy")?;
    // The floor: the search stops at record 5 (still being copied), and
    // resumes there once it is persistent.
    let mut floor = 0;
    ensure(retire_point_from(&recs, 3, 6, &mut floor).through.is_none(), "floor: superseder in copy")?;
    ensure(floor == 5, "floor stops at the record in copy")?;
    recs[5].persisted = true;
    ensure(retire_point_from(&recs, 3, 6, &mut floor).through == Some((4, 16)), "floor: superseder persistent")?;
    ensure(floor == 6, "floor passes it once persistent")?;
    recs[5].persisted = false;
    recs[3].superseded_by = 4;
    ensure(retire_point(&recs, 3, 6).through == Some((4, 16)), "near superseder")?;
    let mut recs = [Rec::default(); 8];
    recs[1] = rec(1, 8);
    recs[2] = Rec {
        known: false,
        persisted: false,
        ..rec(2, 0)
    };
    recs[3] = Rec { pins: 1, ..rec(3, 24) };
    let p = retire_point(&recs, 1, 4);
    ensure(p.through == Some((1, 8)) && p.pinned, "hole then pinned")?;
    // Destage's order: referenced, persisted, known records from the tail.
    recs[1].refs = 1;
    recs[3].refs = 2;
    recs[4] = Rec { refs: 1, ..rec(4, 32) };
    let mut seqs = [0u64; 4];
    let mut n = 0;
    for r in oldest_referenced(&recs, 1, 5, 8) {
        *seqs.get_mut(n).ok_or("too many")? = r.seq;
        n += 1;
    }
    ensure(n == 3 && seqs[..3] == [1, 3, 4], "oldest referenced first")?;
    ensure(oldest_referenced(&recs, 1, 5, 2).count() == 1, "scan window")
}

/// Regressions: a record ending at the ring end retires; after a
/// replay that lost records below `snap_seq`, new writes are post-snapshot.
pub fn ring_end_and_replay_boundary() -> Result<(), &'static str> {
    let ring = Ring::new(32, 0, 0).map_err(|_| "ring")?;
    let mut space = JournalSpace::new(ring, 8, 1, 1).map_err(|_| "space")?;
    for _ in 0..4 {
        space.reserve(8).map_err(|_| "reserve")?;
    }
    space.retire_through(4, 32).map_err(|_| "retire at the ring end")?;
    ensure(space.pending() == 0 && space.ring().used() == 0, "empty after")?;
    let e = Epoch {
        active: true,
        snap_seq: snap_seq_after_replay(8, 6),
    };
    ensure(!e.in_snapshot(6) && e.in_snapshot(5), "boundary after replay")
}

/// The journal bypass: a large write bypasses only with no snapshot, no
/// replayable record and no bypassed write in flight over it, and a slot
/// is free again once its completion is reaped.
pub fn bypass_rules() -> Result<(), &'static str> {
    let mut recs = [Rec::default(); 4];
    recs[1] = Rec {
        sector: 2048,
        sectors: 2048,
        ..Rec::free(1, 0)
    };
    recs[2] = Rec {
        known: false,
        sector: 8192,
        sectors: 2048,
        ..Rec::free(2, 0)
    };
    let ask = |start| bypass::Ask {
        start,
        len: 2048,
        min: 2048,
        snapshot_none: true,
        blocked: false,
    };
    let mut s = bypass::Slots::new();
    ensure(bypass::decide(&mut s, &recs, 1, 3, ask(0)) == Some(1), "free range")?;
    ensure(bypass::decide(&mut s, &recs, 1, 3, ask(1)) .is_none(), "in flight")?;
    ensure(bypass::decide(&mut s, &recs, 1, 3, ask(4000)).is_none(), "live record")?;
    ensure(bypass::decide(&mut s, &recs, 1, 3, ask(8192)) == Some(2), "hole")?;
    let snap = bypass::Ask { snapshot_none: false, ..ask(20000) };
    ensure(bypass::decide(&mut s, &recs, 1, 3, snap).is_none(), "snapshot")?;
    let small = bypass::Ask { len: 2047, ..ask(20000) };
    ensure(bypass::decide(&mut s, &recs, 1, 3, small).is_none(), "small")?;
    s.reap(bypass::tag_bit(1));
    ensure(bypass::decide(&mut s, &recs, 2, 3, ask(1)) == Some(1), "reaped, retired")?;
    ensure(s.count() == 2, "two in flight")
}

/// Compaction of the journal tail: only with no snapshot and no drain,
/// only when at most the given share of the tail (sectors and records) is
/// live, and only within one changed-block interval; destage starts at the
/// high watermark of live data or at the ring bound.
pub fn compact_rules() -> Result<(), &'static str> {
    let mut recs = [Rec::default(); 4];
    for seq in 4..8u64 {
        recs[(seq % 4) as usize] = Rec {
            sectors: 8,
            ..Rec::free(seq, 0)
        };
    }
    let (records, sectors) = compact::span_of(&recs, 4, 7);
    ensure(records == 4 && sectors == 32, "span")?;
    let mut span = compact::TailSpan {
        records,
        sectors,
        ..compact::TailSpan::default()
    };
    span.add_piece(8);
    ensure(compact::should_compact(&span, 50), "a quarter live")?;
    ensure(!compact::should_compact(&span, 0), "off")?;
    span.add_piece(8);
    span.add_piece(1);
    ensure(!compact::should_compact(&span, 50), "three records of four")?;
    let allow = compact::Allow {
        enabled: true,
        snapshot_none: true,
        draining: false,
    };
    ensure(allow.ok(), "allowed")?;
    ensure(!compact::Allow { snapshot_none: false, ..allow }.ok(), "snapshot")?;
    ensure(!compact::Allow { draining: true, ..allow }.ok(), "drain")?;
    let iv = |s: u64| if s >= 10 { Some(1u8) } else { None };
    ensure(compact::may_copy(0) && !compact::may_copy(compact::MAX_COPIES), "copies bounded")?;
    ensure(compact::same_interval(10, 12, iv), "same interval")?;
    ensure(!compact::same_interval(9, 12, iv), "across an interval")?;
    // The watermarks count live data; dead records wait for the ring bound.
    let fill = |used_pct, live_pct| compact::Fill { used_pct, live_pct };
    ensure(compact::ring_high(50) == 90 && compact::ring_high(5) == 9, "ring bound")?;
    ensure(!compact::destage_starts(fill(89, 27), 50), "dead records below the bound")?;
    let (live, ring) = (Some(compact::Trigger::Live), Some(compact::Trigger::Ring));
    ensure(compact::destage_trigger(fill(90, 27), 50) == ring, "at the ring bound")?;
    ensure(compact::destage_trigger(fill(50, 50), 50) == live, "live data at high")?;
    ensure(!compact::destage_stops(fill(86, 27), 50, 45, compact::Trigger::Ring), "ring above its low")?;
    ensure(compact::destage_stops(fill(85, 45), 50, 45, compact::Trigger::Ring), "both low")?;
    ensure(!compact::destage_stops(fill(60, 30), 50, 45, compact::Trigger::Live), "not yet retired")?;
    ensure(compact::destage_stops(fill(45, 30), 50, 45, compact::Trigger::Live), "down to low")
}
