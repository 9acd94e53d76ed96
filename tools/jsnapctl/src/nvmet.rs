//! Exporting a jsnap or jsnap-view device through the kernel NVMe target
//! (nvmet, configured through configfs), for a second host to connect to
//! with `nvme connect -t tcp` (README, "A second host over NVMe/TCP").
//!
//! One subsystem per exported device (namespace 1 = `/dev/mapper/NAME`,
//! any host allowed), linked to a TCP port: an existing port with the same
//! address and service id is shared, otherwise a new one is made.  Removing
//! the export takes the subsystem off every port, disables and removes the
//! namespace and the subsystem, and removes a port only when it made it
//! empty.

use std::fs;
use std::path::{Path, PathBuf};

/// The configfs directory of nvmet.
pub const ROOT: &str = "/sys/kernel/config/nvmet";

/// The NQN jsnapctl gives the export of NAME.
pub fn default_nqn(name: &str) -> String {
    format!("nqn.2026-12.dev.jsnap:{name}")
}

/// Whether `nqn` is acceptable to nvmet (and safe as a configfs name).
pub fn valid_nqn(nqn: &str) -> bool {
    nqn.starts_with("nqn.")
        && nqn.len() <= 223
        && nqn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-_".contains(&b))
}

/// An nvmet TCP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub addr: String,
    pub port: u16,
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default().trim().to_string()
}

fn write(p: &Path, v: &str) -> Result<(), String> {
    fs::write(p, v).map_err(|e| format!("cannot write '{v}' to {}: {e}", p.display()))
}

/// The nvmet configuration tree, at `root`.
pub struct Nvmet {
    root: PathBuf,
    /// A plain directory standing in for configfs (host tests): `mkdir`
    /// makes the default groups configfs would, `rmdir` removes the
    /// attribute files too.
    emulate: bool,
}

impl Nvmet {
    /// The kernel's, mounting configfs if it is not mounted; `Err` says
    /// what is missing.
    pub fn open() -> Result<Self, String> {
        let root = PathBuf::from(ROOT);
        if !root.is_dir() && Path::new("/sys/kernel/config").is_dir() {
            // configfs not mounted yet? (mount's own messages are not ours)
            let _ = std::process::Command::new("mount")
                .args(["-t", "configfs", "none", "/sys/kernel/config"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        if !root.is_dir() {
            return Err(format!(
                "{ROOT} does not exist: the kernel has no NVMe target (load nvmet and nvmet-tcp)"
            ));
        }
        Ok(Self {
            root,
            emulate: false,
        })
    }

    #[cfg(test)]
    pub fn at(root: PathBuf) -> Self {
        Self {
            root,
            emulate: true,
        }
    }

    /// Makes configfs group `p`, with (emulated) its default groups.
    fn mkdir(&self, p: &Path, groups: &[&str]) -> Result<(), String> {
        fs::create_dir(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        if self.emulate {
            for g in groups {
                let _ = fs::create_dir(p.join(g));
            }
        }
        Ok(())
    }

    fn rmdir(&self, p: &Path) -> Result<(), String> {
        let r = if self.emulate {
            fs::remove_dir_all(p)
        } else {
            fs::remove_dir(p)
        };
        r.map_err(|e| format!("cannot remove {}: {e}", p.display()))
    }

    fn subsys(&self, nqn: &str) -> PathBuf {
        self.root.join("subsystems").join(nqn)
    }

    fn ports(&self) -> Vec<(u32, PathBuf)> {
        let mut v: Vec<(u32, PathBuf)> = fs::read_dir(self.root.join("ports"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .collect();
        v.sort();
        v
    }

    /// Whether subsystem `nqn` exists.
    pub fn exported(&self, nqn: &str) -> bool {
        self.subsys(nqn).is_dir()
    }

    /// The device path of namespace 1 of `nqn`.
    pub fn device_of(&self, nqn: &str) -> String {
        read(&self.subsys(nqn).join("namespaces/1/device_path"))
    }

    /// The subsystems exporting `device` (by device path).
    pub fn exports_of(&self, device: &str) -> Vec<String> {
        fs::read_dir(self.root.join("subsystems"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| self.device_of(n) == device)
            .collect()
    }

    /// The TCP listeners `nqn` is linked to.
    pub fn listeners_of(&self, nqn: &str) -> Vec<Listener> {
        self.ports()
            .into_iter()
            .filter(|(_, p)| p.join("subsystems").join(nqn).exists())
            .filter_map(|(_, p)| {
                Some(Listener {
                    addr: read(&p.join("addr_traddr")),
                    port: read(&p.join("addr_trsvcid")).parse().ok()?,
                })
            })
            .collect()
    }

    /// Exports `device` as subsystem `nqn` on `l`.  On failure, what was
    /// made is taken down again.
    pub fn export(&self, nqn: &str, device: &str, l: &Listener) -> Result<(), String> {
        let s = self.subsys(nqn);
        self.mkdir(&s, &["namespaces", "allowed_hosts"])?;
        let res = (|| {
            write(&s.join("attr_allow_any_host"), "1")?;
            let ns = s.join("namespaces/1");
            self.mkdir(&ns, &[])?;
            write(&ns.join("device_path"), device)?;
            write(&ns.join("enable"), "1")?;
            let (port, made) = self.port_for(l)?;
            std::os::unix::fs::symlink(&s, port.join("subsystems").join(nqn)).map_err(|e| {
                if made {
                    // the port this export made goes with it
                    let _ = self.rmdir(&port);
                }
                format!("cannot link {nqn} to port {}: {e}", port.display())
            })
        })();
        if let Err(e) = res {
            let _ = self.unexport(nqn);
            return Err(e);
        }
        Ok(())
    }

    /// The port listening on `l`: an existing one, or a new one (`true`).
    fn port_for(&self, l: &Listener) -> Result<(PathBuf, bool), String> {
        let ports = self.ports();
        for (_, p) in &ports {
            if read(&p.join("addr_trtype")) == "tcp"
                && read(&p.join("addr_traddr")) == l.addr
                && read(&p.join("addr_trsvcid")) == l.port.to_string()
            {
                return Ok((p.clone(), false));
            }
        }
        let id = ports.last().map_or(1, |(i, _)| i + 1);
        let p = self.root.join("ports").join(id.to_string());
        self.mkdir(&p, &["subsystems", "referrals"])?;
        let fam = if l.addr.contains(':') { "ipv6" } else { "ipv4" };
        let res = (|| {
            write(&p.join("addr_trtype"), "tcp")?;
            write(&p.join("addr_adrfam"), fam)?;
            write(&p.join("addr_traddr"), &l.addr)?;
            write(&p.join("addr_trsvcid"), &l.port.to_string())
        })();
        if let Err(e) = res {
            let _ = self.rmdir(&p);
            return Err(e);
        }
        Ok((p, true))
    }

    /// Takes subsystem `nqn` down: off every port (a port left empty that
    /// way is removed), namespace disabled and removed, subsystem removed.
    pub fn unexport(&self, nqn: &str) -> Result<(), String> {
        for (_, p) in self.ports() {
            let link = p.join("subsystems").join(nqn);
            if link.symlink_metadata().is_ok() {
                fs::remove_file(&link)
                    .map_err(|e| format!("cannot unlink {}: {e}", link.display()))?;
                let empty = fs::read_dir(p.join("subsystems"))
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                if empty {
                    let _ = self.rmdir(&p);
                }
            }
        }
        let s = self.subsys(nqn);
        let ns = s.join("namespaces/1");
        if ns.is_dir() {
            let _ = write(&ns.join("enable"), "0");
            self.rmdir(&ns)?;
        }
        if s.is_dir() {
            self.rmdir(&s)?;
        }
        Ok(())
    }
}

/// Parses `ADDR` or `ADDR:PORT` (IPv6 in brackets with a port); the default
/// port is 4420.
pub fn parse_listener(s: &str, port: Option<u16>) -> Result<Listener, String> {
    let (addr, p) = if let Some(rest) = s.strip_prefix('[') {
        let (a, tail) = rest.split_once(']').ok_or(format!("bad address '{s}'"))?;
        (a, tail.strip_prefix(':'))
    } else if s.matches(':').count() == 1 {
        let (a, p) = s.split_once(':').unwrap_or((s, ""));
        (a, Some(p))
    } else {
        (s, None)
    };
    if addr.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("'{addr}' is not an IP address"));
    }
    let port = match (p, port) {
        (Some(_), Some(_)) => return Err("the port is given twice (ADDR:PORT and --port)".into()),
        (Some(p), None) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or(format!("bad port '{p}'"))?,
        (None, Some(p)) if p > 0 => p,
        (None, Some(_)) => return Err("bad port 0".into()),
        (None, None) => 4420,
    };
    Ok(Listener {
        addr: addr.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_nqns() {
        assert_eq!(
            parse_listener("10.0.0.1", None),
            Ok(Listener { addr: "10.0.0.1".into(), port: 4420 })
        );
        assert_eq!(parse_listener("10.0.0.1:4421", None).unwrap().port, 4421);
        assert_eq!(parse_listener("[::1]:9", None).unwrap().addr, "::1");
        assert_eq!(parse_listener("::1", Some(7)).unwrap().port, 7);
        for bad in ["host", "10.0.0.1:x", "10.0.0.1:0", "[::1", "1.2.3"] {
            assert!(parse_listener(bad, None).is_err(), "{bad}");
        }
        assert!(parse_listener("10.0.0.1:1", Some(2)).is_err());
        assert!(valid_nqn(&default_nqn("snap-1")));
        assert!(!valid_nqn("nqn.x/y"));
        assert!(!valid_nqn("iqn.x"));
    }

    /// The configfs tree as plain directories: export makes the subsystem,
    /// namespace and port; a second export on the same listener shares the
    /// port; unexport takes down only what it made.
    #[test]
    fn export_tree() {
        let root = std::env::temp_dir().join(format!("jsnapctl-nvmet-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("subsystems")).unwrap();
        fs::create_dir_all(root.join("ports")).unwrap();
        let n = Nvmet::at(root.clone());
        let l = Listener { addr: "10.0.0.1".into(), port: 4420 };
        let (a, b) = (default_nqn("a"), default_nqn("b"));
        n.export(&a, "/dev/mapper/a", &l).unwrap();
        assert!(n.exported(&a));
        assert_eq!(n.device_of(&a), "/dev/mapper/a");
        assert_eq!(read(&root.join("subsystems").join(&a).join("namespaces/1/enable")), "1");
        assert_eq!(read(&root.join("ports/1/addr_trtype")), "tcp");
        assert_eq!(read(&root.join("ports/1/addr_adrfam")), "ipv4");
        assert_eq!(n.listeners_of(&a), vec![l.clone()]);
        n.export(&b, "/dev/mapper/b", &l).unwrap();
        assert!(!root.join("ports/2").exists(), "the listener's port is shared");
        let other = Listener { addr: "10.0.0.1".into(), port: 4421 };
        let c = default_nqn("c");
        n.export(&c, "/dev/mapper/a", &other).unwrap();
        assert_eq!(read(&root.join("ports/2/addr_trsvcid")), "4421");
        let mut ex = n.exports_of("/dev/mapper/a");
        ex.sort();
        assert_eq!(ex, vec![a.clone(), c.clone()]);
        // a second export of the same NQN is refused and changes nothing
        assert!(n.export(&a, "/dev/mapper/x", &l).is_err());
        assert_eq!(n.device_of(&a), "/dev/mapper/a");
        n.unexport(&a).unwrap();
        assert!(!n.exported(&a));
        assert!(root.join("ports/1").exists(), "b still listens there");
        n.unexport(&b).unwrap();
        n.unexport(&c).unwrap();
        assert!(!root.join("ports/1").exists() && !root.join("ports/2").exists());
        assert_eq!(fs::read_dir(root.join("subsystems")).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }
}
