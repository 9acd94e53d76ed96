//! Parsing of the table-line and message arguments that are not device
//! paths (the table lines and messages of the README).
//!
//! ```text
//! jsnap:      <production_dev> <journal_dev> <store_dev> <chunk_sectors> [<#feature_args> <feature_arg>*]
//! jsnap-view: <jsnap_dev> <ro|rw|mirror>
//! ```
//!
//! Feature arguments (the count is the number of tokens that follow it):
//!
//! | feature | meaning | default |
//! |---------|---------|---------|
//! | `format` | initialise the journal even if it holds a valid superblock | off |
//! | `high_watermark <1..100>` | destage starts when the live data (what destage must still write out) reaches this percentage of the journal, or the ring, dead records included, reaches `compact::ring_high` (90% for 50) | 50 |
//! | `low_watermark <0..99>` | destage started by live data stops once the journal (dead records included) is down to this percentage; started by the ring bound, once the live data is at most this percentage and the ring as far below its bound; must be below `high_watermark` | `high_watermark` - 5 (45) |
//! | `destage_batch <1..4096>` | extents destaged per batch | 64 |
//! | `hydrate_batch <1..1024>` | chunks copied per hydration step | 4 MiB worth, 16..1024 |
//! | `no_destage` | destage only when forced (`drain`, full journal); for testing | off |
//! | `relocated` | accept a journal whose production device number changed | off |
//! | `bypass <8..1048576>` | a write of at least this many sectors goes straight to production with FUA, not through the journal, when no snapshot is active and no record still in the journal overlaps it | off |
//! | `compact <0..90>` | with no snapshot, destage copies the live pieces of the oldest records to the head of the journal instead of writing them to production when at most this percentage of them is live; 0: never | 50 |
//!
//! Numbers are plain decimal: no sign, no `+`, no spaces, no overflow.

use core::fmt::Write;

/// Why an argument or message was refused; [`ArgError::msg`] is the text
/// for `ti->error` or the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// Bad `chunk_sectors`.
    ChunkSize,
    /// The feature count is not a number.
    BadFeatureCount,
    /// The feature count differs from the number of tokens that follow.
    FeatureCount,
    /// An unknown feature name.
    UnknownFeature,
    /// A feature given twice.
    DuplicateFeature,
    /// A feature that takes a value is the last token.
    MissingValue,
    /// Bad `high_watermark` value.
    HighWatermark,
    /// Bad `low_watermark` value.
    LowWatermark,
    /// `low_watermark >= high_watermark`.
    WatermarkOrder,
    /// Bad `destage_batch` value.
    DestageBatch,
    /// Bad `hydrate_batch` value.
    HydrateBatch,
    /// Bad `bypass` value.
    Bypass,
    /// Bad `compact` value.
    Compact,
    /// Bad `jsnap-view` mode.
    ViewMode,
    /// An empty message.
    EmptyMessage,
    /// An unknown message.
    UnknownMessage,
    /// A known message with the wrong number of arguments.
    MessageArgs,
    /// `hydrate` with something other than `on` or `off`.
    HydrateArg,
    /// `changed` with an argument that is neither an interval nor a number.
    ChangedArg,
}

impl ArgError {
    /// Static human-readable reason.
    pub fn msg(&self) -> &'static core::ffi::CStr {
        match self {
            ArgError::ChunkSize => {
                c"Invalid chunk size: must be a power of two between 8 and 1048576 sectors"
            }
            ArgError::BadFeatureCount => c"Invalid feature argument count",
            ArgError::FeatureCount => c"Feature argument count does not match the arguments given",
            ArgError::UnknownFeature => c"Unknown feature argument",
            ArgError::DuplicateFeature => c"Duplicate feature argument",
            ArgError::MissingValue => c"Feature argument is missing its value",
            ArgError::HighWatermark => c"Invalid high_watermark: must be 1..100",
            ArgError::LowWatermark => c"Invalid low_watermark: must be 0..99",
            ArgError::WatermarkOrder => c"low_watermark must be below high_watermark",
            ArgError::DestageBatch => c"Invalid destage_batch: must be 1..4096",
            ArgError::HydrateBatch => c"Invalid hydrate_batch: must be 1..1024",
            ArgError::Bypass => c"Invalid bypass: must be 8..1048576 sectors",
            ArgError::Compact => c"Invalid compact: must be 0..90 (percent)",
            ArgError::ViewMode => c"Invalid view mode: must be ro, rw or mirror",
            ArgError::EmptyMessage => c"Empty message",
            ArgError::UnknownMessage => {
                c"Unknown message: expected snapshot, drop, hydrate, drain or changed"
            }
            ArgError::MessageArgs => c"Wrong number of arguments for message",
            ArgError::HydrateArg => c"Invalid hydrate argument: must be on or off",
            ArgError::ChangedArg => {
                c"Invalid changed argument: expected [current|previous] [<first_chunk> [<nr_chunks>]]"
            }
        }
    }
}

/// Largest accepted chunk size: 2^20 sectors (512 MiB).
pub const MAX_CHUNK_SECTORS: u32 = 1 << 20;

/// Parses a plain decimal number in `lo..=hi`.
fn parse_num(s: &str, lo: u32, hi: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|v| (lo..=hi).contains(v))
}

/// Parses `chunk_sectors`: a power of two from 8 to [`MAX_CHUNK_SECTORS`].
pub fn parse_chunk_sectors(s: &str) -> Result<u32, ArgError> {
    parse_num(s, 8, MAX_CHUNK_SECTORS)
        .filter(|v| v.is_power_of_two())
        .ok_or(ArgError::ChunkSize)
}

/// A feature argument, in the order it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `format`
    Format,
    /// `high_watermark <n>`
    HighWatermark,
    /// `low_watermark <n>`
    LowWatermark,
    /// `destage_batch <n>`
    DestageBatch,
    /// `hydrate_batch <n>`
    HydrateBatch,
    /// `no_destage`
    NoDestage,
    /// `relocated`: accept a journal whose production device number changed
    NoDevtCheck,
    /// `bypass <n>`
    Bypass,
    /// `compact <n>`
    Compact,
}

impl Feature {
    const ALL: [Feature; 9] = [
        Feature::Format,
        Feature::HighWatermark,
        Feature::LowWatermark,
        Feature::DestageBatch,
        Feature::HydrateBatch,
        Feature::NoDestage,
        Feature::NoDevtCheck,
        Feature::Bypass,
        Feature::Compact,
    ];

    /// The feature's name on the table line.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Format => "format",
            Feature::HighWatermark => "high_watermark",
            Feature::LowWatermark => "low_watermark",
            Feature::DestageBatch => "destage_batch",
            Feature::HydrateBatch => "hydrate_batch",
            Feature::NoDestage => "no_destage",
            Feature::NoDevtCheck => "relocated",
            Feature::Bypass => "bypass",
            Feature::Compact => "compact",
        }
    }
}

/// The parsed feature arguments, with defaults for those not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Format the journal even if it holds a valid superblock.
    pub format: bool,
    /// Journal use (percent) above which destage starts.
    pub high_watermark: u32,
    /// Journal use (percent) below which destage stops.
    pub low_watermark: u32,
    /// Extents destaged per batch.
    pub destage_batch: u32,
    /// Chunks copied per hydration step; 0 (not given): see
    /// [`Features::hydrate_chunks`].
    pub hydrate_batch: u32,
    /// Destage only when forced.
    pub no_destage: bool,
    /// Accept a journal whose production device number changed.
    pub relocated: bool,
    /// Writes of at least this many sectors may bypass the journal; 0: never.
    pub bypass: u32,
    /// Compact the journal tail when at most this percentage of it is
    /// live; 0: never.
    pub compact: u32,
    /// Whether the `<#feature_args>` count was on the table line at all.
    count_given: bool,
    /// The features in the order given; the first `nr_given` are valid.
    given: [Feature; 9],
    nr_given: usize,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            format: false,
            high_watermark: 50,
            low_watermark: 50 - LOW_WATERMARK_GAP,
            destage_batch: 64,
            hydrate_batch: 0,
            no_destage: false,
            relocated: false,
            bypass: 0,
            compact: DEFAULT_COMPACT,
            count_given: false,
            given: Feature::ALL,
            nr_given: 0,
        }
    }
}

impl Features {
    /// Chunks copied per hydration step: `hydrate_batch` if given, else
    /// enough chunks of `chunk_sectors` for 4 MiB (one store flush per
    /// step), at least 16 and at most 1024.
    pub fn hydrate_chunks(&self, chunk_sectors: u32) -> u32 {
        if self.hydrate_batch != 0 {
            return self.hydrate_batch;
        }
        (8192 / chunk_sectors.max(1)).clamp(16, 1024)
    }

    /// The features given on the table line, in order.
    pub fn given(&self) -> &[Feature] {
        self.given.get(..self.nr_given).unwrap_or_default()
    }

    /// The value of a feature that takes one.
    fn value(&self, feat: Feature) -> Option<u32> {
        match feat {
            Feature::HighWatermark => Some(self.high_watermark),
            Feature::LowWatermark => Some(self.low_watermark),
            Feature::DestageBatch => Some(self.destage_batch),
            Feature::HydrateBatch => Some(self.hydrate_batch),
            Feature::Bypass => Some(self.bypass),
            Feature::Compact => Some(self.compact),
            Feature::Format | Feature::NoDestage | Feature::NoDevtCheck => None,
        }
    }

    /// Parses and stores the value of a feature that takes one.
    fn set_value(&mut self, feat: Feature, s: &str) -> Result<(), ArgError> {
        let (slot, lo, hi, err) = match feat {
            Feature::HighWatermark => (&mut self.high_watermark, 1, 100, ArgError::HighWatermark),
            Feature::LowWatermark => (&mut self.low_watermark, 0, 99, ArgError::LowWatermark),
            Feature::DestageBatch => (&mut self.destage_batch, 1, 4096, ArgError::DestageBatch),
            Feature::HydrateBatch => (&mut self.hydrate_batch, 1, 1024, ArgError::HydrateBatch),
            Feature::Bypass => (&mut self.bypass, 8, 1 << 20, ArgError::Bypass),
            Feature::Compact => (&mut self.compact, 0, 90, ArgError::Compact),
            Feature::Format | Feature::NoDestage | Feature::NoDevtCheck => {
                return Err(ArgError::UnknownFeature)
            }
        };
        *slot = parse_num(s, lo, hi).ok_or(err)?;
        Ok(())
    }
}

/// Parses the tokens after `chunk_sectors`: nothing, or `<#feature_args>`
/// followed by exactly that many tokens.
pub fn parse_features(args: &[&str]) -> Result<Features, ArgError> {
    let mut f = Features::default();
    let Some((count, mut rest)) = args.split_first() else {
        return Ok(f);
    };
    let count = parse_num(count, 0, u32::MAX).ok_or(ArgError::BadFeatureCount)?;
    if usize::try_from(count).ok() != Some(rest.len()) {
        return Err(ArgError::FeatureCount);
    }
    f.count_given = true;
    while let Some((name, tail)) = rest.split_first() {
        rest = tail;
        let feat = Feature::ALL
            .into_iter()
            .find(|x| x.name() == *name)
            .ok_or(ArgError::UnknownFeature)?;
        if f.given().contains(&feat) {
            return Err(ArgError::DuplicateFeature);
        }
        match feat {
            Feature::Format => f.format = true,
            Feature::NoDestage => f.no_destage = true,
            Feature::NoDevtCheck => f.relocated = true,
            _ => {
                let (value, tail) = rest.split_first().ok_or(ArgError::MissingValue)?;
                rest = tail;
                f.set_value(feat, value)?;
            }
        }
        *f.given
            .get_mut(f.nr_given)
            .ok_or(ArgError::DuplicateFeature)? = feat;
        f.nr_given += 1;
    }
    if !f.given().contains(&Feature::LowWatermark) {
        f.low_watermark = f.high_watermark.saturating_sub(LOW_WATERMARK_GAP);
    }
    if f.low_watermark >= f.high_watermark {
        return Err(ArgError::WatermarkOrder);
    }
    Ok(f)
}

/// The default `low_watermark` is this far below `high_watermark` (50/45,
/// as dm-writecache): destage stops once it has made that much room, so
/// that the journal keeps absorbing overwrites.  Destaging deeper writes
/// out younger records, which later writes would often have superseded:
/// at 10% the 4 KiB overwrite job of the benchmark destaged 44% of what
/// was written.
pub const LOW_WATERMARK_GAP: u32 = 5;

/// Default of `compact`: the tail is copied within the journal when at
/// most half of it is live (a copy then frees at least as much as it
/// takes).
pub const DEFAULT_COMPACT: u32 = 50;

/// Writes the feature arguments as given (count first, order kept; nothing
/// if there was no count), for `dmsetup table`. No leading space.
pub fn features_to_table(f: &Features, out: &mut impl Write) -> core::fmt::Result {
    if !f.count_given {
        return Ok(());
    }
    let tokens: usize = f
        .given()
        .iter()
        .map(|&x| if f.value(x).is_some() { 2 } else { 1 })
        .sum();
    write!(out, "{tokens}")?;
    for &feat in f.given() {
        write!(out, " {}", feat.name())?;
        if let Some(v) = f.value(feat) {
            write!(out, " {v}")?;
        }
    }
    Ok(())
}

/// Mode of a `jsnap-view` device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewMode {
    /// Read-only snapshot.
    Ro,
    /// Writable snapshot; production never sees its writes.
    Rw,
    /// One-way mirror: writes reach the view and production.
    Mirror,
}

impl ViewMode {
    /// The mode's name on the table line.
    pub fn name(self) -> &'static str {
        match self {
            ViewMode::Ro => "ro",
            ViewMode::Rw => "rw",
            ViewMode::Mirror => "mirror",
        }
    }
}

/// Parses the `jsnap-view` mode argument.
pub fn parse_view_mode(s: &str) -> Result<ViewMode, ArgError> {
    [ViewMode::Ro, ViewMode::Rw, ViewMode::Mirror]
        .into_iter()
        .find(|m| m.name() == s)
        .ok_or(ArgError::ViewMode)
}

/// A `dmsetup message` to a jsnap device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// `snapshot`
    Snapshot,
    /// `drop`
    Drop,
    /// `hydrate on|off`
    Hydrate(bool),
    /// `drain`
    Drain,
    /// `changed [current|previous] [<first_chunk> [<nr_chunks>]]`
    Changed {
        /// The interval asked about.
        which: super::cbt::Which,
        /// First chunk of the range.
        first: u64,
        /// Chunks in the range (`None`: to the end of the volume).
        count: Option<u64>,
    },
}

/// Parses a plain decimal `u64`.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

fn parse_changed(args: &[&str]) -> Result<Message, ArgError> {
    use super::cbt::Which;
    let (which, nums) = match args.first().copied() {
        Some("current") => (Which::Current, &args[1..]),
        Some("previous") => (Which::Previous, &args[1..]),
        _ => (Which::Current, args),
    };
    if nums.len() > 2 {
        return Err(ArgError::MessageArgs);
    }
    let mut v = [None; 2];
    for (slot, a) in v.iter_mut().zip(nums) {
        *slot = Some(parse_u64(a).ok_or(ArgError::ChangedArg)?);
    }
    Ok(Message::Changed {
        which,
        first: v[0].unwrap_or(0),
        count: v[1],
    })
}

/// Parses a message's words.
pub fn parse_message(argv: &[&str]) -> Result<Message, ArgError> {
    let (cmd, args) = argv.split_first().ok_or(ArgError::EmptyMessage)?;
    let (msg, arity) = match *cmd {
        "snapshot" => (Message::Snapshot, 0),
        "drop" => (Message::Drop, 0),
        "drain" => (Message::Drain, 0),
        "hydrate" => (Message::Hydrate(false), 1),
        "changed" => return parse_changed(args),
        _ => return Err(ArgError::UnknownMessage),
    };
    if args.len() != arity {
        return Err(ArgError::MessageArgs);
    }
    match (msg, args.first().copied()) {
        (Message::Hydrate(_), Some("on")) => Ok(Message::Hydrate(true)),
        (Message::Hydrate(_), Some("off")) => Ok(Message::Hydrate(false)),
        (Message::Hydrate(_), _) => Err(ArgError::HydrateArg),
        _ => Ok(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn table(f: &Features) -> String {
        let mut s = String::new();
        features_to_table(f, &mut s).unwrap();
        s
    }

    #[test]
    fn chunk_sectors() {
        for (s, v) in [("8", 8), ("16", 16), ("1048576", 1 << 20), ("0008", 8)] {
            assert_eq!(parse_chunk_sectors(s), Ok(v), "{s}");
        }
        for s in [
            "",
            "0",
            "4",
            "7",
            "12",
            "2097152",
            "+8",
            "-8",
            " 8",
            "8 ",
            "0x8",
            "8k",
            "99999999999999999999",
        ] {
            assert_eq!(parse_chunk_sectors(s), Err(ArgError::ChunkSize), "{s:?}");
        }
    }

    #[test]
    fn features_defaults_and_values() {
        let d = parse_features(&[]).unwrap();
        assert_eq!(
            (
                d.format,
                d.high_watermark,
                d.low_watermark,
                d.destage_batch,
                d.hydrate_batch,
                d.no_destage
            ),
            (false, 50, 45, 64, 0, false)
        );
        // Without `low_watermark`, it follows `high_watermark`.
        let h = parse_features(&["2", "high_watermark", "30"]).unwrap();
        assert_eq!((h.high_watermark, h.low_watermark), (30, 25));
        let h = parse_features(&["2", "high_watermark", "3"]).unwrap();
        assert_eq!((h.high_watermark, h.low_watermark), (3, 0));
        assert_eq!(table(&h), "2 high_watermark 3");
        let l = parse_features(&["2", "low_watermark", "20"]).unwrap();
        assert_eq!((l.high_watermark, l.low_watermark), (50, 20));
        assert_eq!(
            [8, 128, 2048, 1 << 20].map(|cs| d.hydrate_chunks(cs)),
            [1024, 64, 16, 16]
        );
        assert_eq!(table(&d), "");
        let zero = parse_features(&["0"]).unwrap();
        assert_eq!(table(&zero), "0");
        let args = [
            "8",
            "no_destage",
            "low_watermark",
            "0",
            "high_watermark",
            "100",
            "format",
            "hydrate_batch",
            "1024",
        ];
        let f = parse_features(&args).unwrap();
        assert_eq!(
            (
                f.format,
                f.high_watermark,
                f.low_watermark,
                f.hydrate_batch,
                f.no_destage
            ),
            (true, 100, 0, 1024, true)
        );
        assert_eq!(f.destage_batch, 64);
        assert_eq!(f.hydrate_chunks(8), 1024);
        assert_eq!(
            parse_features(&["2", "hydrate_batch", "5"])
                .unwrap()
                .hydrate_chunks(128),
            5
        );
        assert_eq!(
            f.given(),
            [
                Feature::NoDestage,
                Feature::LowWatermark,
                Feature::HighWatermark,
                Feature::Format,
                Feature::HydrateBatch
            ]
        );
        assert_eq!(table(&f), args.join(" "));
        let all = [
            "14",
            "bypass",
            "2048",
            "compact",
            "0",
            "destage_batch",
            "4096",
            "format",
            "hydrate_batch",
            "1",
            "high_watermark",
            "1",
            "low_watermark",
            "0",
            "no_destage",
        ];
        assert_eq!(table(&parse_features(&all).unwrap()), all.join(" "));
        assert_eq!(parse_features(&all).unwrap().bypass, 2048);
        assert_eq!(parse_features(&["2", "bypass", "8"]).unwrap().bypass, 8);
        assert_eq!(parse_features(&["2", "bypass", "1048576"]).unwrap().bypass, 1 << 20);
        assert_eq!(Features::default().bypass, 0);
        assert_eq!(parse_features(&all).unwrap().compact, 0);
        assert_eq!(parse_features(&["2", "compact", "90"]).unwrap().compact, 90);
        assert_eq!(Features::default().compact, DEFAULT_COMPACT);
    }

    #[test]
    fn feature_errors() {
        use ArgError::*;
        let cases: [(&[&str], ArgError); 30] = [
            (&["x"], BadFeatureCount),
            (&["-1"], BadFeatureCount),
            (&["+1", "format"], BadFeatureCount),
            (&["", "format"], BadFeatureCount),
            (&["1"], FeatureCount),
            (&["0", "format"], FeatureCount),
            (&["2", "format"], FeatureCount),
            (&["4294967295", "format"], FeatureCount),
            (&["1", "formats"], UnknownFeature),
            (&["1", "FORMAT"], UnknownFeature),
            (&["2", "format", "format"], DuplicateFeature),
            (
                &["4", "destage_batch", "8", "destage_batch", "8"],
                DuplicateFeature,
            ),
            (&["1", "high_watermark"], MissingValue),
            (&["2", "high_watermark", "0"], HighWatermark),
            (&["2", "high_watermark", "101"], HighWatermark),
            (&["2", "low_watermark", "100"], LowWatermark),
            (&["2", "low_watermark", "50"], WatermarkOrder),
            (
                &["4", "high_watermark", "20", "low_watermark", "20"],
                WatermarkOrder,
            ),
            (&["2", "destage_batch", "0"], DestageBatch),
            (&["2", "destage_batch", "4097"], DestageBatch),
            (&["2", "hydrate_batch", "1025"], HydrateBatch),
            (&["2", "hydrate_batch", "+5"], HydrateBatch),
            (&["2", "bypass", "7"], Bypass),
            (&["2", "bypass", "0"], Bypass),
            (&["2", "bypass", "1048577"], Bypass),
            (&["1", "bypass"], MissingValue),
            (&["2", "compact", "91"], Compact),
            (&["2", "compact", "-1"], Compact),
            (&["2", "compact", "50%"], Compact),
            (&["1", "compact"], MissingValue),
        ];
        for (args, err) in cases {
            assert_eq!(parse_features(args), Err(err), "{args:?}");
        }
        // A value is taken as a value even if it looks like a feature name.
        assert_eq!(
            parse_features(&["2", "destage_batch", "format"]),
            Err(DestageBatch)
        );
    }

    #[test]
    fn view_modes() {
        for m in [ViewMode::Ro, ViewMode::Rw, ViewMode::Mirror] {
            assert_eq!(parse_view_mode(m.name()), Ok(m));
        }
        for s in ["", "RO", "read-only", "mirror "] {
            assert_eq!(parse_view_mode(s), Err(ArgError::ViewMode));
        }
    }

    #[test]
    fn messages() {
        use ArgError::*;
        assert_eq!(parse_message(&["snapshot"]), Ok(Message::Snapshot));
        assert_eq!(parse_message(&["drop"]), Ok(Message::Drop));
        assert_eq!(parse_message(&["drain"]), Ok(Message::Drain));
        assert_eq!(
            parse_message(&["hydrate", "on"]),
            Ok(Message::Hydrate(true))
        );
        assert_eq!(
            parse_message(&["hydrate", "off"]),
            Ok(Message::Hydrate(false))
        );
        use crate::cbt::Which;
        let good: [(&[&str], Which, u64, Option<u64>); 6] = [
            (&["changed"], Which::Current, 0, None),
            (&["changed", "current"], Which::Current, 0, None),
            (&["changed", "previous"], Which::Previous, 0, None),
            (&["changed", "7"], Which::Current, 7, None),
            (&["changed", "previous", "7", "3"], Which::Previous, 7, Some(3)),
            (&["changed", "0", "18446744073709551615"], Which::Current, 0, Some(u64::MAX)),
        ];
        for (argv, which, first, count) in good {
            assert_eq!(parse_message(argv), Ok(Message::Changed { which, first, count }), "{argv:?}");
        }
        let bad: [(&[&str], ArgError); 16] = [
            (&[], EmptyMessage),
            (&["snap"], UnknownMessage),
            (&["Snapshot"], UnknownMessage),
            (&["snapshot", "now"], MessageArgs),
            (&["drop", "x"], MessageArgs),
            (&["drain", ""], MessageArgs),
            (&["hydrate"], MessageArgs),
            (&["hydrate", "on", "off"], MessageArgs),
            (&["hydrate", "yes"], HydrateArg),
            (&["changed", "older"], ChangedArg),
            (&["changed", "previous", "-1"], ChangedArg),
            (&["changed", "1", "x"], ChangedArg),
            (&["changed", "1", "2", "3"], MessageArgs),
            (&["changed", "current", "1", "2", "3"], MessageArgs),
            (&["changed", "previous", "current"], ChangedArg),
            (&["changed", "18446744073709551616"], ChangedArg),
        ];
        for (argv, err) in bad {
            assert_eq!(parse_message(argv), Err(err), "{argv:?}");
        }
    }

    #[test]
    fn every_error_has_a_distinct_message() {
        use ArgError::*;
        let all = [
            ChunkSize,
            BadFeatureCount,
            FeatureCount,
            UnknownFeature,
            DuplicateFeature,
            MissingValue,
            HighWatermark,
            LowWatermark,
            WatermarkOrder,
            DestageBatch,
            HydrateBatch,
            ViewMode,
            EmptyMessage,
            UnknownMessage,
            MessageArgs,
            HydrateArg,
            ChangedArg,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(!a.msg().is_empty());
            for b in &all[i + 1..] {
                assert_ne!(a.msg(), b.msg());
            }
        }
    }

    #[test]
    fn relocated_feature() {
        let f = parse_features(&["2", "relocated", "no_destage"]).unwrap();
        assert!(f.relocated && f.no_destage);
        assert!(!parse_features(&[]).unwrap().relocated);
        assert_eq!(
            parse_features(&["1", "relocated", "x"]),
            Err(ArgError::FeatureCount)
        );
    }
}
