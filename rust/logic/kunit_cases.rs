//! Self-tests of the pure logic that run inside the kernel module (KUnit)
//! as well as on the host.
//!
//! Each case uses only `core` and fixed-size buffers (no allocation, at most
//! one 4 KiB buffer on the stack) and reports the first failed check.
//! [`CASES`] lists them all; the KUnit suite and the host test both iterate
//! it. The host tests next to each module go much further (exhaustive bit
//! flips, randomised models).

use super::crc::crc32c;
use super::extent::{carve, intersect, merge_adjacent, Carve, Extent};
use super::format::{self, pick_superblock, plan_geometry, Descriptor, SnapState, Superblock};
use super::replay::{self, RecordInfo, ReplayError};
use super::ring::{JournalSpace, Reservation, Ring, RingError};
use super::table::{self, ArgError, Message};
use super::validity;

/// A self-test: `Err` carries the failed check.
pub type Case = fn() -> Result<(), &'static str>;

/// Every self-test, by name.
pub const CASES: &[(&str, Case)] = &[
    ("crc32c_check_value", crc32c_check_value),
    ("geometry_plan", geometry_plan),
    ("superblock_round_trip", superblock_round_trip),
    ("superblock_corruption", superblock_corruption),
    ("descriptor_round_trip", descriptor_round_trip),
    ("descriptor_corruption", descriptor_corruption),
    ("ring_wrap_and_fifo", ring_wrap_and_fifo),
    ("journal_space_slots", journal_space_slots),
    ("extent_carve", extent_carve),
    ("replay_wrap_and_holes", replay_wrap_and_holes),
    ("replay_rejects_corrupt", replay_rejects_corrupt),
    ("validity_map", validity_map),
    ("table_features", table_features),
    ("table_errors", table_errors),
    ("messages", messages),
];

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
        g.desc_offset == 40960 && g.desc_count == 4024,
        "descriptor table",
    )?;
    ensure(
        g.ring_offset == 40960 + 258048 && g.ring_sectors == 32184,
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
    )
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
    ensure(validity::set(&mut map, 128).is_err(), "out of range")
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
    ensure(table::parse_chunk_sectors("256") == Ok(256), "chunk size")?;
    let args = [
        "5",
        "no_destage",
        "high_watermark",
        "80",
        "destage_batch",
        "128",
    ];
    let f = table::parse_features(&args).map_err(|_| "parse_features failed")?;
    ensure(
        f.no_destage && f.high_watermark == 80 && f.destage_batch == 128,
        "values",
    )?;
    ensure(
        f.low_watermark == 10 && f.hydrate_batch == 16 && !f.format,
        "defaults",
    )?;
    let mut buf = Buf {
        bytes: [0; 128],
        len: 0,
    };
    table::features_to_table(&f, &mut buf).map_err(|_| "emit")?;
    let want = "5 no_destage high_watermark 80 destage_batch 128";
    ensure(
        buf.bytes.get(..buf.len) == Some(want.as_bytes()),
        "re-emitted as given",
    )?;
    ensure(
        table::parse_view_mode("mirror") == Ok(table::ViewMode::Mirror),
        "view mode",
    )
}

pub fn table_errors() -> Result<(), &'static str> {
    ensure(
        table::parse_chunk_sectors("+8") == Err(ArgError::ChunkSize),
        "sign",
    )?;
    ensure(
        table::parse_chunk_sectors("12") == Err(ArgError::ChunkSize),
        "not a power of two",
    )?;
    ensure(
        table::parse_chunk_sectors("2097152") == Err(ArgError::ChunkSize),
        "too large",
    )?;
    ensure(
        table::parse_features(&["2", "format"]) == Err(ArgError::FeatureCount),
        "count",
    )?;
    ensure(
        table::parse_features(&["1", "bogus"]) == Err(ArgError::UnknownFeature),
        "unknown",
    )?;
    ensure(
        table::parse_features(&["2", "format", "format"]) == Err(ArgError::DuplicateFeature),
        "duplicate",
    )?;
    ensure(
        table::parse_features(&["1", "low_watermark"]) == Err(ArgError::MissingValue),
        "missing value",
    )?;
    ensure(
        table::parse_features(&["2", "low_watermark", "60"]) == Err(ArgError::WatermarkOrder),
        "order",
    )?;
    ensure(
        table::parse_view_mode("RW") == Err(ArgError::ViewMode),
        "view mode",
    )
}

pub fn messages() -> Result<(), &'static str> {
    ensure(
        table::parse_message(&["snapshot"]) == Ok(Message::Snapshot),
        "snapshot",
    )?;
    ensure(
        table::parse_message(&["hydrate", "on"]) == Ok(Message::Hydrate(true)),
        "hydrate on",
    )?;
    ensure(
        table::parse_message(&["drain", "now"]) == Err(ArgError::MessageArgs),
        "arity",
    )?;
    ensure(
        table::parse_message(&["hydrate", "1"]) == Err(ArgError::HydrateArg),
        "hydrate arg",
    )?;
    ensure(
        table::parse_message(&["rollback"]) == Err(ArgError::UnknownMessage),
        "unknown",
    )
}
