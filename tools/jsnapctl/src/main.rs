//! jsnapctl: the user-space tool of dm-jsnap (README "jsnapctl").
//!
//! Every device-mapper ioctl goes through the devicemapper crate
//! (`dmctl.rs`); the checks that can be made before anything is loaded are
//! made first, so that a refusal changes nothing and says why in one line.
//!
//! Exit codes: 0 done; 1 the kernel refused or an ioctl failed; 2 bad
//! command line; 3 refused by a check before anything was changed; 4 a
//! `--wait` ended without reaching its goal.

mod dev;
mod changes;
mod dmctl;
mod journal;
mod nvmet;
mod progress;
mod status;
mod table;

use std::io::{IsTerminal, Write};
use std::process::exit;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use dmctl::{Dm, IoctlError};
use progress::{Tracker, Unit};
use status::{JsnapStatus, Status, Val};
use table::{FeatureOpts, JsnapParams};

/// Why a command stopped; each becomes one line on stderr and an exit code.
#[derive(Debug)]
enum Fail {
    /// the kernel refused, or an ioctl failed (1)
    Failed(String),
    /// bad command line (2)
    Usage(String),
    /// refused by a check; nothing was changed (3)
    Refused(String),
    /// `--wait` ended without reaching its goal (4)
    Wait(String),
}

impl Fail {
    fn code(&self) -> i32 {
        match self {
            Fail::Failed(_) => 1,
            Fail::Usage(_) => 2,
            Fail::Refused(_) => 3,
            Fail::Wait(_) => 4,
        }
    }

    fn msg(&self) -> &str {
        match self {
            Fail::Failed(m) | Fail::Usage(m) | Fail::Refused(m) | Fail::Wait(m) => m,
        }
    }
}

impl From<IoctlError> for Fail {
    fn from(e: IoctlError) -> Fail {
        Fail::Failed(e.line())
    }
}

type R<T> = Result<T, Fail>;

#[derive(Parser)]
#[command(
    name = "jsnapctl",
    version,
    about = "Control dm-jsnap volumes: the jsnap and jsnap-view device-mapper targets",
    after_help = "Exit codes: 0 done, 1 the kernel refused or an ioctl failed, 2 bad command line, \
                  3 refused by a check (nothing changed), 4 --wait ended without reaching its goal."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and activate a jsnap device over a production device, a pmem journal and a store
    Create(CreateArgs),
    /// Take the instant snapshot of NAME
    Snapshot { name: String },
    /// Discard NAME's snapshot (refused while a view is open)
    Drop { name: String },
    /// Create /dev/mapper/VIEWNAME, a jsnap-view of NAME's snapshot
    View {
        name: String,
        viewname: String,
        mode: Mode,
    },
    /// Start or stop the background copier that makes the snapshot a full copy in the store
    Hydrate {
        name: String,
        state: OnOff,
        /// wait until hydration=done, with progress (rate, ETA)
        #[arg(long)]
        wait: bool,
        /// with --wait: give up after SECS seconds (0: never)
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        timeout: u64,
    },
    /// Destage the whole journal to production now (returns when it is empty)
    Drain {
        name: String,
        /// show progress while the journal empties and check pending=0 at the end
        #[arg(long)]
        wait: bool,
    },
    /// Show NAME's status (a jsnap or a jsnap-view device)
    Status {
        name: String,
        /// one JSON object: every status key as parsed (numbers as numbers)
        #[arg(long)]
        json: bool,
    },
    /// One-way mirror split: snapshot NAME, create VIEWNAME as mirror volume A, start hydration
    Split {
        name: String,
        viewname: String,
        /// wait until A is a full copy (hydration=done)
        #[arg(long)]
        wait: bool,
        /// with --wait: give up after SECS seconds (0: never)
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        timeout: u64,
    },
    /// Chunks written in the current interval (since the last snapshot) or the previous one
    Changed {
        name: String,
        /// the interval between the two last snapshots instead of the current one
        #[arg(long)]
        previous: bool,
        /// first chunk of the range
        #[arg(long, value_name = "CHUNK", default_value_t = 0)]
        first: u64,
        /// chunks in the range (default: to the end of the volume)
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// runs as 512-byte sector ranges instead of chunks
        #[arg(long)]
        sectors: bool,
        /// one JSON object: interval, since, chunk_sectors, first, end, changed, unit, runs
        #[arg(long)]
        json: bool,
        /// refuse (exit 3) unless the interval began with snapshot N (0: the format); an
        /// incremental backup passes the number it recorded at its last snapshot
        #[arg(long, value_name = "N")]
        since: Option<u64>,
    },
    /// Export a jsnap or jsnap-view device over NVMe/TCP (the kernel's nvmet), for a second host
    Export {
        name: String,
        /// the address to listen on: ADDR or ADDR:PORT (IPv6 as [ADDR]:PORT)
        #[arg(long, value_name = "ADDR[:PORT]")]
        addr: String,
        /// the TCP port (default 4420)
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// the subsystem NQN (default nqn.2026-12.dev.jsnap:NAME)
        #[arg(long)]
        nqn: Option<String>,
    },
    /// Take the NVMe/TCP export of NAME down (connected hosts get I/O errors)
    Unexport {
        name: String,
        /// the subsystem NQN (default: every export of NAME)
        #[arg(long)]
        nqn: Option<String>,
    },
    /// Remove a jsnap device (refused while views are open, unless --views) or a jsnap-view
    Remove {
        name: String,
        /// remove the device's open views first
        #[arg(long)]
        views: bool,
    },
}

#[derive(Args)]
struct CreateArgs {
    name: String,
    /// production device (holds the live data)
    #[arg(long, value_name = "DEV")]
    prod: String,
    /// DAX-capable pmem device for the journal
    #[arg(long, value_name = "PMEM")]
    journal: String,
    /// snapshot store, at least as large as the volume; '-' (default): none
    #[arg(long, value_name = "DEV|-", default_value = "-")]
    store: String,
    /// copy-on-write granularity in 512-byte sectors: a power of two, 8..1048576
    #[arg(long, value_name = "SECTORS", default_value_t = 64)]
    chunk: u64,
    /// volume length in sectors (default: the whole production device)
    #[arg(long, value_name = "SECTORS")]
    length: Option<u64>,
    /// initialise the journal even if it holds data (DESTROYS its content)
    #[arg(long)]
    format: bool,
    /// destage starts when the live data is this % of the journal (1..100);
    /// dead records wait for the ring bound (1.8x, at most 4/5 of the way
    /// to full)
    #[arg(long, value_name = "PCT")]
    high_watermark: Option<u32>,
    /// destage stops once the journal is down to this % (0..99, below
    /// --high-watermark), or, started by the ring bound, once the live data
    /// is down to it and the ring as far below its bound
    #[arg(long, value_name = "PCT")]
    low_watermark: Option<u32>,
    /// extents written per destage batch (1..4096)
    #[arg(long, value_name = "N")]
    destage_batch: Option<u32>,
    /// chunks copied per hydration step (1..1024)
    #[arg(long, value_name = "N")]
    hydrate_batch: Option<u32>,
    /// destage only on drain or when writers wait for journal space
    #[arg(long)]
    no_destage: bool,
    /// accept a journal recorded for another production (or store) device number
    #[arg(long)]
    relocated: bool,
    /// writes of at least this many sectors bypass the journal when no
    /// snapshot is active (8..1048576; durable on production, with FUA)
    #[arg(long, value_name = "SECTORS")]
    bypass: Option<u32>,
    /// with no snapshot, copy the live pieces of the journal's oldest
    /// records to its head instead of writing them to production when at
    /// most this percentage of them is live (0..90, default 50; 0: never)
    #[arg(long, value_name = "PCT")]
    compact: Option<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Ro,
    Rw,
    Mirror,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Ro => "ro",
            Mode::Rw => "rw",
            Mode::Mirror => "mirror",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn main() {
    // Output into a closed pipe (`jsnapctl status | head -1`) ends the
    // program quietly, as for any Unix tool, instead of a panic in println!.
    // SAFETY: SIG_DFL installs no handler; nothing else runs yet.
    let _ = unsafe {
        nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
    };
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    exit(0);
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                | ErrorKind::MissingSubcommand => {
                    eprintln!("jsnapctl: no subcommand given (jsnapctl --help lists them)");
                    exit(2);
                }
                kind => {
                    let text = e.to_string();
                    // the first paragraph, on one line
                    let para: Vec<&str> = text
                        .lines()
                        .map(str::trim)
                        .skip_while(|l| l.is_empty())
                        .take_while(|l| !l.is_empty())
                        .collect();
                    let first = para.join(" ");
                    let first = first.strip_prefix("error: ").unwrap_or(&first);
                    let hint = if kind == ErrorKind::InvalidSubcommand {
                        " (jsnapctl --help lists the subcommands)"
                    } else {
                        ""
                    };
                    eprintln!("jsnapctl: {first}{hint}");
                    exit(2);
                }
            }
        }
    };
    match run(cli) {
        Ok(()) => {}
        Err(f) => {
            let _ = std::io::stdout().flush();
            eprintln!("jsnapctl: {}", f.msg().replace('\n', " "));
            exit(f.code());
        }
    }
}

fn run(cli: Cli) -> R<()> {
    match cli.cmd {
        Cmd::Create(a) => create(a),
        Cmd::Snapshot { name } => snapshot(&name),
        Cmd::Drop { name } => drop_snapshot(&name),
        Cmd::View {
            name,
            viewname,
            mode,
        } => view(&name, &viewname, mode),
        Cmd::Hydrate {
            name,
            state,
            wait,
            timeout,
        } => hydrate(&name, state, wait, timeout),
        Cmd::Drain { name, wait } => drain(&name, wait),
        Cmd::Status { name, json } => show_status(&name, json),
        Cmd::Split {
            name,
            viewname,
            wait,
            timeout,
        } => split(&name, &viewname, wait, timeout),
        Cmd::Remove { name, views } => remove(&name, views),
        Cmd::Export {
            name,
            addr,
            port,
            nqn,
        } => export(&name, &addr, port, nqn),
        Cmd::Unexport { name, nqn } => unexport(&name, nqn),
        Cmd::Changed {
            name,
            previous,
            first,
            count,
            sectors,
            json,
            since,
        } => changed(&name, previous, first, count, sectors, json, since),
    }
}

fn dm() -> R<Dm> {
    Dm::open().map_err(Fail::Failed)
}

// ---- what a device is ------------------------------------------------------------

/// A jsnap device: its table and status.
struct JsnapDev {
    name: String,
    major: u32,
    minor: u32,
    len: u64,
    table_line: String,
    params: JsnapParams,
    status: Status,
    js: JsnapStatus,
}

impl JsnapDev {
    fn devnum(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// A jsnap-view device.
struct ViewDev {
    name: String,
    major: u32,
    minor: u32,
    len: u64,
    origin: String,
    mode: String,
    status: Status,
}

enum Kind {
    Jsnap(Box<JsnapDev>),
    View(ViewDev),
}

fn no_such(name: &str) -> Fail {
    Fail::Refused(format!("there is no device-mapper device named {name}"))
}

/// What NAME is: a jsnap device, a jsnap-view, or (refused) anything else.
fn lookup(dm: &Dm, name: &str) -> R<Kind> {
    let Some((major, minor)) = dm.devnum(name)? else {
        return Err(no_such(name));
    };
    let table = dm.table(name)?;
    let idx = table
        .iter()
        .position(|t| t.2 == "jsnap")
        .or_else(|| table.iter().position(|t| t.2 == "jsnap-view"));
    let Some(i) = idx else {
        let types: Vec<&str> = table.iter().map(|t| t.2.as_str()).collect();
        return Err(Fail::Refused(format!(
            "{name} is not a jsnap or jsnap-view device (its table has: {})",
            if types.is_empty() {
                "no table".to_string()
            } else {
                types.join(" ")
            }
        )));
    };
    let st = dm.status(name)?;
    let raw = st
        .get(i)
        .filter(|s| s.2 == table[i].2)
        .map(|s| s.3.clone())
        .ok_or_else(|| Fail::Failed(format!("status of {name} does not match its table")))?;
    let status = Status::parse(&raw).map_err(|e| Fail::Failed(format!("status of {name}: {e}")))?;
    let (start, len, ty, params) = &table[i];
    if ty == "jsnap" {
        let js = JsnapStatus::from_status(&status)
            .map_err(|e| Fail::Failed(format!("status of {name}: {e}")))?;
        let p = JsnapParams::parse(params)
            .map_err(|e| Fail::Failed(format!("table of {name}: {e}")))?;
        Ok(Kind::Jsnap(Box::new(JsnapDev {
            name: name.to_string(),
            major,
            minor,
            len: *len,
            table_line: format!("{start} {len} {ty} {params}"),
            params: p,
            status,
            js,
        })))
    } else {
        let (origin, mode) = table::parse_view_params(params).map_err(Fail::Failed)?;
        Ok(Kind::View(ViewDev {
            name: name.to_string(),
            major,
            minor,
            len: *len,
            origin,
            mode,
            status,
        }))
    }
}

/// NAME, which must be a jsnap device.
fn jsnap(dm: &Dm, name: &str) -> R<JsnapDev> {
    match lookup(dm, name)? {
        Kind::Jsnap(j) => Ok(*j),
        Kind::View(v) => Err(Fail::Refused(format!(
            "{name} is a jsnap-view (of {}), not a jsnap device",
            v.origin
        ))),
    }
}

/// The views attached to the jsnap device `devnum`: (name, mode).
fn views_of(dm: &Dm, devnum: &str) -> R<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, _, _) in dm.list()? {
        let Ok(t) = dm.table(&n) else { continue };
        for (_, _, ty, params) in t {
            if ty == "jsnap-view" {
                if let Ok((origin, mode)) = table::parse_view_params(&params) {
                    if origin == devnum {
                        out.push((n.clone(), mode));
                    }
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn names(v: &[(String, String)]) -> String {
    v.iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses if NAME has views attached.
fn no_views(dm: &Dm, j: &JsnapDev, what: &str) -> R<()> {
    if j.js.views == 0 {
        return Ok(());
    }
    let v = views_of(dm, &j.devnum())?;
    Err(Fail::Refused(format!(
        "{} has {} open view(s){}: {what}",
        j.name,
        j.js.views,
        if v.is_empty() {
            String::new()
        } else {
            format!(" ({})", names(&v))
        }
    )))
}

fn name_free(dm: &Dm, name: &str) -> R<()> {
    table::check_name(name).map_err(Fail::Usage)?;
    if dm.devnum(name)?.is_some() {
        return Err(Fail::Refused(format!(
            "a device-mapper device named {name} already exists"
        )));
    }
    Ok(())
}

// ---- create ----------------------------------------------------------------------

fn create(a: CreateArgs) -> R<()> {
    table::check_name(&a.name).map_err(Fail::Usage)?;
    let chunk = table::check_chunk(a.chunk).map_err(Fail::Usage)?;
    let feat = FeatureOpts {
        format: a.format,
        high_watermark: a.high_watermark,
        low_watermark: a.low_watermark,
        destage_batch: a.destage_batch,
        hydrate_batch: a.hydrate_batch,
        no_destage: a.no_destage,
        relocated: a.relocated,
        bypass: a.bypass,
        compact: a.compact,
    };
    feat.validate().map_err(Fail::Usage)?;
    if a.length == Some(0) {
        return Err(Fail::Usage("--length must not be zero".to_string()));
    }
    let dm = dm()?;
    name_free(&dm, &a.name)?;

    let prod = dev::block_dev(&a.prod, "production").map_err(Fail::Refused)?;
    let jdev = dev::block_dev(&a.journal, "journal").map_err(Fail::Refused)?;
    let store = if a.store == "-" {
        None
    } else {
        Some(dev::block_dev(&a.store, "store").map_err(Fail::Refused)?)
    };
    if prod.kdev() == jdev.kdev() {
        return Err(Fail::Refused(format!(
            "production {} and journal {} are the same device",
            a.prod, a.journal
        )));
    }
    if let Some(s) = &store {
        if s.kdev() == prod.kdev() || s.kdev() == jdev.kdev() {
            return Err(Fail::Refused(format!(
                "store {} must differ from production and journal",
                a.store
            )));
        }
    }
    let len = a.length.unwrap_or(prod.sectors());
    if len == 0 {
        return Err(Fail::Refused(format!(
            "production device {} is empty",
            a.prod
        )));
    }
    if len > prod.sectors() {
        return Err(Fail::Refused(format!(
            "--length {len} is larger than production device {} ({} sectors)",
            a.prod,
            prod.sectors()
        )));
    }
    if let Some(s) = &store {
        if s.sectors() < len {
            return Err(Fail::Refused(format!(
                "store {} is too small: {} sectors ({}), the volume needs {len} ({})",
                a.store,
                s.sectors(),
                status::fmt_bytes(s.bytes),
                status::fmt_bytes(len * 512)
            )));
        }
    }
    if jdev.dax() == Some(false) {
        return Err(Fail::Refused(format!(
            "journal {} does not support DAX (it must be pmem in fsdax mode)",
            a.journal
        )));
    }
    let head = dev::read_head(&a.journal, journal::HEAD_BYTES).map_err(Fail::Refused)?;
    let content = journal::classify(&head);
    let want = journal::Want {
        prod_kdev: prod.kdev(),
        store_kdev: store.as_ref().map_or(0, |s| s.kdev()),
        len,
        chunk,
        journal_bytes: jdev.bytes & !4095,
        relocated: a.relocated,
    };
    let plan = journal::plan(&a.journal, &content, &want, a.format).map_err(Fail::Refused)?;

    let params = table::jsnap_params(
        &prod.devnum(),
        &jdev.devnum(),
        store.as_ref().map(|s| s.devnum()).as_deref(),
        chunk,
        &feat,
    );
    let (ma, mi) = dm.create(&a.name, &[(0, len, "jsnap".to_string(), params)])?;
    let journal_says = match plan {
        journal::Plan::Format => "formatted (--format)".to_string(),
        journal::Plan::Replay { snapshot, .. } => format!(
            "replayed{}",
            match snapshot {
                jsnap_logic::format::SnapState::None => "",
                jsnap_logic::format::SnapState::Active => ", snapshot active",
                jsnap_logic::format::SnapState::Invalid => ", snapshot invalid",
            }
        ),
    };
    println!(
        "created /dev/mapper/{} ({ma}:{mi}): {} ({len} sectors), {chunk}-sector chunks, journal {} {journal_says}, {}",
        a.name,
        status::fmt_bytes(len * 512),
        a.journal,
        match &store {
            Some(_) => format!("store {}", a.store),
            None => "no store".to_string(),
        }
    );
    Ok(())
}

// ---- snapshot, drop, view ----------------------------------------------------------

fn snapshot(name: &str) -> R<()> {
    let dm = dm()?;
    let j = jsnap(&dm, name)?;
    if j.params.store.is_none() {
        return Err(Fail::Refused(format!(
            "{name} has no store (created with --store -): it cannot take a snapshot"
        )));
    }
    if j.js.snapshot != "none" {
        return Err(Fail::Refused(format!(
            "{name} already has a snapshot ({}): jsnapctl drop {name} first",
            j.js.snapshot
        )));
    }
    no_views(&dm, &j, "remove them first")?;
    dm.message(name, "snapshot")?;
    println!("snapshot of {name} taken");
    Ok(())
}

fn changed(
    name: &str,
    previous: bool,
    first: u64,
    count: Option<u64>,
    sectors: bool,
    json: bool,
    since: Option<u64>,
) -> R<()> {
    let dm = dm()?;
    let j = jsnap(&dm, name)?;
    let chunk = u64::from(j.params.chunk);
    let nchunks = j.len.div_ceil(chunk);
    if first >= nchunks {
        return Err(Fail::Refused(format!(
            "--first {first} is beyond the last chunk of {name} ({})",
            nchunks - 1
        )));
    }
    if count == Some(0) {
        return Err(Fail::Refused("--count must be at least 1".to_string()));
    }
    let which = if previous { "previous" } else { "current" };
    let end = count.map_or(nchunks, |c| first.saturating_add(c).min(nchunks));
    // The kernel answers in pages when the runs do not fit its buffer:
    // each names where the next one starts.
    let mut ans = changes::Answer::default();
    let mut at = first;
    loop {
        let msg = format!("changed {which} {at} {}", end - at);
        let out = dm.message_out(name, &msg)?.unwrap_or_default();
        let next = ans
            .add_page(&out)
            .map_err(|e| Fail::Failed(format!("unexpected answer to '{msg}': {e}")))?;
        if let (Some(want), Some(got)) = (since, ans.since) {
            if want != got {
                return Err(Fail::Refused(format!(
                    "the {which} interval of {name} began with snapshot {got}, not {want}: a snapshot was taken since (an incremental copy from {want} is not possible)"
                )));
            }
        }
        match next {
            Some(n) if n > at && n < end => at = n,
            Some(n) => {
                return Err(Fail::Failed(format!("answer to '{msg}' goes on at {n}: not inside {at}..{end}")))
            }
            None => break,
        }
    }
    let unit = if sectors { chunk } else { 1 };
    if json {
        println!("{}", ans.to_json(which, chunk, first, end, unit, j.len));
    } else {
        println!(
            "# {name}: {} chunks of {chunk} sectors changed in the {which} interval (since snapshot {}), chunks {first}..{end}, {} runs ({})",
            ans.changed(),
            ans.since.unwrap_or(0),
            ans.runs.len(),
            if sectors { "sector start, sector count" } else { "chunk start, chunk count" }
        );
        let mut o = std::io::stdout().lock();
        for (s, l) in &ans.runs {
            // the last chunk may be partial: sector runs end at the volume's end
            let (a, n) = ans.unit_run(*s, *l, unit, j.len);
            if writeln!(o, "{a} {n}").is_err() {
                break;
            }
        }
    }
    Ok(())
}

fn export(name: &str, addr: &str, port: Option<u16>, nqn: Option<String>) -> R<()> {
    let l = nvmet::parse_listener(addr, port).map_err(Fail::Usage)?;
    let nqn = nqn.unwrap_or_else(|| nvmet::default_nqn(name));
    if !nvmet::valid_nqn(&nqn) {
        return Err(Fail::Usage(format!(
            "'{nqn}' is not a valid NQN (nqn. followed by letters, digits and .:-_)"
        )));
    }
    let dm = dm()?;
    let what = match lookup(&dm, name)? {
        Kind::Jsnap(_) => "jsnap device".to_string(),
        Kind::View(v) => format!("{} view of {}", v.mode, v.origin),
    };
    let device = format!("/dev/mapper/{name}");
    if !std::path::Path::new(&device).exists() {
        return Err(Fail::Refused(format!("{device} does not exist")));
    }
    let n = nvmet::Nvmet::open().map_err(Fail::Refused)?;
    if n.exported(&nqn) {
        return Err(Fail::Refused(format!(
            "{nqn} is already exported (device {}): jsnapctl unexport first",
            n.device_of(&nqn)
        )));
    }
    n.export(&nqn, &device, &l).map_err(Fail::Failed)?;
    println!(
        "exported {device} ({what}) as {nqn} on tcp {}:{} (on the other host: nvme connect -t tcp -a {} -s {} -n {nqn})",
        l.addr, l.port, l.addr, l.port
    );
    Ok(())
}

fn unexport(name: &str, nqn: Option<String>) -> R<()> {
    let n = nvmet::Nvmet::open().map_err(Fail::Refused)?;
    let device = format!("/dev/mapper/{name}");
    let nqns = match nqn {
        Some(q) => {
            if !nvmet::valid_nqn(&q) {
                return Err(Fail::Usage(format!("'{q}' is not a valid NQN")));
            }
            if !n.exported(&q) {
                return Err(Fail::Refused(format!("{q} is not exported")));
            }
            if n.device_of(&q) != device {
                return Err(Fail::Refused(format!(
                    "{q} exports {}, not {device}",
                    n.device_of(&q)
                )));
            }
            vec![q]
        }
        None => n.exports_of(&device),
    };
    if nqns.is_empty() {
        return Err(Fail::Refused(format!("{device} is not exported")));
    }
    for q in &nqns {
        let was: Vec<String> = n
            .listeners_of(q)
            .iter()
            .map(|l| format!("tcp {}:{}", l.addr, l.port))
            .collect();
        n.unexport(q).map_err(Fail::Failed)?;
        println!("unexported {device} ({q}, was on {})", if was.is_empty() { "no port".to_string() } else { was.join(", ") });
    }
    Ok(())
}

fn drop_snapshot(name: &str) -> R<()> {
    let dm = dm()?;
    let j = jsnap(&dm, name)?;
    if j.js.snapshot == "none" {
        return Err(Fail::Refused(format!("{name} has no snapshot")));
    }
    no_views(&dm, &j, "remove them first (jsnapctl remove VIEWNAME)")?;
    dm.message(name, "drop")?;
    println!("snapshot of {name} dropped");
    Ok(())
}

fn make_view(dm: &Dm, j: &JsnapDev, viewname: &str, mode: Mode) -> R<(u32, u32)> {
    let params = table::view_params(&j.devnum(), mode.name());
    Ok(dm.create(viewname, &[(0, j.len, "jsnap-view".to_string(), params)])?)
}

fn view(name: &str, viewname: &str, mode: Mode) -> R<()> {
    let dm = dm()?;
    name_free(&dm, viewname)?;
    let j = jsnap(&dm, name)?;
    match j.js.snapshot.as_str() {
        "active" => {}
        "none" => {
            return Err(Fail::Refused(format!(
                "{name} has no snapshot: jsnapctl snapshot {name} first"
            )))
        }
        s => {
            return Err(Fail::Refused(format!(
                "the snapshot of {name} is {s}: it cannot be viewed"
            )))
        }
    }
    let (ma, mi) = make_view(&dm, &j, viewname, mode)?;
    println!(
        "created /dev/mapper/{viewname} ({ma}:{mi}): {} view of the snapshot of {name}",
        mode.name()
    );
    Ok(())
}

// ---- hydrate, drain, progress --------------------------------------------------------

/// Progress output: a bar redrawn in place on a terminal, plain lines (at
/// most one a second) otherwise; on stdout (stderr is for the error line).
struct Render {
    tty: bool,
    label: String,
    unit: Unit,
    last: Option<Instant>,
    drawn: bool,
}

impl Render {
    fn new(label: String, unit: Unit) -> Render {
        Render {
            tty: std::io::stdout().is_terminal(),
            label,
            unit,
            last: None,
            drawn: false,
        }
    }

    fn update(&mut self, t: &Tracker, extra: &str, force: bool) {
        let mut out = std::io::stdout();
        if self.tty {
            let _ = write!(
                out,
                "\r{}\x1b[K",
                progress::tty_line(&self.label, t, self.unit, extra)
            );
            self.drawn = true;
        } else if force
            || self
                .last
                .is_none_or(|l| l.elapsed() >= Duration::from_secs(1))
        {
            let _ = writeln!(
                out,
                "{}",
                progress::plain_line(&self.label, t, self.unit, extra)
            );
            self.last = Some(Instant::now());
        }
        let _ = out.flush();
    }

    fn end(&mut self) {
        if self.tty && self.drawn {
            println!();
            self.drawn = false;
        }
    }
}

const POLL: Duration = Duration::from_millis(200);

fn read_status(dm: &Dm, name: &str) -> R<JsnapStatus> {
    Ok(jsnap(dm, name)?.js)
}

/// Waits until NAME's hydration is done, showing progress; fails if the
/// snapshot goes away or turns invalid, the device fails, hydration is
/// switched off, or `timeout` seconds pass (0: no limit).
fn wait_hydrated(dm: &Dm, j: &JsnapDev, timeout: u64) -> R<()> {
    let name = &j.name;
    let chunk_bytes = u64::from(j.params.chunk) * 512;
    let t0 = Instant::now();
    let mut tr = Tracker::new(j.js.chunks);
    let mut r = Render::new(format!("hydrate {name}"), Unit::Chunks(chunk_bytes));
    loop {
        let st = read_status(dm, name).inspect_err(|_| r.end())?;
        let now = t0.elapsed().as_secs_f64();
        tr.add(now, st.preserved, st.chunks);
        let done = st.hydration == "done";
        r.update(&tr, "", done);
        let stop = if st.snapshot != "active" {
            Some(format!(
                "the snapshot of {name} became {} while hydrating",
                st.snapshot
            ))
        } else if st.state == "failed" {
            Some(format!("{name} failed (state=failed) while hydrating"))
        } else if done {
            None
        } else if st.hydration == "off" {
            Some(format!(
                "hydration of {name} was switched off ({} of {} chunks copied)",
                st.preserved, st.chunks
            ))
        } else if timeout > 0 && t0.elapsed() >= Duration::from_secs(timeout) {
            Some(format!(
                "hydration of {name} not done after {timeout} s ({} of {} chunks)",
                st.preserved, st.chunks
            ))
        } else {
            std::thread::sleep(POLL);
            continue;
        };
        r.end();
        return match stop {
            Some(m) => Err(Fail::Wait(m)),
            None => {
                println!(
                    "hydration of {name} done: {} chunks ({}) in the store, in {:.1} s",
                    st.chunks,
                    status::fmt_bytes(st.chunks * chunk_bytes),
                    t0.elapsed().as_secs_f64()
                );
                Ok(())
            }
        };
    }
}

fn hydrate(name: &str, state: OnOff, wait: bool, timeout: u64) -> R<()> {
    if wait && state == OnOff::Off {
        return Err(Fail::Usage(
            "--wait goes with 'hydrate NAME on'".to_string(),
        ));
    }
    let dm = dm()?;
    let j = jsnap(&dm, name)?;
    if j.js.snapshot != "active" {
        return Err(Fail::Refused(format!(
            "{name} has no active snapshot (snapshot={}): nothing to hydrate",
            j.js.snapshot
        )));
    }
    let word = if state == OnOff::On { "on" } else { "off" };
    dm.message(name, &format!("hydrate {word}"))?;
    println!("hydration of {name} switched {word}");
    if wait {
        wait_hydrated(&dm, &j, timeout)?;
    }
    Ok(())
}

fn drain(name: &str, wait: bool) -> R<()> {
    let dm = dm()?;
    let j = jsnap(&dm, name)?;
    if !wait {
        dm.message(name, "drain")?;
        println!("journal of {name} drained");
        return Ok(());
    }
    // The message returns once the journal is empty: send it from a
    // thread and show the journal emptying meanwhile.
    let owned = name.to_string();
    let sender = std::thread::spawn(move || -> Result<(), String> {
        let dm = Dm::open()?;
        dm.message(&owned, "drain").map_err(|e| e.line())
    });
    let t0 = Instant::now();
    let initial = j.js.journal_used;
    let mut tr = Tracker::new(initial);
    let mut r = Render::new(format!("drain {name}"), Unit::Bytes);
    loop {
        let finished = sender.is_finished();
        match read_status(&dm, name) {
            Ok(st) => {
                let top = initial.max(st.journal_used);
                tr.add(t0.elapsed().as_secs_f64(), top - st.journal_used, top);
                r.update(&tr, &format!("pending {}", st.pending), finished);
            }
            Err(e) if finished => {
                r.end();
                return Err(e);
            }
            Err(_) => {}
        }
        if finished {
            break;
        }
        std::thread::sleep(POLL);
    }
    r.end();
    match sender.join() {
        Ok(Ok(())) => {}
        Ok(Err(m)) => return Err(Fail::Failed(m)),
        Err(_) => return Err(Fail::Failed("the drain thread panicked".to_string())),
    }
    let st = read_status(&dm, name)?;
    if st.pending != 0 {
        return Err(Fail::Wait(format!(
            "{name} still has {} journal records pending after drain",
            st.pending
        )));
    }
    println!(
        "journal of {name} drained: pending=0, {} destaged since load, in {:.1} s",
        status::fmt_bytes(st.destaged_bytes),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---- status -------------------------------------------------------------------------

fn show_status(name: &str, json: bool) -> R<()> {
    let dm = dm()?;
    match lookup(&dm, name)? {
        Kind::Jsnap(j) => {
            if json {
                let extra = [
                    ("name", Val::Str(j.name.clone())),
                    ("target", Val::Str("jsnap".to_string())),
                    ("device", Val::Str(j.devnum())),
                    ("sectors", Val::Num(j.len)),
                    ("chunk_sectors", Val::Num(u64::from(j.params.chunk))),
                ];
                println!("{}", j.status.to_json(&extra));
            } else {
                let views = if j.js.views > 0 {
                    views_of(&dm, &j.devnum())?
                } else {
                    Vec::new()
                };
                let devnum = j.devnum();
                let d = status::Describe {
                    name: &j.name,
                    devnum: &devnum,
                    sectors: j.len,
                    chunk_sectors: j.params.chunk,
                    table: &j.table_line,
                    store: j.params.store.is_some(),
                    views: &views,
                };
                println!("{}", status::human(&d, &j.js));
            }
        }
        Kind::View(v) => {
            let origin = dm
                .list()?
                .into_iter()
                .find(|(_, ma, mi)| format!("{ma}:{mi}") == v.origin)
                .map(|(n, _, _)| n);
            if json {
                let mut extra = vec![
                    ("name", Val::Str(v.name.clone())),
                    ("target", Val::Str("jsnap-view".to_string())),
                    ("device", Val::Str(format!("{}:{}", v.major, v.minor))),
                    ("sectors", Val::Num(v.len)),
                    ("origin", Val::Str(v.origin.clone())),
                ];
                if let Some(o) = &origin {
                    extra.push(("origin_name", Val::Str(o.clone())));
                }
                println!("{}", v.status.to_json(&extra));
            } else {
                let active = v.status.num("snapshot_active") == Some(1);
                println!(
                    "{}: /dev/mapper/{} ({}:{}), {}, {} view of the snapshot of {} ({}), snapshot {}",
                    v.name,
                    v.name,
                    v.major,
                    v.minor,
                    status::fmt_bytes(v.len * 512),
                    v.mode,
                    origin.as_deref().unwrap_or("?"),
                    v.origin,
                    if active { "active" } else { "NOT active (reads fail)" }
                );
            }
        }
    }
    Ok(())
}

// ---- split ----------------------------------------------------------------------------

fn split(name: &str, viewname: &str, wait: bool, timeout: u64) -> R<()> {
    let dm = dm()?;
    name_free(&dm, viewname)?;
    let j = jsnap(&dm, name)?;
    if j.params.store.is_none() {
        return Err(Fail::Refused(format!(
            "{name} has no store (created with --store -): it cannot be split"
        )));
    }
    if j.js.snapshot != "none" {
        return Err(Fail::Refused(format!(
            "{name} already has a snapshot ({}): a split takes a new one (jsnapctl drop {name} first)",
            j.js.snapshot
        )));
    }
    no_views(&dm, &j, "remove them first")?;
    // 1. the split instant
    dm.message(name, "snapshot")?;
    // 2. volume A: the mirror view (old work goes on there; its writes reach B too)
    if let Err(e) = make_view(&dm, &j, viewname, Mode::Mirror) {
        let undo = match dm.message(name, "drop") {
            Ok(()) => "the snapshot was dropped again".to_string(),
            Err(d) => format!("dropping the snapshot again failed too: {}", d.line()),
        };
        return Err(Fail::Failed(format!("{} ({undo})", e.msg())));
    }
    // 3. A becomes a full copy in the store
    if let Err(e) = dm.message(name, "hydrate on") {
        return Err(Fail::Failed(format!(
            "{} (split done, /dev/mapper/{viewname} exists, but hydration did not start)",
            e.line()
        )));
    }
    println!(
        "split {name}: snapshot taken; volume A = /dev/mapper/{viewname} (mirror: its writes reach {name} too), \
         volume B = /dev/mapper/{name} (its writes never reach A); hydrating"
    );
    if wait {
        wait_hydrated(&dm, &j, timeout)?;
        println!("/dev/mapper/{viewname} is a full copy: back it up, then jsnapctl remove {viewname}; jsnapctl drop {name}");
    }
    Ok(())
}

// ---- remove ---------------------------------------------------------------------------

fn remove_one(dm: &Dm, name: &str) -> R<()> {
    dm.remove(name).map_err(|e| {
        if e.errno == Some(nix::errno::Errno::EBUSY) {
            Fail::Failed(format!(
                "remove {name}: the device is open (mounted or held by a program)"
            ))
        } else {
            e.into()
        }
    })
}

fn remove(name: &str, with_views: bool) -> R<()> {
    let dm = dm()?;
    match lookup(&dm, name)? {
        Kind::View(v) => {
            remove_one(&dm, name)?;
            println!("removed view {name} (of {})", v.origin);
        }
        Kind::Jsnap(j) => {
            let views = views_of(&dm, &j.devnum())?;
            if j.js.views > 0 || !views.is_empty() {
                if !with_views {
                    return Err(Fail::Refused(format!(
                        "{name} has {} open view(s){}: remove them first, or use --views",
                        j.js.views.max(views.len() as u64),
                        if views.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", names(&views))
                        }
                    )));
                }
                if (views.len() as u64) < j.js.views {
                    return Err(Fail::Refused(format!(
                        "{name} has {} attached view(s) but only {} found ({}): remove them by hand",
                        j.js.views,
                        views.len(),
                        names(&views)
                    )));
                }
                for (v, _) in &views {
                    remove_one(&dm, v)?;
                    println!("removed view {v}");
                }
            }
            remove_one(&dm, name)?;
            if j.js.pending > 0 {
                println!(
                    "removed {name} ({} journal records stay on {}: creating it again replays them)",
                    j.js.pending, j.params.journal
                );
            } else {
                println!("removed {name}");
            }
        }
    }
    Ok(())
}
