// SPDX-License-Identifier: GPL-2.0

//! Device-mapper targets: registration, the `target_type` callbacks and the
//! handles a target uses in them.
//!
//! A target implements [`Target`]; [`Registration`] builds the C
//! `struct target_type` whose optional callbacks are present exactly when
//! the implementation provides them (`T::HAS_…`, as in `block::mq`), and
//! whose context (`T::Context`) every constructor gets.  Between `ctr` and
//! `dtr`, `ti->private` owns (as a `ForeignOwnable` box) the target's
//! `Arc<T>` and the [`DevSet`] of the devices it opened, which `dtr_cb`
//! revokes after `T::dtr` while `ti` is valid.  Only `map` sees a
//! [`MapBio`], the one handle that may cut a bio (`dm_accept_partial_bio`).
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)

use super::bio::{Bio, MapBio};
use super::devices::{DevId, DevSet, Slots};
use super::dmdev::DmDev;
use super::pmem::Pmem;
use super::sys;
use core::fmt;
use core::ptr::NonNull;
use kernel::error::to_result;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::{ForeignOwnable, Opaque};

/// What `map` did with a bio.
pub(crate) enum Mapped {
    /// Remapped to another device: device-mapper submits it.
    Remap(Bio),
    /// The target took the bio: it has completed it or queued it.
    Submitted,
}

impl Mapped {
    /// Completes `bio` with `res` from `map` (the target took it).
    pub(crate) fn complete(bio: Bio, res: Result) -> Self {
        bio.endio(res);
        Self::Submitted
    }
}

/// The kind of status `dmsetup` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusType {
    /// `dmsetup status`.
    Info,
    /// `dmsetup table`.
    Table,
    /// IMA measurement.
    Ima,
}

/// A constructor failure: the `ti->error` text and the errno.
pub(crate) struct CtrError {
    /// Static, specific reason shown by dmsetup and the kernel log.
    pub(crate) msg: &'static CStr,
    /// The error returned to device-mapper.
    pub(crate) err: Error,
}

impl CtrError {
    /// A failure with `EINVAL`.
    pub(crate) const fn inval(msg: &'static CStr) -> Self {
        Self { msg, err: EINVAL }
    }

    /// An allocation failure (`ENOMEM`), whatever the allocator said.
    pub(crate) fn nomem(_: impl fmt::Debug) -> Self {
        Self {
            msg: c"Out of memory",
            err: ENOMEM,
        }
    }
}

/// What a constructor returns: the target's state, or why not.
pub(crate) type CtrResult<T> = core::result::Result<Arc<T>, CtrError>;

/// Converts the C arguments to `&str`, refusing non-UTF-8 and more than
/// [`MAX_ARGS`] arguments (the callbacks refuse more before; a line is never
/// parsed truncated, which would give a misleading reason).
pub(crate) fn str_args<'a>(
    args: &[&'a CStr],
    out: &mut [&'a str; MAX_ARGS],
) -> core::result::Result<usize, CtrError> {
    if args.len() > out.len() {
        return Err(CtrError::inval(c"Too many arguments"));
    }
    for (slot, a) in out.iter_mut().zip(args) {
        *slot = a
            .to_str()
            .map_err(|_| CtrError::inval(c"Arguments must be valid UTF-8"))?;
    }
    Ok(args.len())
}

/// Longest table line a target keeps for `dmsetup table`.
const MAX_TABLE: usize = 1024;

/// Appends formatted text to a byte vector.
struct LineWriter<'a>(&'a mut KVec<u8>);

impl fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }
}

/// A `dmsetup table` line, as written by `f`: refused if longer than
/// [`MAX_TABLE`] bytes, `ENOMEM` if it cannot be stored.
pub(crate) fn table_line(
    f: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result,
) -> core::result::Result<KVec<u8>, CtrError> {
    let mut line = KVec::new();
    f(&mut LineWriter(&mut line)).map_err(CtrError::nomem)?;
    if line.len() > MAX_TABLE {
        return Err(CtrError::inval(c"Table line too long"));
    }
    Ok(line)
}

/// Operations of a device-mapper target.
#[vtable]
pub(crate) trait Target: Sized + Send + Sync + 'static {
    /// Target name as used in table lines.
    const NAME: &'static CStr;
    /// Target version reported by `dmsetup targets`.
    const VERSION: [u32; 3];
    /// What every instance shares: given to [`Registration::new`], handed
    /// to each constructor, dropped when the target type is unregistered.
    type Context: Send + Sync;

    /// Builds the target from its table arguments.
    fn ctr(ctx: &Self::Context, ti: &mut Ctr<'_>, args: &[&CStr]) -> CtrResult<Self>;
    /// Called when the table is destroyed, before the last reference to
    /// the target's state is dropped: stop workers here.
    fn dtr(&self) {}
    /// Maps one bio.
    fn map(this: ArcBorrow<'_, Self>, bio: MapBio<'_>) -> Mapped;
    /// Writes `dmsetup status` / `dmsetup table` output.
    fn status(&self, _kind: StatusType, _out: &mut Out<'_>) {}
    /// Handles `dmsetup message`; what it writes to `out` is returned to
    /// user space.
    fn message(_this: ArcBorrow<'_, Self>, _args: &[&CStr], _out: &mut Out<'_>) -> Result {
        Err(EINVAL)
    }
    /// Calls `it` for every underlying device.
    fn iterate_devices(&self, _it: &mut DeviceIter<'_>) -> i32 {
        0
    }
    /// Adjusts the queue limits of the mapped device.
    fn io_hints(&self, _limits: &mut Limits<'_>) {}
    /// Called before I/O is quiesced on suspend.
    fn presuspend(_this: ArcBorrow<'_, Self>) {}
    /// Called once I/O is quiesced on suspend.
    fn postsuspend(_this: ArcBorrow<'_, Self>) {}
    /// Called before resume; may refuse it.
    fn preresume(&self) -> Result {
        Ok(())
    }
    /// Called on resume.
    fn resume(_this: ArcBorrow<'_, Self>) {}
    /// Called when a bio tagged with a nonzero [`Bio::set_tag`] ends, with
    /// that tag and whether it succeeded.  It runs in the completion
    /// context of the device (possibly hard IRQ), or inside the target's
    /// own [`Bio::endio`] of a tagged bio: it must not sleep, nor take a
    /// lock that is taken with interrupts on or that the caller of
    /// `endio` may hold.
    fn end_io(_this: ArcBorrow<'_, Self>, _tag: usize, _ok: bool) {}
}

/// The constructor's view of the `struct dm_target` being built.
///
/// # Invariants
///
/// `ti` is the valid target being constructed, exclusively ours for `'a`,
/// reached only through this raw pointer (the held devices keep copies of
/// it, so no Rust reference to the target is ever made: a write through
/// one would invalidate theirs); `slots` holds the devices opened for it,
/// `set` (once made) the same devices, owned by the target from now on.
pub(crate) struct Ctr<'a> {
    ti: NonNull<sys::dm_target>,
    _ti: core::marker::PhantomData<&'a mut sys::dm_target>,
    slots: Slots,
    set: Option<Arc<DevSet>>,
}

impl Ctr<'_> {
    /// First sector of the target in the mapped device.
    pub(crate) fn begin(&self) -> u64 {
        // SAFETY: `ti` is valid (type invariant); a plain field read.
        unsafe { (*self.ti.as_ptr()).begin }
    }

    /// Device number of the mapped device this target belongs to.
    pub(crate) fn md_devt(&mut self) -> u32 {
        // SAFETY: `ti` is valid and belongs to a table of a mapped device.
        unsafe { sys::jsnap_ti_devt(self.ti.as_ptr()) }
    }

    /// Length of the target in sectors.
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: `ti` is valid (type invariant); a plain field read.
        unsafe { (*self.ti.as_ptr()).len }
    }

    /// Opens an underlying device by path or `major:minor`.
    pub(crate) fn get_device(&mut self, path: &CStr, write: bool) -> Result<DevId> {
        // SAFETY: `jsnap_open_mode` only combines constants (`BLK_OPEN_*`);
        // it takes no pointer and touches no state.
        let mode = unsafe { sys::jsnap_open_mode(write) };
        let mut dev: *mut sys::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is valid by the type invariant, `path` is NUL-terminated
        // and `dev` is a valid out pointer.
        to_result(unsafe { sys::dm_get_device(self.ti.as_ptr(), path.as_char_ptr(), mode, &mut dev) })?;
        let dev = NonNull::new(dev).ok_or(ENODEV)?;
        // SAFETY: `dm_get_device` succeeded; the device goes into `slots`,
        // which is dropped before `ctr` returns or moved into the `DevSet`
        // that `ctr_cb`/`dtr_cb` revoke while `ti` is valid.
        let dev = unsafe { DmDev::new(self.ti, dev) };
        self.slots.push(dev)
    }

    /// Device `id`, opened by [`Ctr::get_device`].
    pub(crate) fn dev(&self, id: DevId) -> Result<&DmDev> {
        self.slots.dev(id)
    }

    /// Maps the first `bytes` bytes (a multiple of the page size) of device
    /// `id` as pmem (see [`Pmem`]).
    pub(crate) fn map_pmem(&mut self, id: DevId, bytes: u64) -> Result<&Pmem> {
        self.slots.map_pmem(id, bytes)
    }

    /// The devices opened so far, handed to the target: it reaches them
    /// through [`DevSet::access`] until the registration revokes them after
    /// `dtr`.  Called once, when every device is open.
    pub(crate) fn devices(&mut self) -> Result<Arc<DevSet>> {
        if self.set.is_some() {
            return Err(EBUSY);
        }
        let set = Arc::pin_init(DevSet::new(core::mem::take(&mut self.slots)), GFP_KERNEL)?;
        self.set = Some(set.clone());
        Ok(set)
    }

    /// Sets the size of the per-bio data, discard support, and whether
    /// the target has a volatile write cache of its own (flushes are then
    /// sent to it even when its devices have none).  A target without one
    /// still gets the flushes of the devices it stacks on unless its
    /// `io_hints` calls [`Limits::no_volatile_cache`].
    pub(crate) fn setup(&mut self, discards: bool, volatile_cache: bool) {
        // SAFETY: `ti` is valid by the type invariant.
        unsafe { sys::jsnap_ti_set(self.ti.as_ptr(), discards, volatile_cache) }
    }

    /// Splits bios so that none crosses a multiple of `sectors`.
    pub(crate) fn set_max_io_len(&mut self, sectors: u64) -> Result {
        // SAFETY: `ti` is valid by the type invariant.
        to_result(unsafe { sys::dm_set_target_max_io_len(self.ti.as_ptr(), sectors) })
    }
}

/// The device number that `path` (a device node or `major:minor`) names,
/// without opening the device (a mounted device cannot be opened again
/// exclusively).
pub(crate) fn devt_from_path(path: &CStr) -> Result<u32> {
    let mut devt = 0;
    // SAFETY: `path` is NUL-terminated and `devt` is a valid out pointer.
    to_result(unsafe { sys::dm_devt_from_path(path.as_char_ptr(), &mut devt) })?;
    Ok(devt)
}

/// A block device opened by number, read-only and without claiming it: a
/// filesystem mounted on it keeps its exclusive claim, and the device
/// cannot be removed while this is held (its open count).
///
/// # Invariants
///
/// `file` was returned by `bdev_file_open_by_dev` and is released once, on
/// drop.
pub(crate) struct SharedBdev {
    file: NonNull<kernel::bindings::file>,
}

// SAFETY: a `struct file` reference may be held and put from any thread.
unsafe impl Send for SharedBdev {}
// SAFETY: `&SharedBdev` gives access to nothing.
unsafe impl Sync for SharedBdev {}

impl SharedBdev {
    /// Opens device `devt`.
    pub(crate) fn open(devt: u32) -> Result<Self> {
        // SAFETY: `bdev_file_open_by_dev` takes a device number (any value:
        // an unknown one fails) and no pointer but a null holder.
        let f = unsafe { sys::jsnap_bdev_open_shared(devt) };
        let f = kernel::error::from_err_ptr(f)?;
        let file = NonNull::new(f.cast()).ok_or(ENODEV)?;
        // INVARIANT: opened above.
        Ok(Self { file })
    }
}

impl Drop for SharedBdev {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the file is held; released once.
        unsafe { sys::jsnap_bdev_close(self.file.as_ptr().cast()) }
    }
}

/// Whether this kernel can make stores to pmem durable.
pub(crate) fn has_pmem_api() -> bool {
    // SAFETY: `arch_has_pmem_api` reads a compile-time configuration; it
    // takes no argument.
    unsafe { sys::jsnap_has_pmem_api() }
}

/// `major:minor` of a kernel device number, as stock targets print it.
pub(crate) struct DevNum(pub(crate) u32);

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 20, self.0 & 0xfffff)
    }
}

/// Output buffer of `status` and `message`, like `DMEMIT`: writes past the
/// end are truncated, never overflow.
pub(crate) struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    /// Bytes the buffer holds, the terminating NUL included.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }
}

impl fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.buf.len().saturating_sub(self.pos + 1);
        let n = s.len().min(room);
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + n) {
            dst.copy_from_slice(&s.as_bytes()[..n]);
            self.pos += n;
        }
        if let Some(b) = self.buf.get_mut(self.pos) {
            *b = 0;
        }
        Ok(())
    }
}

/// The callout of `iterate_devices`.
pub(crate) struct DeviceIter<'a> {
    ti: *mut sys::dm_target,
    fun: sys::iterate_devices_callout_fn,
    data: *mut c_void,
    _p: core::marker::PhantomData<&'a ()>,
}

impl DeviceIter<'_> {
    /// Reports `dev` (sectors `start..start+len`) to device-mapper.
    /// A device of another target is not reported (it is not this
    /// target's to report, and may be put meanwhile).
    pub(crate) fn call(&mut self, dev: &DmDev, start: u64, len: u64) -> i32 {
        if !core::ptr::eq(dev.ti(), self.ti) {
            return 0;
        }
        match self.fun {
            // SAFETY: device-mapper gave us `fun`, `ti` and `data` for this
            // call; `dev` is held by `ti` (checked above), which holds it
            // while its table lives.
            Some(f) => unsafe { f(self.ti, dev.raw(), start, len, self.data) },
            None => 0,
        }
    }
}

/// Queue limits passed to `io_hints`.
pub(crate) struct Limits<'a> {
    lim: &'a mut kernel::bindings::queue_limits,
}

impl Limits<'_> {
    /// Sets the preferred minimum and optimal I/O sizes in bytes.
    pub(crate) fn set_io_sizes(&mut self, min: u32, opt: u32) {
        self.lim.io_min = self.lim.io_min.max(min);
        self.lim.io_opt = self.lim.io_opt.max(opt);
    }

    /// Declares that a write is durable when it completes: the queue gets
    /// no volatile write cache (and no FUA) from the devices below, so the
    /// block layer completes empty flushes at once and strips PREFLUSH and
    /// FUA from writes instead of sending them.
    pub(crate) fn no_volatile_cache(&mut self) {
        // SAFETY: `lim` is a valid, exclusively borrowed `queue_limits`
        // (the `io_hints` argument); the helper only clears two feature
        // bits.
        unsafe { sys::jsnap_limits_no_volatile_cache(self.lim) }
    }
}

/// Most arguments of a table line or message.
pub(crate) const MAX_ARGS: usize = 64;

/// Collects `argv` as C strings.
///
/// # Safety
///
/// `argv` must point to `argc` valid NUL-terminated strings living for `'a`.
unsafe fn args<'a>(
    argc: c_uint,
    argv: *mut *mut c_char,
    out: &mut [&'a CStr; MAX_ARGS],
) -> Option<usize> {
    let n = argc as usize;
    if n > MAX_ARGS {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate().take(n) {
        // SAFETY: the caller guarantees `argc` valid strings.
        *slot = unsafe { CStr::from_char_ptr(*argv.add(i)) };
    }
    Some(n)
}

/// What `ti->private` owns between `ctr_cb` and `dtr_cb`: the target's
/// state and the devices the registration revokes after `dtr`.
struct Private<T: Target> {
    this: Arc<T>,
    devs: Option<Arc<DevSet>>,
}

/// # Safety
///
/// `ti` must be a valid target whose `private` was set by `ctr_cb::<T>`
/// and not yet released by `dtr_cb::<T>`; the result must not be used
/// after `dtr_cb` starts (device-mapper calls no other callback then).
unsafe fn private<'a, T: Target>(ti: *mut sys::dm_target) -> &'a Private<T> {
    // SAFETY: by the caller, `private` came from `KBox::into_foreign` in
    // `ctr_cb` and is only given back by `dtr_cb`.
    unsafe { <KBox<Private<T>> as ForeignOwnable>::borrow((*ti).private) }
}

/// # Safety
///
/// As for [`private`].
unsafe fn borrow<'a, T: Target>(ti: *mut sys::dm_target) -> ArcBorrow<'a, T> {
    // SAFETY: guaranteed by the caller.
    unsafe { private::<T>(ti) }.this.as_arc_borrow()
}

/// Maps a callback's result to the C convention (0 or a negative errno).
fn errno(res: Result) -> c_int {
    kernel::error::from_result(|| res.map(|()| 0))
}

/// `target_type::ctr`.
///
/// # Safety
///
/// Called by device-mapper with `ti` the valid target under construction
/// (its `type_` a `TargetType<T>` registered by `Registration::<T>::new`)
/// and `argv` holding `argc` valid NUL-terminated strings.
unsafe extern "C" fn ctr_cb<T: Target>(
    ti: *mut sys::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
) -> c_int {
    // The target is only ever reached through the raw pointer `ti` (see
    // `Ctr`), never through a reference.
    let Some(ti) = NonNull::new(ti) else {
        return EINVAL.to_errno();
    };
    // SAFETY: `dm_table_add_target` sets `ti->type` to the target type it
    // found by name: the `tt` field of a `TargetType<T>` (registered by
    // `Registration::<T>::new`), which stays registered, hence alive, while
    // a table uses it.
    let ctx = unsafe { &(*(*ti.as_ptr()).type_.cast::<TargetType<T>>()).ctx };
    let set_error = |msg: &'static CStr| {
        // SAFETY: device-mapper passes a valid target under construction,
        // which nothing else touches until `ctr` returns; `msg` is static.
        unsafe { (*ti.as_ptr()).error = msg.as_char_ptr().cast_mut() };
    };
    let mut buf = [c""; MAX_ARGS];
    // SAFETY: device-mapper passes `argc` valid strings.
    let Some(n) = (unsafe { args(argc, argv, &mut buf) }) else {
        set_error(c"Too many arguments");
        return EINVAL.to_errno();
    };
    // Every bio this target maps records it as its owner (see `Bio::remap`).
    // SAFETY: as for `set_error`.
    unsafe { sys::jsnap_ti_init(ti.as_ptr()) };
    // Allocated first: once `ctr` succeeded nothing may fail.
    let Ok(slot) = KBox::<Private<T>>::new_uninit(GFP_KERNEL) else {
        set_error(c"Out of memory");
        return ENOMEM.to_errno();
    };
    // INVARIANT: `ti` is the valid target under construction, ours until
    // `ctr_cb` returns, which outlives `ctr`.
    let mut ctr = Ctr {
        ti,
        _ti: core::marker::PhantomData,
        slots: Slots::default(),
        set: None,
    };
    let res = T::ctr(ctx, &mut ctr, &buf[..n]);
    // Every access goes through the raw pointer: the devices' copies of it
    // stay valid.
    match res {
        Ok(this) => {
            let p = KBox::write(
                slot,
                Private {
                    this,
                    devs: ctr.set.take(),
                },
            );
            // SAFETY: as for `set_error`.
            unsafe { (*ti.as_ptr()).private = p.into_foreign() };
            0
        }
        Err(e) => {
            // Devices handed to the target go now, while `ti` is valid; the
            // rest (`slots`) when `ctr` is dropped.
            if let Some(d) = ctr.set.take() {
                d.revoke();
            }
            set_error(e.msg);
            e.err.to_errno()
        }
    }
}

/// `target_type::dtr`.
///
/// # Safety
///
/// Called once by device-mapper, with `ti` built by `ctr_cb::<T>`; no
/// callback of `ti` runs during or after it.
unsafe extern "C" fn dtr_cb<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: `private` holds the box made by `ctr_cb`, given back once.
    let p = unsafe { <KBox<Private<T>> as ForeignOwnable>::from_foreign((*ti).private) };
    p.this.dtr();
    // `ti` is still valid: its devices are put here, whoever still holds
    // the target's state.
    if let Some(d) = &p.devs {
        d.revoke();
    }
    drop(p);
}

/// `target_type::map`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>` and a valid bio
/// that it hands over to the target.
unsafe extern "C" fn map_cb<T: Target>(ti: *mut sys::dm_target, bio: *mut sys::bio) -> c_int {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    let t = unsafe { borrow::<T>(ti) };
    let mapped = bio;
    if bio.is_null() {
        return sys::DM_MAPIO_KILL as c_int;
    }
    // SAFETY: a bio device-mapper maps has the per-bio data `ctr_cb` asked
    // for (`jsnap_ti_init`), and `ti` is the target mapping it.
    unsafe { sys::jsnap_bio_set_owner(bio, ti) };
    // SAFETY: device-mapper hands us ownership of a valid bio, inside `map`.
    let Some(bio) = (unsafe { MapBio::from_raw(bio) }) else {
        return sys::DM_MAPIO_KILL as c_int;
    };
    match T::map(t, bio) {
        Mapped::Remap(bio) if bio.is(mapped) => {
            bio.into_raw();
            sys::DM_MAPIO_REMAPPED as c_int
        }
        // Safe code can hand back another bio it owns (one swapped into the
        // `MapBio`, or taken from a queue): device-mapper would submit the
        // bio it mapped, which the target has taken.  Submit the one handed
        // back instead; the mapped one is the target's.
        Mapped::Remap(bio) => {
            bio.submit();
            sys::DM_MAPIO_SUBMITTED as c_int
        }
        Mapped::Submitted => sys::DM_MAPIO_SUBMITTED as c_int,
    }
}

/// `target_type::end_io`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>`, for a valid
/// bio that `ti` mapped (whose per-bio data `map_cb` filled), and a valid
/// `error`.
unsafe extern "C" fn end_io_cb<T: Target>(
    ti: *mut sys::dm_target,
    bio: *mut sys::bio,
    error: *mut sys::blk_status_t,
) -> c_int {
    if bio.is_null() || error.is_null() {
        return sys::DM_ENDIO_DONE as c_int;
    }
    // SAFETY: the bio is valid and has the per-bio data (caller).
    let tag = unsafe { sys::jsnap_bio_tag(bio) };
    if tag != 0 {
        // SAFETY: `ti` was constructed by `ctr_cb::<T>` and is not destroyed
        // while one of its bios is in flight; `error` is valid (caller).
        let (t, ok) = unsafe { (borrow::<T>(ti), *error == 0) };
        T::end_io(t, tag as usize, ok);
    }
    sys::DM_ENDIO_DONE as c_int
}

/// `target_type::status`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>` and `result`
/// valid for writes of `maxlen` bytes (or null).
unsafe extern "C" fn status_cb<T: Target>(
    ti: *mut sys::dm_target,
    kind: sys::status_type_t,
    _flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    let t = unsafe { private::<T>(ti) };
    if result.is_null() || maxlen == 0 {
        return;
    }
    // SAFETY: device-mapper gives a buffer of `maxlen` bytes, ours for the
    // call.
    let buf = unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) };
    buf[0] = 0;
    let kind = match kind {
        sys::status_type_t_STATUSTYPE_INFO => StatusType::Info,
        sys::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
        _ => StatusType::Ima,
    };
    t.this.status(kind, &mut Out { buf, pos: 0 });
}

/// `target_type::message`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>`, `argv` holding
/// `argc` valid NUL-terminated strings and `result` valid for writes of
/// `maxlen` bytes (or null).
unsafe extern "C" fn message_cb<T: Target>(
    ti: *mut sys::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    let t = unsafe { borrow::<T>(ti) };
    let mut buf = [c""; MAX_ARGS];
    // SAFETY: device-mapper passes `argc` valid strings.
    let Some(n) = (unsafe { args(argc, argv, &mut buf) }) else {
        pr_err!("dm-jsnap: Too many arguments\n");
        return EINVAL.to_errno();
    };
    let mut empty = [0u8; 1];
    let out = if result.is_null() || maxlen == 0 {
        &mut empty[..]
    } else {
        // SAFETY: device-mapper gives a buffer of `maxlen` bytes, ours for
        // the call.
        unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) }
    };
    out[0] = 0;
    let mut o = Out { buf: out, pos: 0 };
    match T::message(t, &buf[..n], &mut o) {
        // Output for user space (dm-ioctl returns it, or asks for a larger
        // buffer when it filled this one).
        Ok(()) if o.pos > 0 => 1,
        res => errno(res),
    }
}

/// `target_type::iterate_devices`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>`, and `fun` and
/// `data` to be passed back for each device.
unsafe extern "C" fn iterate_devices_cb<T: Target>(
    ti: *mut sys::dm_target,
    fun: sys::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    let t = unsafe { private::<T>(ti) };
    t.this.iterate_devices(&mut DeviceIter {
        ti,
        fun,
        data,
        _p: core::marker::PhantomData,
    })
}

/// `target_type::io_hints`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>` and `limits`
/// valid, and not otherwise accessed, for the call.
unsafe extern "C" fn io_hints_cb<T: Target>(
    ti: *mut sys::dm_target,
    limits: *mut kernel::bindings::queue_limits,
) {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>`; `limits` is valid and
    // exclusively ours for the call.
    let (t, lim) = unsafe { (private::<T>(ti), &mut *limits) };
    t.this.io_hints(&mut Limits { lim });
}

/// `target_type::presuspend`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>`.
unsafe extern "C" fn presuspend_cb<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    T::presuspend(unsafe { borrow::<T>(ti) })
}

/// `target_type::postsuspend`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>`.
unsafe extern "C" fn postsuspend_cb<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    T::postsuspend(unsafe { borrow::<T>(ti) })
}

/// `target_type::preresume`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>`.
unsafe extern "C" fn preresume_cb<T: Target>(ti: *mut sys::dm_target) -> c_int {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    errno(unsafe { private::<T>(ti) }.this.preresume())
}

/// `target_type::resume`.
///
/// # Safety
///
/// Called by device-mapper with `ti` built by `ctr_cb::<T>`.
unsafe extern "C" fn resume_cb<T: Target>(ti: *mut sys::dm_target) {
    // SAFETY: `ti` was constructed by `ctr_cb::<T>` and not destroyed.
    T::resume(unsafe { borrow::<T>(ti) })
}

/// A registered target type; unregistered on drop.
///
/// # Invariants
///
/// `tt` is registered with device-mapper for the lifetime of `self` and
/// never moves (it is boxed).
pub(crate) struct Registration<T: Target> {
    tt: KBox<TargetType<T>>,
}

/// The C target type and the context of its instances: `ti->type` points
/// at `tt`, so `ctr` finds `ctx` from it.
#[repr(C)]
struct TargetType<T: Target> {
    /// First: a pointer to it is a pointer to the whole.  Device-mapper
    /// writes to it while it is registered.
    tt: Opaque<sys::target_type>,
    ctx: T::Context,
}

impl<T: Target> TargetType<T> {
    /// The C target type, as a pointer that covers the whole struct (so
    /// `ctr_cb` may reach `ctx` from it).
    fn raw(this: &KBox<Self>) -> *mut sys::target_type {
        let whole: *const Self = &raw const **this;
        // `tt` is the first field of this `repr(C)` struct, and `Opaque`
        // makes the C side's writes through the pointer legal.
        whole.cast_mut().cast()
    }
}

// SAFETY: the registration is only used to unregister, from any thread.
unsafe impl<T: Target> Send for Registration<T> {}
// SAFETY: `&Registration` exposes nothing.
unsafe impl<T: Target> Sync for Registration<T> {}

impl<T: Target> Registration<T> {
    /// Registers target type `T`; its constructors get `ctx`.
    pub(crate) fn new(module: &'static ThisModule, ctx: T::Context) -> Result<Self> {
        let tt = sys::target_type {
            name: T::NAME.as_char_ptr(),
            module: module.as_ptr().cast(),
            version: T::VERSION,
            ctr: Some(ctr_cb::<T>),
            dtr: Some(dtr_cb::<T>),
            map: Some(map_cb::<T>),
            status: if T::HAS_STATUS {
                Some(status_cb::<T>)
            } else {
                None
            },
            message: if T::HAS_MESSAGE {
                Some(message_cb::<T>)
            } else {
                None
            },
            iterate_devices: if T::HAS_ITERATE_DEVICES {
                Some(iterate_devices_cb::<T>)
            } else {
                None
            },
            io_hints: if T::HAS_IO_HINTS {
                Some(io_hints_cb::<T>)
            } else {
                None
            },
            presuspend: if T::HAS_PRESUSPEND {
                Some(presuspend_cb::<T>)
            } else {
                None
            },
            postsuspend: if T::HAS_POSTSUSPEND {
                Some(postsuspend_cb::<T>)
            } else {
                None
            },
            preresume: if T::HAS_PRERESUME {
                Some(preresume_cb::<T>)
            } else {
                None
            },
            resume: if T::HAS_RESUME {
                Some(resume_cb::<T>)
            } else {
                None
            },
            end_io: if T::HAS_END_IO {
                Some(end_io_cb::<T>)
            } else {
                None
            },
            ..Default::default()
        };
        let tt = KBox::new(
            TargetType {
                tt: Opaque::new(tt),
                ctx,
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `tt` is a fully initialised target type that outlives the
        // registration (it is unregistered before the box is freed).  The
        // pointer is derived from the whole box, not from the field: `ctr_cb`
        // reads `ctx` through it, and device-mapper writes the C part (its
        // list links), which `Opaque` allows.
        to_result(unsafe { sys::dm_register_target(TargetType::raw(&tt)) })?;
        // INVARIANT: registered above.
        Ok(Self { tt })
    }
}

impl<T: Target> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered by the type invariant.
        unsafe { sys::dm_unregister_target(TargetType::raw(&self.tt)) }
    }
}
