// SPDX-License-Identifier: GPL-2.0

//! The underlying devices of a target instance, owned by a per-target set
//! that the registration revokes after `dtr` (as `Devres` ties a driver's
//! resources to its binding).
//!
//! `dm_get_device` references must be put while their `struct dm_target`
//! exists.  A [`DmDev`] therefore never leaves this layer by value: the
//! constructor opens devices into its [`Ctr`](super::dm::Ctr), which hands
//! back a [`DevId`]; the target keeps the ids and an `Arc<DevSet>`, and
//! reaches the devices only by reference through a [`Devices`] guard (an
//! SRCU read section, see [`super::revocable`]).  `dtr_cb` revokes the set
//! after the target's `dtr`, while `ti` is still valid: the references are
//! put there and then, even if a `jsnap-view` keeps the target's state
//! alive longer, and every later [`DevSet::access`] fails.
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)

use super::dmdev::DmDev;
use super::pmem::Pmem;
use super::revocable::{Access, SleepRevocable};
use kernel::prelude::*;

/// Most devices one target opens.
pub(crate) const MAX_DEVS: usize = 4;

/// Names a device of one target instance (the order it was opened in).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct DevId(usize);

/// The devices of one target: opened ones, and the one mapped as pmem
/// (which owns its device, so that the mapping goes first).
#[derive(Default)]
pub(super) struct Slots {
    pmem: Option<Pmem>,
    devs: [Option<DmDev>; MAX_DEVS],
    /// Which id the pmem device had.
    pmem_id: Option<DevId>,
}

impl Slots {
    /// Keeps `dev`; its id.
    pub(super) fn push(&mut self, dev: DmDev) -> Result<DevId> {
        let i = self.devs.iter().position(Option::is_none).ok_or(EINVAL)?;
        self.devs[i] = Some(dev);
        Ok(DevId(i))
    }

    /// Maps the first `bytes` bytes of device `id` (a multiple of the page
    /// size) as pmem; the mapping owns the device from now on.
    pub(super) fn map_pmem(&mut self, id: DevId, bytes: u64) -> Result<&Pmem> {
        if self.pmem.is_some() {
            return Err(EBUSY);
        }
        let dev = self.devs.get_mut(id.0).and_then(Option::take).ok_or(ENODEV)?;
        self.pmem_id = Some(id);
        Ok(self.pmem.insert(Pmem::map(dev, bytes)?))
    }

    /// Device `id`.
    pub(super) fn dev(&self, id: DevId) -> Result<&DmDev> {
        match (self.pmem_id, &self.pmem) {
            (Some(p), Some(pmem)) if p == id => Ok(pmem.dev()),
            _ => self.devs.get(id.0).and_then(Option::as_ref).ok_or(ENODEV),
        }
    }

    /// The pmem mapping.
    pub(super) fn pmem(&self) -> Result<&Pmem> {
        self.pmem.as_ref().ok_or(ENODEV)
    }
}

/// The devices of one target instance, revoked by the registration after
/// `dtr` (see the module documentation).
#[pin_data]
pub(crate) struct DevSet {
    #[pin]
    slots: SleepRevocable<Slots>,
}

impl DevSet {
    pub(super) fn new(slots: Slots) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            slots <- SleepRevocable::new(slots),
        }? Error)
    }

    /// The devices, unless the target was destroyed (`ENODEV`); valid while
    /// the guard lives.
    pub(crate) fn access(&self) -> Result<Devices<'_>> {
        self.slots.access().map(Devices).ok_or(ENODEV)
    }

    /// Puts every device (unmapping the pmem first), waiting for current
    /// users.  Only the registration calls it, while `ti` is valid.
    pub(super) fn revoke(&self) {
        self.slots.revoke();
    }
}

/// The devices of a target inside an SRCU read section.
pub(crate) struct Devices<'a>(Access<'a, Slots>);

impl Devices<'_> {
    /// Device `id` (`ENODEV` if this target opened no such device).
    pub(crate) fn dev(&self, id: DevId) -> Result<&DmDev> {
        self.0.dev(id)
    }

    /// The pmem mapping (`ENODEV` if this target mapped none).
    pub(crate) fn pmem(&self) -> Result<&Pmem> {
        self.0.pmem()
    }
}
