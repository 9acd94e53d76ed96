//! Every device-mapper ioctl of the tool, through the devicemapper crate:
//! create, table load, resume, message, status, table, list, remove.

use devicemapper::{errors, DevId, DmError, DmFlags, DmName, DmOptions, DM};
use nix::errno::Errno;

use crate::dev::{self, Kmsg};

/// A target of a table: (start, length, type, parameters).
pub type Target = (u64, u64, String, String);

/// An ioctl that failed: what was asked, the errno, and the kernel's reason
/// from its log when it gave one.
#[derive(Debug)]
pub struct IoctlError {
    pub what: String,
    pub errno: Option<Errno>,
    pub reason: Option<String>,
    pub detail: String,
}

impl IoctlError {
    fn new(what: String, e: DmError, reason: Option<String>) -> IoctlError {
        let errno = match &e {
            DmError::Core(errors::Error::Ioctl(_, _, _, err)) => Some(**err),
            _ => None,
        };
        IoctlError {
            what,
            errno,
            reason,
            detail: e.to_string(),
        }
    }

    /// One line: what failed and why (the kernel's reason, else the errno).
    pub fn line(&self) -> String {
        match (&self.reason, self.errno) {
            (Some(r), _) => format!("{}: {r}", self.what),
            (None, Some(e)) => format!("{}: {}", self.what, e.desc()),
            (None, None) => format!(
                "{}: {}",
                self.what,
                self.detail.lines().next().unwrap_or("")
            ),
        }
    }
}

pub struct Dm {
    dm: DM,
}

fn dm_name(name: &str) -> Result<&DmName, String> {
    DmName::new(name).map_err(|_| format!("'{name}' is not a valid device-mapper name"))
}

impl Dm {
    pub fn open() -> Result<Dm, String> {
        DM::new().map(|dm| Dm { dm }).map_err(|e| {
            let why = match e {
                DmError::Core(errors::Error::ContextInit(io)) => io,
                other => other.to_string(),
            };
            format!(
                "cannot open /dev/mapper/control: {why} (is device-mapper loaded? are you root?)"
            )
        })
    }

    /// (major, minor) of a device, None if there is no device of that name.
    pub fn devnum(&self, name: &str) -> Result<Option<(u32, u32)>, IoctlError> {
        let n = match dm_name(name) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        match self.dm.device_info(&DevId::Name(n)) {
            Ok(info) => {
                let d = info.device();
                Ok(Some((d.major, d.minor)))
            }
            Err(e) => {
                let err = IoctlError::new(format!("info {name}"), e, None);
                if err.errno == Some(Errno::ENXIO) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    fn targets(&self, name: &str, table: bool) -> Result<Vec<Target>, IoctlError> {
        let n = dm_name(name).map_err(|d| IoctlError {
            what: name.to_string(),
            errno: None,
            reason: None,
            detail: d,
        })?;
        let opts = if table {
            DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE)
        } else {
            DmOptions::default()
        };
        let what = format!("{} {name}", if table { "table" } else { "status" });
        self.dm
            .table_status(&DevId::Name(n), opts)
            .map(|(_, t)| t)
            .map_err(|e| IoctlError::new(what, e, None))
    }

    /// The active table (`dmsetup table`).
    pub fn table(&self, name: &str) -> Result<Vec<Target>, IoctlError> {
        self.targets(name, true)
    }

    /// The status of the active table (`dmsetup status`).
    pub fn status(&self, name: &str) -> Result<Vec<Target>, IoctlError> {
        self.targets(name, false)
    }

    /// Every dm device: (name, major, minor).
    pub fn list(&self) -> Result<Vec<(String, u32, u32)>, IoctlError> {
        self.dm
            .list_devices()
            .map(|l| {
                l.into_iter()
                    .map(|(n, d, _)| (n.to_string(), d.major, d.minor))
                    .collect()
            })
            .map_err(|e| IoctlError::new("list devices".to_string(), e, None))
    }

    /// Creates NAME with `targets` and activates it (create, table load,
    /// resume), then makes /dev/mapper/NAME.  If the table is refused the
    /// empty device is removed again, and the error carries the kernel's
    /// reason.
    pub fn create(&self, name: &str, targets: &[Target]) -> Result<(u32, u32), IoctlError> {
        let n = dm_name(name).map_err(|d| IoctlError {
            what: format!("create {name}"),
            errno: None,
            reason: None,
            detail: d,
        })?;
        let id = DevId::Name(n);
        let mut log = Kmsg::start();
        let info = self
            .dm
            .device_create(n, None, DmOptions::default())
            .map_err(|e| IoctlError::new(format!("create {name}"), e, log.reason()))?;
        let undo = |what: String, e: DmError, log: &mut Kmsg| {
            let reason = log.reason();
            let _ = self.dm.device_remove(&id, DmOptions::default());
            dev::remove_node(name);
            IoctlError::new(what, e, reason)
        };
        if let Err(e) = self.dm.table_load(&id, targets, DmOptions::default()) {
            return Err(undo(
                "the kernel refused the table".to_string(),
                e,
                &mut log,
            ));
        }
        if let Err(e) = self.dm.device_suspend(&id, DmOptions::default()) {
            return Err(undo("activation (resume) failed".to_string(), e, &mut log));
        }
        let d = info.device();
        if let Err(msg) = dev::ensure_node(name, d.major, d.minor) {
            return Err(IoctlError {
                what: format!("{name} is active, but"),
                errno: None,
                reason: Some(msg),
                detail: String::new(),
            });
        }
        Ok((d.major, d.minor))
    }

    /// Sends a target message to the jsnap target of NAME (`dmsetup message
    /// NAME <its start sector> MSG`), which may sit anywhere in the table.
    pub fn message(&self, name: &str, msg: &str) -> Result<(), IoctlError> {
        self.message_out(name, msg).map(|_| ())
    }

    /// [`Dm::message`], returning what the target answered (if anything).
    pub fn message_out(&self, name: &str, msg: &str) -> Result<Option<String>, IoctlError> {
        let n = dm_name(name).map_err(|d| IoctlError {
            what: format!("message {name}"),
            errno: None,
            reason: None,
            detail: d,
        })?;
        let sector = self
            .table(name)?
            .iter()
            .find(|t| t.2 == "jsnap")
            .map_or(0, |t| t.0);
        let mut log = Kmsg::start();
        self.dm
            .target_msg(&DevId::Name(n), Some(sector), msg)
            .map(|(_, out)| out)
            .map_err(|e| IoctlError::new(format!("'{msg}' refused"), e, log.reason()))
    }

    /// Removes NAME (retried briefly while busy) and its /dev/mapper node.
    pub fn remove(&self, name: &str) -> Result<(), IoctlError> {
        let n = dm_name(name).map_err(|d| IoctlError {
            what: format!("remove {name}"),
            errno: None,
            reason: None,
            detail: d,
        })?;
        let mut log = Kmsg::start();
        self.dm
            .device_remove(&DevId::Name(n), DmOptions::default())
            .map_err(|e| IoctlError::new(format!("remove {name}"), e, log.reason()))?;
        dev::remove_node(name);
        Ok(())
    }
}
