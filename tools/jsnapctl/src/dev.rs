//! Block devices as `create` checks them, the journal's first bytes, the
//! kernel log's reasons, and /dev/mapper nodes (the guests run no udev).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

/// A block device named on the command line.
#[derive(Clone, Debug)]
pub struct BlockDev {
    pub major: u32,
    pub minor: u32,
    pub bytes: u64,
}

impl BlockDev {
    pub fn sectors(&self) -> u64 {
        self.bytes / 512
    }

    pub fn devnum(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }

    pub fn kdev(&self) -> u32 {
        crate::journal::kdev(self.major, self.minor)
    }

    fn sysfs(&self, rel: &str) -> Option<String> {
        fs::read_to_string(format!(
            "/sys/dev/block/{}:{}/{rel}",
            self.major, self.minor
        ))
        .ok()
        .map(|s| s.trim().to_string())
    }

    /// Whether the device supports DAX (None if sysfs does not say).
    pub fn dax(&self) -> Option<bool> {
        self.sysfs("queue/dax").map(|s| s == "1")
    }
}

/// Opens `path` as the `role` device ("production", "journal", "store"):
/// it must exist and be a block device; its size is read.
pub fn block_dev(path: &str, role: &str) -> Result<BlockDev, String> {
    let md = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{role} device {path} does not exist"),
        _ => format!("{role} device {path}: {e}"),
    })?;
    if !md.file_type().is_block_device() {
        return Err(format!("{role} device {path} is not a block device"));
    }
    let rdev = md.rdev();
    let (major, minor) = (
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    );
    let mut f = File::open(path).map_err(|e| format!("{role} device {path}: cannot open: {e}"))?;
    let bytes = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{role} device {path}: cannot read its size: {e}"))?;
    Ok(BlockDev {
        major,
        minor,
        bytes,
    })
}

/// The first `n` bytes of a device, read with O_DIRECT: the module writes
/// the journal through its DAX mapping, which the block device's page cache
/// does not see.
pub fn read_head(path: &str, n: usize) -> Result<Vec<u8>, String> {
    const ALIGN: usize = 4096;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("journal {path}: cannot open: {e}"))?;
    let len = n.next_multiple_of(ALIGN);
    let mut buf = vec![0u8; len + ALIGN];
    let off = buf.as_ptr().align_offset(ALIGN);
    let mut got = 0;
    {
        let area = &mut buf[off..off + len];
        while got < len {
            match f.read(&mut area[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("journal {path}: cannot read its superblock: {e}")),
            }
        }
    }
    Ok(buf[off..off + got.min(n)].to_vec())
}

// ---- the kernel log -----------------------------------------------------------

/// Reads the kernel log records written after it was created: the module
/// and dm say there why a table line or a message was refused (the ioctl
/// only returns an errno).
pub struct Kmsg {
    f: Option<File>,
}

impl Kmsg {
    pub fn start() -> Kmsg {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()
            .and_then(|mut f| f.seek(SeekFrom::End(0)).ok().map(|_| f));
        Kmsg { f }
    }

    /// The new records: (log level, first line of text).
    pub fn lines(&mut self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        let Some(f) = self.f.as_mut() else { return out };
        let mut buf = vec![0u8; 8192];
        for _ in 0..10000 {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(r) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                        out.push(r);
                    }
                }
                // overwritten records: go on with the next
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break, // EAGAIN: nothing more
            }
        }
        out
    }

    /// The module's (or dm's) reason among the new records, if any.
    pub fn reason(&mut self) -> Option<String> {
        let lines = self.lines();
        pick_reason(&lines)
    }
}

/// A /dev/kmsg record, `prio,seq,usec,flags[,...];text` (continuation
/// lines after it): (log level, text).
pub fn parse_record(rec: &str) -> Option<(u32, String)> {
    let (head, text) = rec.split_once(';')?;
    let prio: u32 = head.split(',').next()?.parse().ok()?;
    Some((prio & 7, text.lines().next().unwrap_or("").to_string()))
}

/// The last jsnap-related error (log level err or worse) among kernel log
/// records, cleaned of its prefixes: `device-mapper: table: 253:3: jsnap:
/// Journal ... (-EINVAL)` gives `Journal ...`; `dm-jsnap: snapshot refused:
/// ...` gives `snapshot refused: ...`.
pub fn pick_reason(lines: &[(u32, String)]) -> Option<String> {
    let mut best: Option<String> = None;
    for (level, l) in lines {
        if *level > 3 {
            continue;
        }
        let l = l.trim();
        let cleaned = ["jsnap-view: ", "dm-jsnap: ", ": jsnap: "]
            .iter()
            .find_map(|p| l.find(p).map(|i| &l[i + p.len()..]));
        if let Some(c) = cleaned {
            // dm's " (-EINVAL)", or " (-22)" without symbolic errnos
            let c = match c.rfind(" (-") {
                Some(i)
                    if c.ends_with(')')
                        && c[i + 3..c.len() - 1]
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric()) =>
                {
                    &c[..i]
                }
                _ => c,
            };
            best = Some(c.to_string());
        }
    }
    best
}

// ---- /dev/mapper nodes --------------------------------------------------------

fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

pub fn mapper_path(name: &str) -> PathBuf {
    Path::new("/dev/mapper").join(name)
}

/// Makes /dev/mapper/NAME a block node of `major:minor`: udev makes it when
/// it runs (waited for briefly); otherwise it is made here, as libdevmapper
/// does without udev.
pub fn ensure_node(name: &str, major: u32, minor: u32) -> Result<(), String> {
    let p = mapper_path(name);
    let want = makedev(major as u64, minor as u64);
    let good = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.file_type().is_block_device() && m.rdev() == want)
            .unwrap_or(false)
    };
    if udev_running() {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if good(&p) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if good(&p) {
        return Ok(());
    }
    let _ = fs::create_dir_all("/dev/mapper");
    if fs::symlink_metadata(&p).is_ok() {
        fs::remove_file(&p).map_err(|e| format!("cannot replace stale {}: {e}", p.display()))?;
    }
    mknod(&p, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), want)
        .map_err(|e| format!("cannot create {}: {e}", p.display()))
}

/// Removes a node left at /dev/mapper/NAME after the device is gone (udev
/// removes its own links).
pub fn remove_node(name: &str) {
    let p = mapper_path(name);
    if let Ok(m) = fs::symlink_metadata(&p) {
        if m.file_type().is_block_device() {
            let _ = fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<(u32, String)> {
        l.iter().map(|s| parse_record(s).unwrap()).collect()
    }

    #[test]
    fn reasons_from_the_kernel_log() {
        assert_eq!(
            pick_reason(&v(&[
                "3,1201,55123,-;device-mapper: table: 253:3: jsnap: Journal was formatted with another chunk size (-EINVAL)",
                "3,1202,55124,-;device-mapper: ioctl: error adding target to table",
            ])),
            Some("Journal was formatted with another chunk size".to_string())
        );
        assert_eq!(
            pick_reason(&v(&[
                "3,7,1,-;dm-jsnap: snapshot refused: a jsnap-view is open\n SUBSYSTEM=x"
            ])),
            Some("snapshot refused: a jsnap-view is open".to_string())
        );
        assert_eq!(
            pick_reason(&v(&["11,9,1,c;device-mapper: table: 253:4: jsnap-view: No active snapshot on this jsnap device (-EINVAL)"])),
            Some("No active snapshot on this jsnap device".to_string())
        );
        assert_eq!(
            pick_reason(&v(&[
                "6,3,1,-;dm-jsnap: replayed 3 journal records",
                "3,4,1,-;random line"
            ])),
            None
        );
        assert_eq!(
            pick_reason(&v(&["3,5,1,-;device-mapper: table: 253:0: jsnap: Asynchronous DAX (e.g. virtio-pmem) cannot hold the journal (-95)"])),
            Some("Asynchronous DAX (e.g. virtio-pmem) cannot hold the journal".to_string())
        );
        assert_eq!(pick_reason(&[]), None);
    }
}
