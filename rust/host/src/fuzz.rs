//! Property tests (proptest) of the parsers, the on-media decoders, replay
//! and the changes-table insertion.
//!
//! `cargo test` runs a short pass of each (`DEFAULT_CASES`); a long run is
//! `JSNAP_FUZZ_CASES=100000 cargo test --release fuzz_`. A failure prints
//! the shrunk input; nothing is persisted to disk (`rust/logic` stays clean).
//!
//! Properties, in short:
//!
//! * **Parsers** (`args`): any token list either parses to a value that an
//!   independent reference parser (written from the grammar in
//!   `table.rs` and the README) gives too, and that round-trips through its
//!   table echo, or is refused — never a panic. Valid lines always parse.
//! * **Decoders** (`format`): arbitrary bytes never panic; what decodes
//!   re-encodes to something that decodes to the same value; a valid
//!   encoding decodes to exactly what was encoded; any single flipped byte
//!   of a slot or descriptor is refused.
//! * **Replay**: arbitrary record sets never panic, and an accepted plan is
//!   sorted, live, non-overlapping in the ring and idempotent. A journal a
//!   writer produced (the live allocator, stale slots of earlier laps, a
//!   crash tearing the writes in flight at 8-byte granularity) recovers
//!   exactly: every acknowledged live record, plus only in-flight records
//!   whose descriptor and data both reached pmem; the recovered per-sector
//!   content is what applying those records in seq order over the destaged
//!   state gives, so a writer could have produced it (in-flight writes
//!   completing in any subset). With random byte corruption on top, replay
//!   never panics and never returns a record nobody wrote.
//! * **Insertion** (`extent::insert`): random write histories (every
//!   alignment, snapshot, preservation) keep the tables equal to a
//!   per-sector model and `refs` equal to the live pieces of each record
//!   (`kunit_cases::insert_history`), also at large coordinates through a
//!   `BTreeMap` implementation.

use crate::crc::crc32c;
use crate::epoch::Epoch;
use crate::extent::{self, Extent, Which};
use crate::format::{self, Descriptor, SnapState, Superblock};
use crate::kunit_cases::{insert_history, EhStep, EH_SECTORS, EH_WRITES};
use crate::replay::{self, RecordInfo};
use crate::retire::Rec;
use crate::ring::{JournalSpace, Ring};
use crate::args::{self, ArgError, Features, Message};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::BTreeMap;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// Cases per property in a plain `cargo test`.
const DEFAULT_CASES: u32 = 256;

fn config() -> Config {
    let cases = std::env::var("JSNAP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- parsers

/// Numbers as a user might type them: valid, edges, huge, signed, junk.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..=5000).prop_map(|v| v.to_string()),
        (0u32..=110).prop_map(|v| v.to_string()),
        any::<u32>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        Just("99999999999999999999999".to_string()),
        Just("4294967296".to_string()),
        Just("4294967295".to_string()),
        (0u32..=200).prop_map(|v| format!("-{v}")),
        (0u32..=200).prop_map(|v| format!("+{v}")),
        (0u32..=200).prop_map(|v| format!("00{v}")),
        (0u32..=200).prop_map(|v| format!("0x{v:x}")),
        (0u32..=200).prop_map(|v| format!(" {v}")),
        (0u32..=200).prop_map(|v| format!("{v}k")),
        Just(String::new()),
        "[0-9a-z+-]{0,6}",
    ]
}

const NAMES: [&str; 7] = [
    "format",
    "high_watermark",
    "low_watermark",
    "destage_batch",
    "hydrate_batch",
    "no_destage",
    "relocated",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..NAMES.len()).prop_map(|i| NAMES[i].to_string()),
        3 => number(),
        1 => prop_oneof![
            Just("Format".to_string()),
            Just("high_watermark=50".to_string()),
            Just("discard".to_string()),
            "[a-z_]{1,16}",
            "\\PC{0,8}",
        ],
    ]
}

/// Feature argument lists built from the grammar and mutated: a count
/// (right, off by one, junk) followed by tokens.
fn feature_args() -> impl Strategy<Value = Vec<String>> {
    (prop::collection::vec(token(), 0..14), 0u8..8, number()).prop_map(|(toks, how, junk)| {
        let mut v = Vec::new();
        match how {
            0 => return toks,
            1 => v.push(junk),
            2 => v.push((toks.len() + 1).to_string()),
            3 => v.push(toks.len().saturating_sub(1).to_string()),
            _ => v.push(toks.len().to_string()),
        }
        v.extend(toks);
        v
    })
}

/// Reference parser of the feature arguments, straight from the grammar.
/// Returns (format, high, low, destage, hydrate, no_destage, relocated,
/// names in order) or None.
#[expect(clippy::type_complexity)]
fn ref_features(args: &[&str]) -> Option<(bool, u32, u32, u32, u32, bool, bool, Vec<String>)> {
    // Plain decimal: digits only, leading zeros allowed, no overflow.
    let num = |s: &str, lo: u64, hi: u64| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = s.trim_start_matches('0');
        let v: u64 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        (lo..=hi).contains(&v).then_some(v as u32)
    };
    let mut out = (false, 50, 45, 64, 0, false, false, Vec::new());
    let Some((count, rest)) = args.split_first() else {
        return Some(out);
    };
    let count = num(count, 0, u64::from(u32::MAX))?;
    if count as usize != rest.len() {
        return None;
    }
    let mut i = 0;
    while i < rest.len() {
        let name = rest[i];
        i += 1;
        if !NAMES.contains(&name) || out.7.iter().any(|n| n == name) {
            return None;
        }
        let mut value = |lo, hi| -> Option<u32> {
            let v = rest.get(i)?;
            i += 1;
            num(v, lo, hi)
        };
        match name {
            "format" => out.0 = true,
            "no_destage" => out.5 = true,
            "relocated" => out.6 = true,
            "high_watermark" => out.1 = value(1, 100)?,
            "low_watermark" => out.2 = value(0, 99)?,
            "destage_batch" => out.3 = value(1, 4096)?,
            "hydrate_batch" => out.4 = value(1, 1024)?,
            _ => return None,
        }
        out.7.push(name.to_string());
    }
    // Without `low_watermark`, it follows `high_watermark` (5 below).
    if !out.7.iter().any(|n| n == "low_watermark") {
        out.2 = out.1.saturating_sub(5);
    }
    (out.2 < out.1).then_some(out)
}

fn echo(f: &Features) -> String {
    let mut s = String::new();
    args::features_to_table(f, &mut s).unwrap();
    s
}

fn valid_features() -> impl Strategy<Value = Vec<String>> {
    (
        Just(NAMES.to_vec()).prop_shuffle(),
        0usize..=7,
        1u32..=100,
        1u32..=4096,
        1u32..=1024,
        any::<u8>(),
    )
        .prop_map(|(names, k, hw, db, hb, lwseed)| {
            let lw = u32::from(lwseed) % hw;
            let mut toks = Vec::new();
            for n in names.into_iter().take(k) {
                toks.push(n.to_string());
                match n {
                    "high_watermark" => toks.push(hw.to_string()),
                    "low_watermark" => toks.push(lw.to_string()),
                    "destage_batch" => toks.push(db.to_string()),
                    "hydrate_batch" => toks.push(hb.to_string()),
                    _ => {}
                }
            }
            // A watermark alone must keep the order with the other's default.
            let hw_at = toks.iter().position(|t| t == "high_watermark");
            let lw_at = toks.iter().position(|t| t == "low_watermark");
            match (hw_at, lw_at) {
                (Some(_), None) => {}
                (None, Some(p)) => toks[p + 1] = (lw % 50).to_string(),
                _ => {}
            }
            let mut v = vec![toks.len().to_string()];
            v.extend(toks);
            v
        })
}

fn message_words() -> impl Strategy<Value = Vec<String>> {
    let word = prop_oneof![
        4 => prop_oneof![
            Just("snapshot"), Just("drop"), Just("drain"), Just("hydrate"),
            Just("on"), Just("off"), Just("changed"), Just("current"), Just("previous"),
            Just("0"), Just("18446744073709551615"), Just("18446744073709551616"),
        ]
        .prop_map(str::to_string),
        1 => prop_oneof![
            Just("Snapshot".to_string()),
            Just("hydrate=on".to_string()),
            Just("1".to_string()),
            Just(String::new()),
            "\\PC{0,10}",
        ],
    ];
    prop::collection::vec(word, 0..4)
}

/// What `changed` with these arguments means, independently of the parser.
fn changed_model(rest: &[&str]) -> Option<Message> {
    use crate::cbt::Which;
    let (which, nums) = match rest.first() {
        Some(&"current") => (Which::Current, &rest[1..]),
        Some(&"previous") => (Which::Previous, &rest[1..]),
        _ => (Which::Current, rest),
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match nums {
        [] => Some(Message::Changed { which, first: 0, count: None }),
        [a] => Some(Message::Changed { which, first: num(a)?, count: None }),
        [a, b] => Some(Message::Changed { which, first: num(a)?, count: Some(num(b)?) }),
        _ => None,
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// --------------------------------------------------------------- decoders

fn superblock() -> impl Strategy<Value = Superblock> {
    (
        (1u64 << 21)..(1u64 << 34),
        1u64..(1u64 << 32),
        3u32..=20,
        any::<[u64; 5]>(),
        any::<[u8; 16]>(),
        (0u32..3, any::<bool>(), any::<[u32; 2]>()),
    )
        .prop_filter_map("geometry", |(dev, prod, cs, v, uuid, (st, hy, devt))| {
            let geometry = format::plan_geometry(dev, prod, 1 << cs).ok()?;
            Some(Superblock {
                generation: v[0],
                uuid,
                prod_sectors: prod,
                chunk_sectors: 1 << cs,
                store_sectors: v[1],
                tail_seq: v[2],
                tail_pos: v[3] % geometry.ring_sectors,
                geometry,
                snap_state: [SnapState::None, SnapState::Active, SnapState::Invalid][st as usize],
                snap_seq: v[4],
                snap_id: v[0] ^ v[4],
                hydrate: hy,
                prod_devt: devt[0],
                store_devt: devt[1],
                cbt: crate::cbt::Intervals::from_fields(v[2], v[4] % v[2].max(1), (v[3] % 4) as u32)?,
            })
        })
}

fn encode_sb(sb: &Superblock) -> Vec<u8> {
    let mut slot = [0u8; format::SB_SLOT_BYTES];
    sb.encode(&mut slot);
    slot.to_vec()
}

/// Bytes that are mostly a valid slot: random edits of an encoding, with
/// the checksum fixed up or not, so decoding reaches the deeper checks.
fn sb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..5000),
        (
            superblock(),
            prop::collection::vec((0usize..200, any::<u8>()), 0..6),
            any::<bool>(),
            prop_oneof![8 => Just(format::SB_SLOT_BYTES), 1 => 0usize..4200, 1 => Just(5000)],
        )
            .prop_map(|(sb, edits, fix, len)| {
                let mut b = encode_sb(&sb);
                for (o, v) in edits {
                    b[o] = v;
                }
                if fix {
                    b[152..156].fill(0);
                    let crc = crc32c(0, &b);
                    b[152..156].copy_from_slice(&crc.to_le_bytes());
                }
                b.resize(len, 0);
                b
            }),
    ]
}

// ------------------------------------------------------------------ replay

/// Mostly plausible journals: records in seq order laid out one after the
/// other from `tail_pos`, then perturbed (gaps, overlaps, duplicates,
/// wrong lengths, stale seqs), in any order.
fn journal_records() -> impl Strategy<Value = (Vec<RecordInfo>, u64, u64, u64, u32)> {
    (
        0u64..1000,
        8u64..300,
        1u32..40,
        prop::collection::vec((0u64..3, 1u32..20, 0u64..3, 0u8..48, any::<u64>()), 0..20),
        any::<prop::sample::Index>(),
    )
        .prop_flat_map(|(tail_seq, ring, dc, recs, shuffle)| {
            (Just((tail_seq, ring, dc, recs, shuffle)), 0..ring)
        })
        .prop_map(|((tail_seq, ring, dc, recs, shuffle), tail_pos)| {
            let mut out = Vec::new();
            let (mut seq, mut pos) = (tail_seq, tail_pos);
            for (gap_seq, nr, gap, mutate, junk) in recs {
                seq += gap_seq.saturating_sub(1);
                pos += gap;
                let nr = nr.min((ring / 2).max(1) as u32);
                if pos + u64::from(nr) > ring {
                    pos = 0; // the writer skips the end of the ring
                }
                let mut r = RecordInfo {
                    seq,
                    sector: junk % 500,
                    nr_sectors: nr,
                    ring_pos: pos,
                    ring_len: u64::from(nr),
                };
                match mutate {
                    0 => r.ring_pos = junk % ring,
                    1 => r.ring_len = junk % 40,
                    2 => r.seq = tail_seq.wrapping_add(junk % 64).wrapping_sub(8),
                    3 => r.nr_sectors = 0,
                    _ => {}
                }
                out.push(r);
                if mutate == 4 {
                    out.push(r); // duplicate
                }
                seq += 1;
                pos = (pos + u64::from(nr)) % ring;
            }
            let n = out.len();
            if n > 1 {
                out.rotate_left(shuffle.index(n));
            }
            (out, tail_seq, tail_pos, ring, dc)
        })
}

fn record_info() -> impl Strategy<Value = RecordInfo> {
    prop_oneof![
        4 => (0u64..40, 0u64..300, 0u32..80, 0u64..300, 0u64..100).prop_map(
            |(seq, sector, nr, pos, len)| RecordInfo { seq, sector, nr_sectors: nr, ring_pos: pos, ring_len: len }
        ),
        1 => (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(seq, sector, nr, pos, len)| RecordInfo { seq, sector, nr_sectors: nr, ring_pos: pos, ring_len: len }
        ),
    ]
}

/// One step of a writer: a write of `nr` sectors at `sector`, or the
/// retirement (destage) of the `k`-th oldest live record and all before it.
#[derive(Clone, Copy, Debug)]
enum Op {
    Write { sector: u64, nr: u64 },
    Retire { k: usize },
}

fn ops(prod: u64) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..prod, 1u64..=24).prop_map(move |(s, n)| Op::Write { sector: s, nr: n.min(prod - s) }),
        1 => (0usize..8).prop_map(|k| Op::Retire { k }),
    ];
    prop::collection::vec(op, 0..80)
}

/// How a write in flight at the crash reached pmem.
#[derive(Clone, Copy, Debug)]
enum Tear {
    /// Neither data nor descriptor.
    Nothing,
    /// The first `n` 8-byte words of the data, no descriptor.
    Data(usize),
    /// All data and the first `n` words of the descriptor (8 = all).
    DataAndDesc(usize),
    /// The whole descriptor and the first `n` words of the data.
    DescAndData(usize),
}

fn tear() -> impl Strategy<Value = Tear> {
    prop_oneof![
        Just(Tear::Nothing),
        (0usize..4000).prop_map(Tear::Data),
        (0usize..=8).prop_map(Tear::DataAndDesc),
        (0usize..4000).prop_map(Tear::DescAndData),
    ]
}

/// The data byte `i` of record `seq` (distinct per record).
fn pattern(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64 * 31) >> 3) as u8 ^ (i as u8)
}

/// A journal on a simulated pmem: descriptor slots and ring bytes.
struct Journal {
    ring_sectors: u64,
    desc_count: u32,
    slots: Vec<[u8; format::DESC_BYTES]>,
    ring: Vec<u8>,
}

impl core::fmt::Debug for Journal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Journal(ring {} sectors, {} slots)",
            self.ring_sectors, self.desc_count
        )
    }
}

impl Journal {
    fn data(&self, pos: u64, nr: u64) -> &[u8] {
        &self.ring[(pos * 512) as usize..((pos + nr) * 512) as usize]
    }

    /// Writes the first `words` 8-byte words of `bytes` at ring `pos`.
    fn put_data(&mut self, pos: u64, bytes: &[u8], words: usize) {
        let n = words.saturating_mul(8).min(bytes.len());
        let off = (pos * 512) as usize;
        self.ring[off..off + n].copy_from_slice(&bytes[..n]);
    }

    fn put_desc(&mut self, d: &Descriptor, words: usize) {
        let mut b = [0u8; format::DESC_BYTES];
        d.encode(&mut b);
        let slot = &mut self.slots[(d.seq % u64::from(self.desc_count)) as usize];
        let n = words.saturating_mul(8).min(b.len());
        slot[..n].copy_from_slice(&b[..n]);
    }

    /// What recovery (`recovery::replay_records`) reads back: valid,
    /// live, data-verified records inside the target.
    fn read_back(&self, tail_seq: u64, prod: u64) -> Result<Vec<RecordInfo>, &'static str> {
        let dc = u64::from(self.desc_count);
        let mut infos = Vec::new();
        for (i, b) in self.slots.iter().enumerate() {
            let Ok(d) = Descriptor::decode(b, self.ring_sectors) else {
                continue;
            };
            if d.seq < tail_seq || d.seq >= tail_seq + dc || d.seq % dc != i as u64 {
                continue;
            }
            if !d.verify_data(self.data(d.ring_pos, u64::from(d.nr_sectors))) {
                continue;
            }
            if d.sector
                .checked_add(u64::from(d.nr_sectors))
                .is_none_or(|e| e > prod)
            {
                return Err("record outside the target");
            }
            infos.push(RecordInfo::from_descriptor(&d, u64::from(d.nr_sectors)));
        }
        Ok(infos)
    }
}

/// A record as the writer wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    seq: u64,
    sector: u64,
    nr: u64,
    pos: u64,
}

/// A writer's history ending in a crash.
#[derive(Debug)]
struct Crash {
    prod: u64,
    /// Records destaged (retired), in seq order.
    destaged: Vec<Written>,
    /// Acknowledged live records.
    acked: Vec<Written>,
    /// In-flight records and whether both descriptor and data are whole.
    inflight: Vec<(Written, bool)>,
    tail_seq: u64,
    tail_pos: u64,
    journal: Journal,
}

fn run_writer(
    ring_sectors: u64,
    desc_count: u32,
    start: u64,
    prod: u64,
    ops: &[Op],
    tears: &[Tear],
    ordered: bool,
) -> Crash {
    let ring = Ring::new(ring_sectors, start, 0).unwrap();
    let mut js = JournalSpace::new(ring, desc_count, 1, 1).unwrap();
    let mut j = Journal {
        ring_sectors,
        desc_count,
        slots: vec![[0u8; format::DESC_BYTES]; desc_count as usize],
        ring: vec![0u8; (ring_sectors * 512) as usize],
    };
    let mut live: Vec<(Written, crate::ring::Reservation)> = Vec::new();
    let mut destaged = Vec::new();
    let write = |j: &mut Journal, w: &Written, data_words: usize, desc_words: usize| {
        let bytes: Vec<u8> = (0..(w.nr * 512) as usize)
            .map(|i| pattern(w.seq, i))
            .collect();
        j.put_data(w.pos, &bytes, data_words);
        // Version 2 (`ordered`): no data CRC, the data is fenced first.
        let d = Descriptor {
            flags: if ordered { format::DESC_ORDERED } else { 0 },
            seq: w.seq,
            sector: w.sector,
            ring_pos: w.pos,
            nr_sectors: w.nr as u32,
            data_crc: if ordered { 0 } else { crc32c(0, &bytes) },
        };
        j.put_desc(&d, desc_words);
    };
    for op in ops {
        match *op {
            Op::Write { sector, nr } => {
                if nr == 0 || nr > ring_sectors / 2 {
                    continue;
                }
                let Ok((seq, r)) = js.reserve(nr) else {
                    continue;
                };
                let w = Written {
                    seq,
                    sector,
                    nr,
                    pos: r.pos,
                };
                write(&mut j, &w, usize::MAX, 8);
                live.push((w, r));
            }
            Op::Retire { k } => {
                if live.is_empty() {
                    continue;
                }
                let k = k.min(live.len() - 1);
                let (w, r) = live[k];
                js.retire_through(w.seq, js.ring().end_of(&r)).unwrap();
                destaged.extend(live.drain(..=k).map(|(w, _)| w));
            }
        }
    }
    let (tail_seq, tail_pos) = (js.tail_seq(), js.tail_pos());
    // The writes in flight at the crash: reserved, partly written.
    let mut inflight = Vec::new();
    for t in tears {
        let sector = (tail_seq * 7) % prod;
        let nr = (1 + tail_seq % 9).min(prod - sector);
        let Ok((seq, r)) = js.reserve(nr) else {
            break;
        };
        let w = Written {
            seq,
            sector,
            nr,
            pos: r.pos,
        };
        let all = (nr * 64) as usize;
        let whole = match *t {
            Tear::Nothing => false,
            Tear::Data(n) => {
                write(&mut j, &w, n, 0);
                false
            }
            Tear::DataAndDesc(n) => {
                write(&mut j, &w, usize::MAX, n);
                n >= 8
            }
            // An ordered writer fences its data before the descriptor:
            // a descriptor never lands before all of the data.
            Tear::DescAndData(_) if ordered => {
                write(&mut j, &w, usize::MAX, 8);
                true
            }
            Tear::DescAndData(n) => {
                write(&mut j, &w, n, 8);
                n >= all
            }
        };
        inflight.push((w, whole));
    }
    Crash {
        prod,
        destaged,
        acked: live.into_iter().map(|(w, _)| w).collect(),
        inflight,
        tail_seq,
        tail_pos,
        journal: j,
    }
}

/// The changes table and the snapshot table as `BTreeMap`s, with
/// unlimited nodes, for [`extent::insert`] at any coordinates.
#[derive(Default)]
struct MapTables {
    table: BTreeMap<u64, Extent>,
    snap: BTreeMap<u64, Extent>,
    recs: BTreeMap<u64, Rec>,
    preserved: std::collections::BTreeSet<u64>,
}

impl extent::Tables for MapTables {
    fn first_overlap(&self, start: u64, end: u64) -> Option<Extent> {
        if let Some((_, p)) = self.table.range(..start).next_back() {
            if p.end() > start {
                return Some(*p);
            }
        }
        self.table
            .range(start..)
            .next()
            .map(|(_, e)| *e)
            .filter(|n| n.start < end)
    }

    fn remove(&mut self, start: u64) -> bool {
        self.table.remove(&start).is_some()
    }

    fn insert(&mut self, which: Which, ext: Extent) -> bool {
        let t = match which {
            Which::Changes => &mut self.table,
            Which::Snap => &mut self.snap,
        };
        assert!(t.insert(ext.start, ext).is_none(), "two pieces at one key");
        true
    }

    fn replace(&mut self, ext: Extent) -> Option<Extent> {
        let x = self.table.get_mut(&ext.start).filter(|x| x.len == ext.len)?;
        Some(core::mem::replace(x, ext))
    }

    fn rec(&mut self, seq: u64) -> Option<&mut Rec> {
        self.recs.get_mut(&seq)
    }

    fn preserved(&self, c: u64) -> bool {
        self.preserved.contains(&c)
    }
}

impl MapTables {
    fn write(&mut self, x: Extent, epoch: Epoch, chunk: u32) {
        self.recs.insert(
            x.seq,
            Rec {
                persisted: false,
                ..Rec::free(x.seq, 0)
            },
        );
        extent::insert(self, x, epoch, chunk);
    }

    /// (seq, offset in the record) of each sector the tables map.
    fn sectors(&self) -> BTreeMap<u64, (u64, u64)> {
        let mut m = BTreeMap::new();
        for e in self.table.values() {
            for x in e.start..e.end() {
                assert!(
                    m.insert(x, (e.seq, e.ring_pos + (x - e.start))).is_none(),
                    "overlap"
                );
            }
        }
        m
    }

    fn check_refs(&self) -> Result<(), TestCaseError> {
        for (seq, r) in &self.recs {
            let n = self
                .table
                .values()
                .chain(self.snap.values())
                .filter(|e| e.seq == *seq)
                .count();
            prop_assert_eq!(r.refs as usize, n, "refs of record {}", seq);
        }
        Ok(())
    }
}

/// The per-sector content after applying `records` in seq order over the
/// production content: sector → seq of the record holding it (0 = never
/// written).
fn apply(records: &[Written]) -> BTreeMap<u64, u64> {
    let mut v: Vec<Written> = records.to_vec();
    v.sort_by_key(|w| w.seq);
    let mut m = BTreeMap::new();
    for w in v {
        for x in w.sector..w.sector + w.nr {
            m.insert(x, w.seq);
        }
    }
    m
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_chunk_sectors(s in prop_oneof![number(), (3u32..=20).prop_map(|k| (1u32 << k).to_string())]) {
        let want = (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.trim_start_matches('0').parse::<u128>().unwrap_or(if s.trim_start_matches('0').is_empty() { 0 } else { u128::MAX }))
            .filter(|v| (8..=1u128 << 20).contains(v) && v.is_power_of_two());
        match args::parse_chunk_sectors(&s) {
            Ok(v) => prop_assert_eq!(Some(u128::from(v)), want, "{:?}", s),
            Err(e) => {
                prop_assert_eq!(e, ArgError::ChunkSize);
                prop_assert_eq!(want, None, "{:?} refused", s);
            }
        }
    }

    #[test]
    fn fuzz_features(args in feature_args()) {
        let a = strs(&args);
        let got = args::parse_features(&a);
        let want = ref_features(&a);
        match (got, want) {
            (Ok(f), Some(w)) => {
                let names: Vec<String> = f.given().iter().map(|x| x.name().to_string()).collect();
                prop_assert_eq!(
                    (f.format, f.high_watermark, f.low_watermark, f.destage_batch,
                     f.hydrate_batch, f.no_destage, f.relocated, names),
                    w
                );
                // The echo means the same.
                let e = echo(&f);
                let toks: Vec<&str> = e.split_whitespace().collect();
                prop_assert_eq!(args::parse_features(&toks), Ok(f), "echo {:?}", e);
            }
            (Err(e), None) => prop_assert!(!e.msg().to_bytes().is_empty()),
            (g, w) => prop_assert!(false, "{:?}: parser {:?}, reference {:?}", a, g, w),
        }
    }

    #[test]
    fn fuzz_valid_features_parse(args in valid_features()) {
        let a = strs(&args);
        let f = args::parse_features(&a);
        prop_assert!(f.is_ok(), "{:?} refused: {:?}", a, f);
        prop_assert_eq!(echo(&f.unwrap()), a.join(" "));
    }

    #[test]
    fn fuzz_view_mode(s in prop_oneof![Just("ro".to_string()), Just("rw".to_string()), Just("mirror".to_string()), "\\PC{0,8}", "[a-z]{1,7}"]) {
        match args::parse_view_mode(&s) {
            Ok(m) => prop_assert_eq!(m.name(), s.as_str()),
            Err(e) => {
                prop_assert_eq!(e, ArgError::ViewMode);
                prop_assert!(!["ro", "rw", "mirror"].contains(&s.as_str()));
            }
        }
    }

    #[test]
    fn fuzz_messages(words in message_words()) {
        let w = strs(&words);
        let want = match w.as_slice() {
            ["snapshot"] => Some(Message::Snapshot),
            ["drop"] => Some(Message::Drop),
            ["drain"] => Some(Message::Drain),
            ["hydrate", "on"] => Some(Message::Hydrate(true)),
            ["hydrate", "off"] => Some(Message::Hydrate(false)),
            ["changed", rest @ ..] => changed_model(rest),
            _ => None,
        };
        match args::parse_message(&w) {
            Ok(m) => {
                prop_assert_eq!(Some(m), want);
                let words: Vec<&str> = match m {
                    Message::Snapshot => vec!["snapshot"],
                    Message::Drop => vec!["drop"],
                    Message::Drain => vec!["drain"],
                    Message::Hydrate(on) => vec!["hydrate", if on { "on" } else { "off" }],
                    Message::Changed { .. } => w.clone(),
                };
                prop_assert_eq!(args::parse_message(&words), Ok(m));
            }
            Err(_) => prop_assert_eq!(want, None, "{:?} refused", w),
        }
    }

    #[test]
    fn fuzz_superblock_decode(b in sb_bytes()) {
        if let Ok(sb) = Superblock::decode(&b) {
            prop_assert!(sb.geometry.validate(sb.prod_sectors, sb.chunk_sectors).is_ok());
            prop_assert!(sb.tail_pos < sb.geometry.ring_sectors);
            let again = Superblock::decode(&encode_sb(&sb));
            prop_assert_eq!(again, Ok(sb));
        }
        let half = b.len() / 2;
        let _ = format::pick_superblock(&b[..half], &b[half..]);
    }

    #[test]
    fn fuzz_superblock_round_trip_and_flips(
        sb in superblock(),
        other in superblock(),
        flip in (0usize..format::SB_SLOT_BYTES, 1u8..=255),
        which in 0u8..4,
    ) {
        let b = encode_sb(&sb);
        prop_assert_eq!(Superblock::decode(&b), Ok(sb));
        let mut bad = b.clone();
        bad[flip.0] ^= flip.1;
        prop_assert!(Superblock::decode(&bad).is_err(), "flip at {} accepted", flip.0);
        // Picking: the valid slot with the higher generation (slot 0 on a tie).
        let o = encode_sb(&other);
        let (s0, s1): (&[u8], &[u8]) = match which {
            0 => (&b, &o),
            1 => (&bad, &o),
            2 => (&b, &bad),
            _ => (&bad, &bad),
        };
        let got = format::pick_superblock(s0, s1);
        let want = match which {
            0 if other.generation > sb.generation => Some((other, 1)),
            0 | 2 => Some((sb, 0)),
            1 => Some((other, 1)),
            _ => None,
        };
        prop_assert_eq!(got.ok(), want);
    }

    #[test]
    fn fuzz_descriptor_decode(
        b in prop::collection::vec(any::<u8>(), 0..130),
        ring in prop_oneof![Just(0u64), Just(u64::MAX), 1u64..1_000_000],
        d in (any::<u32>(), any::<u64>(), any::<u64>(), 0u64..2_000_000, any::<u32>(), any::<u32>()),
        flip in (0usize..format::DESC_BYTES, 1u8..=255),
    ) {
        if let Ok(x) = Descriptor::decode(&b, ring) {
            prop_assert!(x.nr_sectors > 0);
            prop_assert!(x.ring_pos.checked_add(u64::from(x.nr_sectors)).is_some_and(|e| e <= ring));
            let mut e = [0u8; format::DESC_BYTES];
            x.encode(&mut e);
            prop_assert_eq!(Descriptor::decode(&e, ring), Ok(x));
        }
        let x = Descriptor { flags: d.0, seq: d.1, sector: d.2, ring_pos: d.3, nr_sectors: d.4, data_crc: d.5 };
        let mut e = [0u8; format::DESC_BYTES];
        x.encode(&mut e);
        let fits = x.nr_sectors > 0 && x.ring_pos + u64::from(x.nr_sectors) <= ring;
        prop_assert_eq!(Descriptor::decode(&e, ring).ok(), fits.then_some(x));
        e[flip.0] ^= flip.1;
        prop_assert!(Descriptor::decode(&e, ring).is_err(), "flip at {} accepted", flip.0);
    }

    #[test]
    fn fuzz_replay_arbitrary_records(
        (mut recs, tail_seq, tail_pos, ring, dc) in prop_oneof![
            (
                prop::collection::vec(record_info(), 0..24),
                prop_oneof![0u64..40, any::<u64>()],
                0u64..300,
                prop_oneof![0u64..300, any::<u64>()],
                prop_oneof![0u32..40, any::<u32>()],
            ),
            journal_records(),
        ],
    ) {
        let live_in = recs.iter().filter(|r| r.seq.checked_sub(tail_seq).is_some_and(|d| d < u64::from(dc))).count();
        let Ok(p) = replay::plan(&mut recs, tail_seq, tail_pos, ring, dc) else {
            return Ok(());
        };
        prop_assert_eq!(p.count, live_in);
        let live = &recs[..p.count];
        let mut at = 0u64;
        for (i, r) in live.iter().enumerate() {
            prop_assert!(r.seq >= tail_seq && r.seq - tail_seq < u64::from(dc));
            if i > 0 {
                prop_assert!(live[i - 1].seq < r.seq);
            }
            prop_assert!(r.nr_sectors > 0 && u64::from(r.nr_sectors) <= r.ring_len);
            prop_assert!(r.ring_pos + r.ring_len <= ring);
            let off = (r.ring_pos + ring - tail_pos) % ring;
            prop_assert!(off >= at, "record {} overlaps its predecessor", r.seq);
            at = off + r.ring_len;
        }
        prop_assert_eq!(p.used, at);
        prop_assert!(p.used <= ring);
        prop_assert_eq!(p.next_seq, live.last().map_or(tail_seq, |r| r.seq + 1));
        prop_assert!(p.space().is_ok(), "accepted plan without accounting: {:?}", p);
        let before = recs.clone();
        prop_assert_eq!(replay::plan(&mut recs, tail_seq, tail_pos, ring, dc), Ok(p));
        prop_assert_eq!(&recs[..p.count], &before[..p.count]);
    }

    #[test]
    fn fuzz_replay_after_crash(
        (ring, dc, start) in (16u64..160, 1u32..24).prop_flat_map(|(r, d)| (Just(r), Just(d), 0..r)),
        prod in 1u64..200,
        ops in ops(200),
        tears in prop::collection::vec(tear(), 0..4),
        ordered in any::<bool>(),
    ) {
        let ops: Vec<Op> = ops.into_iter().map(|o| match o {
            Op::Write { sector, nr } => {
                let s = sector % prod;
                Op::Write { sector: s, nr: nr.min(prod - s) }
            }
            r => r,
        }).collect();
        let c = run_writer(ring, dc, start, prod, &ops, &tears, ordered);
        let mut infos = c.journal.read_back(c.tail_seq, c.prod).map_err(TestCaseError::fail)?;
        let p = replay::plan(&mut infos, c.tail_seq, c.tail_pos, ring, dc);
        prop_assert!(p.is_ok(), "a writer's journal refused: {:?} {:?}", p, c);
        let p = p.unwrap();
        let got: Vec<Written> = infos[..p.count].iter().map(|r| Written {
            seq: r.seq, sector: r.sector, nr: u64::from(r.nr_sectors), pos: r.ring_pos,
        }).collect();
        // Every acknowledged live record, then only whole in-flight ones.
        for w in &c.acked {
            prop_assert!(got.contains(w), "acknowledged record {:?} lost", w);
        }
        for w in &got {
            let ok = c.acked.contains(w) || c.inflight.iter().any(|(f, whole)| f == w && *whole);
            prop_assert!(ok, "record {:?} was never written whole", w);
        }
        // The recovered content, through the real insert, is what the
        // writer's records give over the destaged state.
        let mut t = MapTables::default();
        for r in &infos[..p.count] {
            let x = Extent { start: r.sector, len: u64::from(r.nr_sectors), seq: r.seq, ring_pos: r.ring_pos };
            t.write(x, Epoch::NONE, 8);
        }
        t.check_refs()?;
        let mut content = apply(&c.destaged);
        for (x, (seq, _)) in t.sectors() {
            content.insert(x, seq);
        }
        let mut all = c.destaged.clone();
        all.extend(&got);
        prop_assert_eq!(content, apply(&all));
        // The accounting continues after every recovered record.
        prop_assert_eq!(p.next_seq, got.last().map_or(c.tail_seq, |w| w.seq + 1));
        let js = p.space().unwrap();
        prop_assert_eq!(js.pending(), p.next_seq - c.tail_seq);
        for w in &got {
            let off = (w.pos + ring - c.tail_pos) % ring;
            prop_assert!(off + w.nr <= p.used, "record {:?} outside the live region", w);
        }
    }

    #[test]
    fn fuzz_replay_corrupt_journal(
        (ring, dc, start) in (16u64..120, 1u32..16).prop_flat_map(|(r, d)| (Just(r), Just(d), 0..r)),
        ops in ops(100),
        flips in prop::collection::vec((any::<bool>(), any::<usize>(), 1u8..=255), 1..12),
    ) {
        // Version-1 records: their data CRC is what finds flipped data bits.
        let mut c = run_writer(ring, dc, start, 100, &ops, &[], false);
        for (desc, at, v) in flips {
            if desc {
                let n = c.journal.slots.len() * format::DESC_BYTES;
                let i = at % n;
                c.journal.slots[i / format::DESC_BYTES][i % format::DESC_BYTES] ^= v;
            } else {
                let n = c.journal.ring.len();
                c.journal.ring[at % n] ^= v;
            }
        }
        let Ok(mut infos) = c.journal.read_back(c.tail_seq, c.prod) else {
            return Ok(());
        };
        if let Ok(p) = replay::plan(&mut infos, c.tail_seq, c.tail_pos, ring, dc) {
            for r in &infos[..p.count] {
                let w = Written { seq: r.seq, sector: r.sector, nr: u64::from(r.nr_sectors), pos: r.ring_pos };
                prop_assert!(c.acked.contains(&w), "record {:?} nobody wrote", w);
                let data = c.journal.data(w.pos, w.nr);
                prop_assert!(data.iter().enumerate().all(|(i, b)| *b == pattern(w.seq, i)), "record {} data differs", w.seq);
            }
        }
    }

    #[test]
    fn fuzz_insert_history(
        steps in prop::collection::vec(
            (0u8..EH_SECTORS as u8, any::<u8>(), prop::option::weighted(0.25, any::<u8>())),
            1..=EH_WRITES,
        ),
        snap in any::<prop::sample::Index>(),
        preserved in any::<u64>(),
        chunk_log in 0u32..=5,
        snapshot in any::<bool>(),
    ) {
        let chunk = 1u32 << chunk_log;
        let chunks = EH_SECTORS as u64 / u64::from(chunk);
        let steps: Vec<EhStep> = steps.iter().map(|&(s, l, p)| EhStep {
            start: s,
            len: 1 + l % (EH_SECTORS as u8 - s),
            preserve: p.map(|c| (u64::from(c) % chunks) as u8),
        }).collect();
        let snap_at = if snapshot { 1 + snap.index(steps.len()) } else { 0 };
        let r = insert_history(&steps, snap_at, preserved & preserved.rotate_left(7), chunk);
        prop_assert_eq!(r, Ok(()));
    }

    #[test]
    fn fuzz_insert_large_coordinates(
        base in prop_oneof![Just(0u64), any::<u64>().prop_map(|b| b >> 2)],
        writes in prop::collection::vec((0u64..4096, 1u64..600, any::<u32>()), 1..60),
        snap_at in 0usize..60,
        chunk_log in 3u32..=20,
        preserve in prop::collection::btree_set(0u64..64, 0..8),
    ) {
        let chunk = 1u32 << chunk_log;
        let mut t = MapTables::default();
        let mut cur: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut snap_model = BTreeMap::new();
        let snap_seq = snap_at as u64 + 1;
        for (i, &(off, len, ring)) in writes.iter().enumerate() {
            let seq = i as u64 + 1;
            if seq == snap_seq {
                snap_model = cur.clone();
                t.preserved = preserve.iter().map(|c| base / u64::from(chunk) + c).collect();
            }
            let epoch = Epoch { active: seq >= snap_seq, snap_seq };
            let x = Extent { start: base + off, len, seq, ring_pos: u64::from(ring) };
            t.write(x, epoch, chunk);
            for s in x.start..x.end() {
                cur.insert(s, (seq, x.ring_pos + (s - x.start)));
            }
            prop_assert_eq!(t.sectors(), cur.clone());
            t.check_refs()?;
        }
        if writes.len() as u64 >= snap_seq {
            // Snapshot content of unpreserved chunks: pre-snapshot table
            // data, else the kept pieces.
            let mut kept = BTreeMap::new();
            for e in t.snap.values() {
                prop_assert!(e.seq < snap_seq);
                for s in e.start..e.end() {
                    prop_assert!(kept.insert(s, (e.seq, e.ring_pos + (s - e.start))).is_none(), "kept pieces overlap");
                }
            }
            let table = t.sectors();
            for s in base..base + 4096 + 600 {
                if t.preserved.contains(&(s / u64::from(chunk))) {
                    continue;
                }
                let view = table.get(&s).filter(|v| v.0 < snap_seq).or(kept.get(&s));
                prop_assert_eq!(view, snap_model.get(&s), "snapshot sector {}", s);
            }
        }
    }
}
