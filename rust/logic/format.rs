//! On-pmem layout of the jsnap journal device, and its commit protocol.
//!
//! Everything is little-endian and encoded field by field at fixed offsets;
//! nothing is transmuted. Sizes are in bytes unless a name says `sectors`
//! (512 bytes).
//!
//! # Device layout
//!
//! ```text
//! 0            superblock slot 0 (4096)
//! 4096         superblock slot 1 (4096)
//! map_offset   validity map, one bit per chunk (map_bytes, 4096-aligned)
//! cbt_offset   changed-block maps: two slots of map_bytes (version 3; 0: none)
//! desc_offset  descriptor table, desc_count x 64-byte record descriptors
//! ring_offset  data ring, ring_sectors x 512 bytes
//! ```
//!
//! The regions appear in this order, are 4096-aligned and lie inside
//! `dev_bytes`; [`plan_geometry`] computes them and [`Geometry::validate`]
//! checks them on load.
//!
//! # Superblock slot (4096 bytes)
//!
//! | off | size | field |
//! |-----|------|-------|
//! | 0   | 8  | magic `"JSNAPSB1"` |
//! | 8   | 4  | version ([`SB_VERSION`]; 1 and 2 are still read) |
//! | 12  | 4  | header size (192; 164 in version 2, 160 before `store_devt` existed) |
//! | 16  | 8  | generation |
//! | 24  | 16 | uuid of this journal |
//! | 40  | 8  | prod_sectors (length of the jsnap target) |
//! | 48  | 4  | chunk_sectors |
//! | 52  | 4  | snap_state (0 none, 1 active, 2 invalid) |
//! | 56  | 8  | store_sectors (0: no store) |
//! | 64  | 8  | dev_bytes |
//! | 72  | 8  | map_offset |
//! | 80  | 8  | map_bytes |
//! | 88  | 8  | desc_offset |
//! | 96  | 4  | desc_count |
//! | 100 | 4  | hydrate (0/1) |
//! | 104 | 8  | ring_offset |
//! | 112 | 8  | ring_sectors |
//! | 120 | 8  | tail_seq: oldest record not yet retired |
//! | 128 | 8  | tail_pos: ring tail, in sectors (see below) |
//! | 136 | 8  | snap_seq: records with `seq < snap_seq` predate the snapshot |
//! | 144 | 8  | snap_id |
//! | 152 | 4  | crc32c of the whole 4096-byte slot with this field zeroed |
//! | 156 | 4  | prod_devt: device number of the production device (identity check) |
//! | 160 | 4  | store_devt: device number of the store while a snapshot exists (0: not recorded) |
//! | 164 | 8  | cbt_offset: the changed-block maps (0: none, journals formatted before version 3) |
//! | 172 | 8  | cbt_cur_seq: records with `seq >= cbt_cur_seq` are in the current interval |
//! | 180 | 8  | cbt_prev_seq: first seq of the previous interval |
//! | 188 | 4  | cbt_flags: bit 0 slot of the current map, bit 1 previous interval known (`cbt.rs`) |
//! | 192 | 3904 | zero |
//!
//! `tail_pos` is where the live part of the ring begins: the start of
//! `tail_seq`'s reservation, including the end-of-ring area it skipped (see
//! `ring.rs`); when nothing is live it is the position of the next record.
//!
//! # Record descriptor (64 bytes, at `desc_offset + (seq % desc_count) * 64`)
//!
//! | off | size | field |
//! |-----|------|-------|
//! | 0   | 4  | magic `0x4353444A` (`"JDSC"`) |
//! | 4   | 4  | flags: bit 0 [`DESC_ORDERED`]; other bits carried through |
//! | 8   | 8  | seq |
//! | 16  | 8  | sector: first target sector written (relative to the target start) |
//! | 24  | 8  | ring_pos: ring sector where the data starts (never wraps) |
//! | 32  | 4  | nr_sectors |
//! | 36  | 4  | data_crc: crc32c of the `nr_sectors * 512` data bytes; 0 when ordered |
//! | 40  | 20 | zero |
//! | 60  | 4  | desc_crc: crc32c of bytes 0..60 |
//!
//! # Commit protocol
//!
//! "Persist" means: stores done with cache-bypassing copies or followed by a
//! cache flush of the range, then a store fence.
//!
//! 1. **Write.** Reserve ring space and the next seq (`ring.rs`) and insert
//!    the extent into the changes table; copy the data to the ring and
//!    persist it, then write the descriptor into its slot with
//!    [`DESC_ORDERED`] and persist it, then complete the bio. The fence
//!    between the two is what makes the record whole: a descriptor that
//!    reaches pmem implies its data did, and a torn descriptor fails
//!    `desc_crc`, so a record recovery accepts was persisted whole and one it
//!    ignores was never acknowledged. Version 1 journals wrote data and
//!    descriptor under one fence and checked the data with `data_crc`;
//!    recovery still does for descriptors without the flag.
//! 2. **Superblock update.** Build the new state in memory with
//!    `generation + 1`, encode it into the slot that does *not* hold the
//!    current superblock, persist. [`pick_superblock`] takes the valid slot
//!    with the highest generation, so a torn update leaves the previous state.
//! 3. **Retire.** After records up to `s` are destaged, flush production and
//!    the store, commit a superblock with `tail_seq = s + 1` and the matching
//!    `tail_pos`, and only then hand their ring space and descriptor slots
//!    back to the allocator.
//! 4. **Snapshot.** The map is all zero while no snapshot exists. `snapshot`
//!    commits `snap_state = 1, snap_seq = next_seq, snap_id + 1`. Preserving a
//!    chunk: copy it to the store, flush the store, set and persist its
//!    validity word, and only then overwrite production. `drop` commits
//!    `snap_state = 0`, then zeroes the map.
//! 5. **Changed blocks** (`cbt.rs`). The write path marks a write's chunks
//!    in the in-core map of the current interval when it takes the write's
//!    seq; the dirty pages of both maps are persisted before a commit moves
//!    `tail_seq` (retire), and replay marks the live records again.
//!    `snapshot` commits `cbt_flags` without the previous interval, zeroes
//!    that slot and persists, then commits (with the snapshot itself) the
//!    intervals of `cbt::Intervals::after_snapshot`.
//! 6. **Format.** Zero both slots and persist, zero the maps and the
//!    descriptor table and persist, then write slot 0 with generation 1 and
//!    persist. A crash in between leaves an unformatted journal, never a mix.
//!
//! Recovery: [`pick_superblock`], decode every descriptor slot and verify
//! its data ([`Descriptor::decode`], [`Descriptor::verify_data`]), then plan
//! with `replay::plan`.

use super::cbt::Intervals;
use super::crc::crc32c;

/// Bytes in a sector.
pub const SECTOR_BYTES: u64 = 512;
/// Alignment of every region of the journal device.
pub const ALIGN: u64 = 4096;
/// Size of one superblock slot; slot `i` is at byte `i * SB_SLOT_BYTES`.
pub const SB_SLOT_BYTES: usize = 4096;
/// Bytes of the slot that carry fields; the rest is zero.
pub const SB_HEADER_BYTES: usize = 192;
/// Header size of version 2 superblocks (before changed-block tracking).
pub const SB_HEADER_BYTES_V2: usize = 164;
/// Header size of journals written before `store_devt` (read as 0).
pub const SB_HEADER_BYTES_V1_0: usize = 160;
/// Superblock magic.
pub const SB_MAGIC: [u8; 8] = *b"JSNAPSB1";
/// Superblock format version written: 2 adds [`DESC_ORDERED`] records,
/// which a version 1 reader would drop as torn (their `data_crc` is 0), so
/// a version 1 journal is committed as version 2 before its first write.
pub const SB_VERSION: u32 = 3;
/// The oldest version read.
pub const SB_VERSION_V1: u32 = 1;
/// Size of a record descriptor.
pub const DESC_BYTES: usize = 64;
/// Descriptor magic, `"JDSC"` in little-endian.
pub const DESC_MAGIC: u32 = 0x4353_444A;
/// Smallest descriptor table [`plan_geometry`] creates.
pub const MIN_DESC_COUNT: u32 = 64;
/// Smallest data ring [`plan_geometry`] accepts, in bytes.
pub const MIN_RING_BYTES: u64 = 1 << 20;

const SB_CRC_OFF: usize = 152;
const DESC_CRC_OFF: usize = 60;

/// Why a superblock, descriptor or geometry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The superblock magic is all zero: the journal was never formatted.
    NotFormatted,
    /// The magic is neither ours nor zero.
    BadMagic,
    /// Unknown format version or header size.
    BadVersion,
    /// The checksum does not match the content.
    BadChecksum,
    /// Region offsets or sizes are inconsistent.
    BadGeometry,
    /// A state field (snapshot state, hydrate flag, tail position) is out of range.
    BadState,
    /// The device is too small for the metadata plus a 1 MiB ring.
    TooSmall,
    /// The buffer is shorter than the structure.
    Truncated,
    /// A descriptor slot that was never written (all-zero magic).
    Empty,
    /// A descriptor with `nr_sectors == 0`.
    BadLength,
    /// A descriptor whose data does not lie inside the ring.
    OutOfRing,
}

impl Error {
    /// Static human-readable description, for `ti->error` and the log.
    pub fn msg(self) -> &'static core::ffi::CStr {
        match self {
            Error::NotFormatted => c"Journal is not formatted",
            Error::BadMagic => c"Journal superblock has a bad magic",
            Error::BadVersion => c"Journal superblock has an unsupported version",
            Error::BadChecksum => c"Journal metadata checksum mismatch",
            Error::BadGeometry => c"Journal geometry is invalid",
            Error::BadState => c"Journal superblock state is invalid",
            Error::TooSmall => c"Journal device is too small",
            Error::Truncated => c"Journal metadata buffer is truncated",
            Error::Empty => c"Journal descriptor slot is empty",
            Error::BadLength => c"Journal descriptor has zero length",
            Error::OutOfRing => c"Journal descriptor points outside the ring",
        }
    }
}

/// Copies `W` bytes at `off`; zeroes if out of range (never for our constant offsets).
fn get<const W: usize>(b: &[u8], off: usize) -> [u8; W] {
    let mut a = [0u8; W];
    if let Some(s) = off.checked_add(W).and_then(|end| b.get(off..end)) {
        a.copy_from_slice(s);
    }
    a
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = off.checked_add(v.len()).and_then(|end| b.get_mut(off..end)) {
        d.copy_from_slice(v);
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(get(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(get(b, off))
}

fn is_aligned(x: u64) -> bool {
    x.is_multiple_of(ALIGN)
}

fn round_up(x: u64, to: u64) -> Option<u64> {
    x.checked_next_multiple_of(to)
}

/// Checks `chunk_sectors` (power of two, at least 8) and returns the number
/// of chunks of a `prod_sectors` target (at least one).
pub fn nr_chunks(prod_sectors: u64, chunk_sectors: u32) -> Result<u64, Error> {
    if prod_sectors == 0 || chunk_sectors < 8 || !chunk_sectors.is_power_of_two() {
        return Err(Error::BadGeometry);
    }
    Ok(prod_sectors.div_ceil(u64::from(chunk_sectors)))
}

/// Where the metadata regions and the ring sit on the journal device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes of the journal device in use.
    pub dev_bytes: u64,
    /// Byte offset of the validity map.
    pub map_offset: u64,
    /// Size of the validity map, and of each changed-block map.
    pub map_bytes: u64,
    /// Byte offset of the two changed-block maps (0: the journal has none).
    pub cbt_offset: u64,
    /// Byte offset of the descriptor table.
    pub desc_offset: u64,
    /// Number of 64-byte descriptor slots.
    pub desc_count: u32,
    /// Byte offset of the data ring.
    pub ring_offset: u64,
    /// Size of the data ring in sectors.
    pub ring_sectors: u64,
}

impl Geometry {
    /// Checks alignment, order, bounds and sizes for a target of
    /// `prod_sectors` with `chunk_sectors` chunks.
    pub fn validate(&self, prod_sectors: u64, chunk_sectors: u32) -> Result<(), Error> {
        let map_needed = nr_chunks(prod_sectors, chunk_sectors)?.div_ceil(8);
        let ok = (|| {
            let map_end = self.map_offset.checked_add(self.map_bytes)?;
            let cbt_end = match self.cbt_offset {
                0 => map_end,
                o => o.checked_add(self.map_bytes.checked_mul(2)?)?,
            };
            let desc_bytes = u64::from(self.desc_count).checked_mul(DESC_BYTES as u64)?;
            let desc_end = self.desc_offset.checked_add(desc_bytes)?;
            let ring_bytes = self.ring_sectors.checked_mul(SECTOR_BYTES)?;
            let ring_end = self.ring_offset.checked_add(ring_bytes)?;
            Some(
                is_aligned(self.map_offset)
                    && is_aligned(self.map_bytes)
                    && is_aligned(self.desc_offset)
                    && is_aligned(self.ring_offset)
                    && self.map_offset >= 2 * SB_SLOT_BYTES as u64
                    && self.map_bytes >= map_needed
                    && is_aligned(self.cbt_offset)
                    && (self.cbt_offset == 0 || self.cbt_offset >= map_end)
                    && map_end <= self.desc_offset
                    && cbt_end <= self.desc_offset
                    && self.desc_count > 0
                    && desc_end <= self.ring_offset
                    && self.ring_sectors > 0
                    && ring_end <= self.dev_bytes,
            )
        })();
        match ok {
            Some(true) => Ok(()),
            _ => Err(Error::BadGeometry),
        }
    }

    /// Byte offset of the descriptor slot that holds record `seq`.
    pub fn desc_slot_offset(&self, seq: u64) -> u64 {
        let slot = seq.checked_rem(u64::from(self.desc_count)).unwrap_or(0);
        self.desc_offset.saturating_add(slot * DESC_BYTES as u64)
    }

    /// Byte offset of changed-block map slot `slot` (0 or 1), if the
    /// journal has the maps.
    pub fn cbt_slot_offset(&self, slot: u8) -> Option<u64> {
        (self.cbt_offset != 0)
            .then(|| self.cbt_offset + u64::from(slot & 1) * self.map_bytes)
    }

    /// Byte offset of ring sector `pos`.
    pub fn ring_byte_offset(&self, pos: u64) -> u64 {
        self.ring_offset
            .saturating_add(pos.saturating_mul(SECTOR_BYTES))
    }
}

/// Lays out a journal device of `dev_bytes` for a target of `prod_sectors`
/// with `chunk_sectors` chunks.
///
/// The map starts at 8192 and holds one bit per chunk, rounded up to 4096
/// bytes; the two changed-block maps, of the same size, follow it. The
/// descriptor table follows, with one descriptor per 4 KiB of
/// ring (at least [`MIN_DESC_COUNT`]); the ring takes the rest, 4096-aligned.
pub fn plan_geometry(
    dev_bytes: u64,
    prod_sectors: u64,
    chunk_sectors: u32,
) -> Result<Geometry, Error> {
    let chunks = nr_chunks(prod_sectors, chunk_sectors)?;
    let map_offset = 2 * SB_SLOT_BYTES as u64;
    let map_bytes = round_up(chunks.div_ceil(8), ALIGN).ok_or(Error::TooSmall)?;
    let cbt_offset = map_offset.checked_add(map_bytes).ok_or(Error::TooSmall)?;
    let desc_offset = map_bytes
        .checked_mul(2)
        .and_then(|b| cbt_offset.checked_add(b))
        .ok_or(Error::TooSmall)?;
    let rest = dev_bytes.checked_sub(desc_offset).ok_or(Error::TooSmall)?;
    // Each 4 KiB of ring costs 4096 + 64 bytes; rounding up keeps at least
    // one descriptor per 4 KiB of what remains for the ring.
    let per = ALIGN + DESC_BYTES as u64;
    let desc_count =
        u32::try_from(rest.div_ceil(per).max(u64::from(MIN_DESC_COUNT))).unwrap_or(u32::MAX);
    let table_bytes =
        round_up(u64::from(desc_count) * DESC_BYTES as u64, ALIGN).ok_or(Error::TooSmall)?;
    let ring_offset = desc_offset
        .checked_add(table_bytes)
        .ok_or(Error::TooSmall)?;
    let ring_bytes = rest.checked_sub(table_bytes).ok_or(Error::TooSmall)? / ALIGN * ALIGN;
    if ring_bytes < MIN_RING_BYTES {
        return Err(Error::TooSmall);
    }
    Ok(Geometry {
        dev_bytes,
        map_offset,
        map_bytes,
        cbt_offset,
        desc_offset,
        desc_count,
        ring_offset,
        ring_sectors: ring_bytes / SECTOR_BYTES,
    })
}

/// State of the snapshot recorded in the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapState {
    /// No snapshot.
    None = 0,
    /// A snapshot exists and is intact.
    Active = 1,
    /// A snapshot exists but could not be preserved; reads of it fail.
    Invalid = 2,
}

impl SnapState {
    fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(SnapState::None),
            1 => Some(SnapState::Active),
            2 => Some(SnapState::Invalid),
            _ => None,
        }
    }
}

/// The decoded content of a superblock slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Incremented by every commit; the highest valid slot wins.
    pub generation: u64,
    /// Identity of this journal, chosen at format time.
    pub uuid: [u8; 16],
    /// Length of the jsnap target in sectors.
    pub prod_sectors: u64,
    /// Chunk size in sectors.
    pub chunk_sectors: u32,
    /// Size of the snapshot store in sectors; 0 when there is none.
    pub store_sectors: u64,
    /// Placement of the map, the descriptor table and the ring.
    pub geometry: Geometry,
    /// Oldest record not yet retired.
    pub tail_seq: u64,
    /// Ring position (sectors) where the live part of the ring begins.
    pub tail_pos: u64,
    /// Snapshot state.
    pub snap_state: SnapState,
    /// Records with `seq < snap_seq` were written before the snapshot.
    pub snap_seq: u64,
    /// Identifier of the current snapshot, incremented by each `snapshot`.
    pub snap_id: u64,
    /// Whether background hydration is switched on.
    pub hydrate: bool,
    /// Device number (`dev_t`) of the production device the journal belongs to.
    pub prod_devt: u32,
    /// Device number of the store the snapshot lives on (0: none recorded).
    pub store_devt: u32,
    /// The changed-block intervals (meaningful when the geometry has the
    /// maps).
    pub cbt: Intervals,
}

impl Superblock {
    /// Encodes into a full slot (the padding is zeroed, the checksum set).
    pub fn encode(&self, slot: &mut [u8; SB_SLOT_BYTES]) {
        let g = &self.geometry;
        slot.fill(0);
        put(slot, 0, &SB_MAGIC);
        put(slot, 8, &SB_VERSION.to_le_bytes());
        put(slot, 12, &(SB_HEADER_BYTES as u32).to_le_bytes());
        put(slot, 16, &self.generation.to_le_bytes());
        put(slot, 24, &self.uuid);
        put(slot, 40, &self.prod_sectors.to_le_bytes());
        put(slot, 48, &self.chunk_sectors.to_le_bytes());
        put(slot, 52, &(self.snap_state as u32).to_le_bytes());
        put(slot, 56, &self.store_sectors.to_le_bytes());
        put(slot, 64, &g.dev_bytes.to_le_bytes());
        put(slot, 72, &g.map_offset.to_le_bytes());
        put(slot, 80, &g.map_bytes.to_le_bytes());
        put(slot, 88, &g.desc_offset.to_le_bytes());
        put(slot, 96, &g.desc_count.to_le_bytes());
        put(slot, 100, &u32::from(self.hydrate).to_le_bytes());
        put(slot, 156, &self.prod_devt.to_le_bytes());
        put(slot, 160, &self.store_devt.to_le_bytes());
        put(slot, 104, &g.ring_offset.to_le_bytes());
        put(slot, 112, &g.ring_sectors.to_le_bytes());
        put(slot, 120, &self.tail_seq.to_le_bytes());
        put(slot, 128, &self.tail_pos.to_le_bytes());
        put(slot, 136, &self.snap_seq.to_le_bytes());
        put(slot, 144, &self.snap_id.to_le_bytes());
        put(slot, 164, &g.cbt_offset.to_le_bytes());
        put(slot, 172, &self.cbt.cur_seq.to_le_bytes());
        put(slot, 180, &self.cbt.prev_seq.to_le_bytes());
        put(slot, 188, &self.cbt.flags().to_le_bytes());
        let crc = crc32c(0, slot);
        put(slot, SB_CRC_OFF, &crc.to_le_bytes());
    }

    /// Decodes and verifies a slot (at least [`SB_SLOT_BYTES`] long): magic,
    /// version, checksum, geometry and state fields.
    pub fn decode(slot: &[u8]) -> Result<Self, Error> {
        let slot = slot.get(..SB_SLOT_BYTES).ok_or(Error::Truncated)?;
        let magic: [u8; 8] = get(slot, 0);
        if magic == [0; 8] {
            return Err(Error::NotFormatted);
        }
        if magic != SB_MAGIC {
            return Err(Error::BadMagic);
        }
        let header = u32_at(slot, 12) as usize;
        let version = u32_at(slot, 8);
        // Version 3 has the 192-byte header; 1 and 2 the 160- or 164-byte one.
        let header_ok = if version == SB_VERSION {
            header == SB_HEADER_BYTES
        } else {
            header == SB_HEADER_BYTES_V2 || header == SB_HEADER_BYTES_V1_0
        };
        if !(SB_VERSION_V1..=SB_VERSION).contains(&version) || !header_ok {
            return Err(Error::BadVersion);
        }
        let crc = crc32c(0, slot.get(..SB_CRC_OFF).unwrap_or_default());
        let crc = crc32c(crc, &[0; 4]);
        let crc = crc32c(crc, slot.get(SB_CRC_OFF + 4..).unwrap_or_default());
        if crc != u32_at(slot, SB_CRC_OFF) {
            return Err(Error::BadChecksum);
        }
        let v3 = header == SB_HEADER_BYTES;
        let cbt = if v3 {
            Intervals::from_fields(u64_at(slot, 172), u64_at(slot, 180), u32_at(slot, 188))
                .ok_or(Error::BadState)?
        } else {
            Intervals::fresh(0)
        };
        let sb = Superblock {
            generation: u64_at(slot, 16),
            uuid: get(slot, 24),
            prod_sectors: u64_at(slot, 40),
            chunk_sectors: u32_at(slot, 48),
            snap_state: SnapState::from_u32(u32_at(slot, 52)).ok_or(Error::BadState)?,
            store_sectors: u64_at(slot, 56),
            geometry: Geometry {
                dev_bytes: u64_at(slot, 64),
                map_offset: u64_at(slot, 72),
                map_bytes: u64_at(slot, 80),
                cbt_offset: if v3 { u64_at(slot, 164) } else { 0 },
                desc_offset: u64_at(slot, 88),
                desc_count: u32_at(slot, 96),
                ring_offset: u64_at(slot, 104),
                ring_sectors: u64_at(slot, 112),
            },
            hydrate: match u32_at(slot, 100) {
                0 => false,
                1 => true,
                _ => return Err(Error::BadState),
            },
            tail_seq: u64_at(slot, 120),
            tail_pos: u64_at(slot, 128),
            snap_seq: u64_at(slot, 136),
            snap_id: u64_at(slot, 144),
            prod_devt: u32_at(slot, 156),
            store_devt: if header == SB_HEADER_BYTES_V1_0 { 0 } else { u32_at(slot, 160) },
            cbt,
        };
        sb.geometry.validate(sb.prod_sectors, sb.chunk_sectors)?;
        if sb.tail_pos >= sb.geometry.ring_sectors {
            return Err(Error::BadState);
        }
        Ok(sb)
    }
}

/// Picks the current superblock: the valid slot with the highest generation
/// (slot 0 on a tie). Returns it with its slot index; the next commit goes
/// to the other slot. When neither slot is valid, the error is
/// [`Error::NotFormatted`] only if both are unformatted, otherwise the first
/// other error (slot 0's before slot 1's).
pub fn pick_superblock(slot0: &[u8], slot1: &[u8]) -> Result<(Superblock, usize), Error> {
    match (Superblock::decode(slot0), Superblock::decode(slot1)) {
        (Ok(a), Ok(b)) if b.generation > a.generation => Ok((b, 1)),
        (Ok(a), _) => Ok((a, 0)),
        (Err(_), Ok(b)) => Ok((b, 1)),
        (Err(Error::NotFormatted), Err(e)) | (Err(e), Err(_)) => Err(e),
    }
}

/// The format version of a superblock slot that [`Superblock::decode`]
/// accepted.
pub fn slot_version(slot: &[u8]) -> u32 {
    u32_at(slot, 8)
}

/// Descriptor flag: the data was persisted (copied with cache-bypassing
/// stores and fenced) before the descriptor was written, so the descriptor
/// being valid proves the data whole; `data_crc` is 0 and not checked.
pub const DESC_ORDERED: u32 = 1;

/// A decoded record descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Flags: [`DESC_ORDERED`]; other bits are carried through.
    pub flags: u32,
    /// Journal sequence number.
    pub seq: u64,
    /// First target sector written.
    pub sector: u64,
    /// Ring sector where the data starts.
    pub ring_pos: u64,
    /// Length of the write in sectors (> 0).
    pub nr_sectors: u32,
    /// crc32c of the data (0 and unchecked with [`DESC_ORDERED`]).
    pub data_crc: u32,
}

impl Descriptor {
    /// Encodes into a descriptor slot, computing `desc_crc`.
    pub fn encode(&self, out: &mut [u8; DESC_BYTES]) {
        out.fill(0);
        put(out, 0, &DESC_MAGIC.to_le_bytes());
        put(out, 4, &self.flags.to_le_bytes());
        put(out, 8, &self.seq.to_le_bytes());
        put(out, 16, &self.sector.to_le_bytes());
        put(out, 24, &self.ring_pos.to_le_bytes());
        put(out, 32, &self.nr_sectors.to_le_bytes());
        put(out, 36, &self.data_crc.to_le_bytes());
        let crc = crc32c(0, out.get(..DESC_CRC_OFF).unwrap_or_default());
        put(out, DESC_CRC_OFF, &crc.to_le_bytes());
    }

    /// Decodes and verifies a descriptor slot (at least [`DESC_BYTES`] long)
    /// of a ring of `ring_sectors`: magic, checksum, non-zero length, and
    /// data inside the ring.
    pub fn decode(bytes: &[u8], ring_sectors: u64) -> Result<Self, Error> {
        let bytes = bytes.get(..DESC_BYTES).ok_or(Error::Truncated)?;
        match u32_at(bytes, 0) {
            0 => return Err(Error::Empty),
            DESC_MAGIC => {}
            _ => return Err(Error::BadMagic),
        }
        if crc32c(0, bytes.get(..DESC_CRC_OFF).unwrap_or_default()) != u32_at(bytes, DESC_CRC_OFF) {
            return Err(Error::BadChecksum);
        }
        let d = Descriptor {
            flags: u32_at(bytes, 4),
            seq: u64_at(bytes, 8),
            sector: u64_at(bytes, 16),
            ring_pos: u64_at(bytes, 24),
            nr_sectors: u32_at(bytes, 32),
            data_crc: u32_at(bytes, 36),
        };
        if d.nr_sectors == 0 {
            return Err(Error::BadLength);
        }
        match d.ring_pos.checked_add(u64::from(d.nr_sectors)) {
            Some(end) if end <= ring_sectors => Ok(d),
            _ => Err(Error::OutOfRing),
        }
    }

    /// Whether the record's data must be checked against `data_crc`.
    pub fn data_checked(&self) -> bool {
        self.flags & DESC_ORDERED == 0
    }

    /// Whether `data` is exactly this record's data: right length and,
    /// unless the record is ordered, crc.
    pub fn verify_data(&self, data: &[u8]) -> bool {
        data.len() as u64 == u64::from(self.nr_sectors) * SECTOR_BYTES
            && (!self.data_checked() || crc32c(0, data) == self.data_crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    const PROD: u64 = 1 << 21; // 1 GiB
    const DEV: u64 = 16 << 20;

    fn sample() -> Superblock {
        Superblock {
            generation: 7,
            uuid: *b"0123456789abcdef",
            prod_sectors: PROD,
            chunk_sectors: 8,
            store_sectors: PROD,
            geometry: plan_geometry(DEV, PROD, 8).unwrap(),
            tail_seq: 1000,
            tail_pos: 24,
            snap_state: SnapState::Active,
            snap_seq: 990,
            snap_id: 3,
            hydrate: true,
            prod_devt: 0x0103_0005,
            store_devt: 0x0103_0007,
            cbt: Intervals::fresh(1).after_snapshot(990),
        }
    }

    fn encoded(sb: &Superblock) -> Box<[u8; SB_SLOT_BYTES]> {
        let mut slot = Box::new([0u8; SB_SLOT_BYTES]);
        sb.encode(&mut slot);
        slot
    }

    /// Recomputes the checksum after a test patched a field.
    fn reseal(slot: &mut [u8; SB_SLOT_BYTES]) {
        slot[SB_CRC_OFF..SB_CRC_OFF + 4].fill(0);
        let crc = crc32c(0, slot);
        slot[SB_CRC_OFF..SB_CRC_OFF + 4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn plan_geometry_layout() {
        let g = plan_geometry(DEV, PROD, 8).unwrap();
        assert_eq!(g.map_offset, 8192);
        assert_eq!(g.map_bytes, 32768); // 262144 chunks / 8
        assert_eq!(g.cbt_offset, 8192 + 32768);
        assert_eq!(g.cbt_slot_offset(0), Some(8192 + 32768));
        assert_eq!(g.cbt_slot_offset(1), Some(8192 + 2 * 32768));
        assert_eq!(g.desc_offset, 8192 + 3 * 32768);
        let rest = DEV - g.desc_offset;
        assert_eq!(u64::from(g.desc_count), rest.div_ceil(4160));
        assert_eq!(
            g.ring_offset,
            g.desc_offset + (u64::from(g.desc_count) * 64).next_multiple_of(4096)
        );
        assert_eq!(g.ring_sectors * 512, (DEV - g.ring_offset) / 4096 * 4096);
        assert!(u64::from(g.desc_count) >= g.ring_sectors / 8);
        g.validate(PROD, 8).unwrap();
        // Odd sizes: a partial chunk and an unaligned device end.
        let g = plan_geometry(DEV + 1234, 1001, 16).unwrap();
        assert_eq!(g.map_bytes, 4096);
        assert_eq!(g.desc_count, 4029);
        assert_eq!(g.ring_sectors % 8, 0);
        assert!(u64::from(g.desc_count) >= g.ring_sectors / 8);
        g.validate(1001, 16).unwrap();
    }

    #[test]
    fn plan_geometry_limits() {
        // Smallest device that still gets a 1 MiB ring with 64+ descriptors.
        let min = 8192 + 3 * 4096 + 16384 + (1 << 20);
        let g = plan_geometry(min, 8, 8).unwrap();
        assert_eq!(g.ring_sectors, 2048);
        assert_eq!(g.desc_count, 256);
        assert_eq!(plan_geometry(min - 4096, 8, 8), Err(Error::TooSmall));
        assert_eq!(plan_geometry(4096, 8, 8), Err(Error::TooSmall));
        assert_eq!(plan_geometry(DEV, u64::MAX, 8), Err(Error::TooSmall));
        let huge = plan_geometry(u64::MAX, u64::MAX, 8).unwrap();
        assert_eq!(huge.desc_count, u32::MAX);
        huge.validate(u64::MAX, 8).unwrap();
        assert_eq!(plan_geometry(DEV, PROD, 4), Err(Error::BadGeometry));
        assert_eq!(plan_geometry(DEV, PROD, 24), Err(Error::BadGeometry));
        assert_eq!(plan_geometry(DEV, 0, 8), Err(Error::BadGeometry));
        let g = plan_geometry(1 << 40, PROD, 8).unwrap();
        assert_eq!(
            g.desc_count,
            ((1u64 << 40) - g.desc_offset).div_ceil(4160) as u32
        );
        g.validate(PROD, 8).unwrap();
    }

    #[test]
    fn geometry_validation_rejects_each_violation() {
        let good = plan_geometry(DEV, PROD, 8).unwrap();
        let bad: [fn(&mut Geometry); 16] = [
            |g| g.cbt_offset -= 4096,
            |g| g.cbt_offset += 8,
            |g| g.desc_offset -= 4096,
            |g| g.map_offset = 4096,
            |g| g.map_offset += 512,
            |g| g.map_bytes -= 4096,
            |g| g.map_bytes += 8,
            |g| g.desc_offset -= 4096,
            |g| g.desc_offset += 8,
            |g| g.desc_count = 0,
            |g| g.desc_count = u32::MAX,
            |g| g.ring_offset -= 4096,
            |g| g.ring_sectors = 0,
            |g| g.ring_sectors += 1,
            |g| g.ring_sectors = u64::MAX,
            |g| g.dev_bytes -= 1,
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut g = good;
            f(&mut g);
            assert_eq!(g.validate(PROD, 8), Err(Error::BadGeometry), "case {i}");
        }
        assert_eq!(good.validate(PROD * 2, 8), Err(Error::BadGeometry));
        assert_eq!(good.validate(PROD, 12), Err(Error::BadGeometry));
        assert_eq!(good.validate(0, 8), Err(Error::BadGeometry));
        assert_eq!(
            good.desc_slot_offset(good.desc_count as u64 + 3),
            good.desc_offset + 192
        );
        assert_eq!(good.ring_byte_offset(3), good.ring_offset + 1536);
    }

    #[test]
    fn superblock_round_trip_and_bytes() {
        let sb = sample();
        let slot = encoded(&sb);
        assert_eq!(Superblock::decode(&slot[..]), Ok(sb));
        assert_eq!(&slot[0..8], b"JSNAPSB1");
        assert_eq!(&slot[8..16], &[3, 0, 0, 0, 192, 0, 0, 0]);
        assert_eq!(&slot[164..172], &sb.geometry.cbt_offset.to_le_bytes());
        assert_eq!(&slot[172..180], &990u64.to_le_bytes());
        assert_eq!(&slot[180..188], &1u64.to_le_bytes());
        assert_eq!(&slot[188..192], &3u32.to_le_bytes());
        assert!(slot[192..].iter().all(|&b| b == 0));
        assert_eq!(&slot[160..164], &0x0103_0007u32.to_le_bytes());
        assert_eq!(&slot[16..24], &7u64.to_le_bytes());
        assert_eq!(&slot[24..40], b"0123456789abcdef");
        assert_eq!(&slot[52..56], &1u32.to_le_bytes());
        assert_eq!(&slot[100..104], &1u32.to_le_bytes());
        assert_eq!(&slot[120..128], &1000u64.to_le_bytes());
        assert!(slot[SB_HEADER_BYTES..].iter().all(|&b| b == 0));
        let mut zeroed = slot.clone();
        zeroed[SB_CRC_OFF..SB_CRC_OFF + 4].fill(0);
        assert_eq!(
            slot[SB_CRC_OFF..SB_CRC_OFF + 4],
            crc32c(0, &zeroed[..]).to_le_bytes()
        );
        // A longer buffer is fine; only the slot is read.
        let mut long = slot.to_vec();
        long.extend_from_slice(&[0xAA; 100]);
        assert_eq!(Superblock::decode(&long), Ok(sb));
    }

    #[test]
    fn superblock_every_byte_flip_is_detected() {
        let slot = encoded(&sample());
        let mut s = slot.clone();
        for i in 0..SB_SLOT_BYTES {
            for pat in [0x01u8, 0x80, 0xFF, 0x5A] {
                s[i] ^= pat;
                assert!(
                    Superblock::decode(&s[..]).is_err(),
                    "byte {i} pattern {pat:#x}"
                );
                s[i] ^= pat;
            }
        }
        assert_eq!(s, slot);
    }

    #[test]
    fn superblock_errors() {
        let sb = sample();
        let slot = encoded(&sb);
        assert_eq!(
            Superblock::decode(&[0u8; SB_SLOT_BYTES]),
            Err(Error::NotFormatted)
        );
        assert_eq!(
            Superblock::decode(&slot[..SB_SLOT_BYTES - 1]),
            Err(Error::Truncated)
        );
        let mut s = slot.clone();
        s[3] ^= 1;
        assert_eq!(Superblock::decode(&s[..]), Err(Error::BadMagic));
        let mut s = slot.clone();
        s[8] = 4;
        assert_eq!(Superblock::decode(&s[..]), Err(Error::BadVersion));
        let mut s = slot.clone();
        s[8] = 0;
        assert_eq!(Superblock::decode(&s[..]), Err(Error::BadVersion));
        let mut s = slot.clone();
        s[12] = 161;
        assert_eq!(Superblock::decode(&s[..]), Err(Error::BadVersion));
        let mut s = slot.clone();
        s[4000] = 1;
        assert_eq!(Superblock::decode(&s[..]), Err(Error::BadChecksum));
        let mut s = slot.clone();
        s[52] = 3;
        reseal(&mut s);
        assert_eq!(Superblock::decode(&s[..]), Err(Error::BadState));
        let mut s = slot.clone();
        s[100] = 2;
        reseal(&mut s);
        assert_eq!(Superblock::decode(&s[..]), Err(Error::BadState));
        let mut bad = sb;
        bad.tail_pos = bad.geometry.ring_sectors;
        assert_eq!(Superblock::decode(&encoded(&bad)[..]), Err(Error::BadState));
        let mut bad = sb;
        bad.geometry.ring_offset += 4096;
        assert_eq!(
            Superblock::decode(&encoded(&bad)[..]),
            Err(Error::BadGeometry)
        );
        let mut bad = sb;
        bad.chunk_sectors = 4;
        assert_eq!(
            Superblock::decode(&encoded(&bad)[..]),
            Err(Error::BadGeometry)
        );
        let mut bad = sb;
        bad.prod_sectors = PROD * 2;
        assert_eq!(
            Superblock::decode(&encoded(&bad)[..]),
            Err(Error::BadGeometry)
        );
        for e in [Error::NotFormatted, Error::BadMagic, Error::OutOfRing] {
            assert!(!e.msg().is_empty());
        }
    }

    /// Compatibility: journals written before `store_devt` existed (header
    /// size 160, zero after it) still load, with no store recorded.
    #[test]
    fn header_v1_0_reads_store_devt_as_unknown() {
        let sb = Superblock {
            store_devt: 0,
            ..sample()
        };
        let mut slot = encoded(&sb);
        slot[8..12].copy_from_slice(&2u32.to_le_bytes());
        slot[12..16].copy_from_slice(&160u32.to_le_bytes());
        reseal(&mut slot);
        // no changed-block maps either
        let mut old = Superblock {
            cbt: Intervals::fresh(0),
            ..sb
        };
        old.geometry.cbt_offset = 0;
        assert_eq!(Superblock::decode(&slot[..]), Ok(old));
        // version 2 (header 164): the store is known, the maps are not
        let v2 = Superblock { store_devt: 7, ..old };
        let mut slot2 = encoded(&Superblock { store_devt: 7, ..sb });
        slot2[8..12].copy_from_slice(&2u32.to_le_bytes());
        slot2[12..16].copy_from_slice(&164u32.to_le_bytes());
        reseal(&mut slot2);
        assert_eq!(Superblock::decode(&slot2[..]), Ok(v2));
        // the header size goes with the version: 192 only for version 3
        for (v, h) in [(3u32, 164u32), (3, 160), (2, 192), (1, 192)] {
            let mut x = encoded(&sb);
            x[8..12].copy_from_slice(&v.to_le_bytes());
            x[12..16].copy_from_slice(&h.to_le_bytes());
            reseal(&mut x);
            assert_eq!(Superblock::decode(&x[..]), Err(Error::BadVersion), "version {v} header {h}");
        }
        // version 3: bad changed-block flags or intervals are refused
        let mut slot3 = encoded(&sb);
        slot3[188..192].copy_from_slice(&4u32.to_le_bytes());
        reseal(&mut slot3);
        assert_eq!(Superblock::decode(&slot3[..]), Err(Error::BadState));
        let mut slot3 = encoded(&sb);
        slot3[164..172].copy_from_slice(&(sb.geometry.desc_offset).to_le_bytes());
        reseal(&mut slot3);
        assert_eq!(Superblock::decode(&slot3[..]), Err(Error::BadGeometry));
        slot[12..16].copy_from_slice(&168u32.to_le_bytes());
        reseal(&mut slot);
        assert_eq!(Superblock::decode(&slot[..]), Err(Error::BadVersion));
    }

    #[test]
    fn pick_superblock_prefers_highest_valid_generation() {
        let a = sample();
        let b = Superblock {
            generation: 8,
            tail_seq: 1001,
            ..a
        };
        let (sa, sb) = (encoded(&a), encoded(&b));
        let zero = [0u8; SB_SLOT_BYTES];
        assert_eq!(pick_superblock(&sa[..], &sb[..]), Ok((b, 1)));
        assert_eq!(pick_superblock(&sb[..], &sa[..]), Ok((b, 0)));
        assert_eq!(pick_superblock(&sa[..], &sa[..]), Ok((a, 0)));
        // A torn commit into the other slot leaves the previous state.
        let mut torn = sb.clone();
        torn[2000] ^= 0x10;
        assert_eq!(pick_superblock(&sa[..], &torn[..]), Ok((a, 0)));
        assert_eq!(pick_superblock(&torn[..], &sa[..]), Ok((a, 1)));
        assert_eq!(pick_superblock(&zero, &sa[..]), Ok((a, 1)));
        assert_eq!(pick_superblock(&zero, &zero), Err(Error::NotFormatted));
        assert_eq!(pick_superblock(&zero, &torn[..]), Err(Error::BadChecksum));
        assert_eq!(pick_superblock(&torn[..], &zero), Err(Error::BadChecksum));
        assert_eq!(pick_superblock(&zero, &[]), Err(Error::Truncated));
    }

    fn desc() -> Descriptor {
        Descriptor {
            flags: 0,
            seq: 0x1122_3344_5566_7788,
            sector: 4096,
            ring_pos: 100,
            nr_sectors: 8,
            data_crc: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn descriptor_round_trip_and_bytes() {
        let d = desc();
        let mut b = [0u8; DESC_BYTES];
        d.encode(&mut b);
        assert_eq!(Descriptor::decode(&b, 108), Ok(d));
        assert_eq!(&b[0..4], b"JDSC");
        assert_eq!(&b[8..16], &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(
            &b[24..40],
            &[100, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0xEF, 0xBE, 0xAD, 0xDE]
        );
        assert!(b[40..60].iter().all(|&x| x == 0));
        assert_eq!(b[60..64], crc32c(0, &b[..60]).to_le_bytes());
        let with_flags = Descriptor { flags: 5, ..d };
        with_flags.encode(&mut b);
        assert_eq!(Descriptor::decode(&b, 108), Ok(with_flags));
    }

    #[test]
    fn descriptor_every_byte_flip_is_detected() {
        let mut b = [0u8; DESC_BYTES];
        desc().encode(&mut b);
        for i in 0..DESC_BYTES {
            for bit in 0..8 {
                for pat in [1u8 << bit, !(1u8 << bit), 0xFF ^ (0x81 << (bit % 7))] {
                    let mut s = b;
                    s[i] ^= pat;
                    assert!(
                        Descriptor::decode(&s, 1 << 20).is_err(),
                        "byte {i} pattern {pat:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn descriptor_errors() {
        let mut b = [0u8; DESC_BYTES];
        assert_eq!(Descriptor::decode(&b, 1000), Err(Error::Empty));
        desc().encode(&mut b);
        assert_eq!(Descriptor::decode(&b[..63], 1000), Err(Error::Truncated));
        assert_eq!(Descriptor::decode(&b, 107), Err(Error::OutOfRing));
        let mut s = b;
        s[0] = b'X';
        assert_eq!(Descriptor::decode(&s, 1000), Err(Error::BadMagic));
        let mut s = b;
        s[45] = 1;
        assert_eq!(Descriptor::decode(&s, 1000), Err(Error::BadChecksum));
        Descriptor {
            nr_sectors: 0,
            ..desc()
        }
        .encode(&mut b);
        assert_eq!(Descriptor::decode(&b, 1000), Err(Error::BadLength));
        Descriptor {
            ring_pos: u64::MAX,
            ..desc()
        }
        .encode(&mut b);
        assert_eq!(Descriptor::decode(&b, u64::MAX), Err(Error::OutOfRing));
    }

    #[test]
    fn verify_data_checks_length_and_crc() {
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        let d = Descriptor {
            nr_sectors: 2,
            data_crc: crc32c(0, &data),
            ..desc()
        };
        assert!(d.verify_data(&data));
        assert!(!d.verify_data(&data[..512]));
        let mut bad = data.clone();
        bad[700] ^= 4;
        assert!(!d.verify_data(&bad));
        assert!(!Descriptor { nr_sectors: 3, ..d }.verify_data(&data));
    }

    #[test]
    fn ordered_records_check_length_only() {
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        let d = Descriptor {
            flags: DESC_ORDERED,
            nr_sectors: 2,
            data_crc: 0,
            ..desc()
        };
        assert!(!d.data_checked());
        assert!(d.verify_data(&data));
        assert!(!d.verify_data(&data[..512]));
        let mut b = [0u8; DESC_BYTES];
        d.encode(&mut b);
        assert_eq!(Descriptor::decode(&b, 108), Ok(d));
        // A version 1 record (no flag) still has its data checked.
        assert!(!Descriptor { flags: 0, ..d }.verify_data(&data));
    }

    #[test]
    fn version_1_superblocks_are_read() {
        let sb = sample();
        let mut slot = encoded(&sb);
        assert_eq!(slot_version(&slot[..]), SB_VERSION);
        slot[8..12].copy_from_slice(&SB_VERSION_V1.to_le_bytes());
        slot[12..16].copy_from_slice(&(SB_HEADER_BYTES_V2 as u32).to_le_bytes());
        reseal(&mut slot);
        let mut v1 = Superblock {
            cbt: Intervals::fresh(0),
            ..sb
        };
        v1.geometry.cbt_offset = 0;
        assert_eq!(Superblock::decode(&slot[..]), Ok(v1));
        assert_eq!(slot_version(&slot[..]), 1);
    }
}
