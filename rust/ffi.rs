// SPDX-License-Identifier: GPL-2.0

//! The one unsafe layer of dm-jsnap.
//!
//! Everything that touches a raw C pointer lives below this module: the
//! device-mapper target registration and callbacks ([`dm`]), the devices a
//! target opens ([`dmdev`]), held in a set revoked by the registration
//! after `dtr` ([`devices`], built on the sleepable revocable of
//! [`revocable`]), bios ([`bio`]), the DAX
//! mapping of the pmem journal ([`pmem`]), synchronous dm-io, dm-kcopyd and
//! flushes ([`io`]) and the owned workqueue ([`wq`]).  It knows no target:
//! `jsnap` and `jsnap-view` implement [`dm::Target`] above it.  The rest of
//! the crate is safe Rust: every other module is `forbid(unsafe_code)`.
//!
//! C headers: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h),
//! [`include/linux/dax.h`](srctree/include/linux/dax.h),
//! [`include/linux/dm-io.h`](srctree/include/linux/dm-io.h).

/// Bindings generated at build time by `scripts/gen-bindings.sh` for the
/// device-mapper, DAX and dm-io headers and for `rust/ffi/shim.h`.
#[allow(
    clippy::all,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    dead_code,
    unused_imports,
    unnecessary_transmutes
)]
pub(crate) mod sys {
    include!("ffi/generated/dm.rs");
}

pub(crate) mod bio;
pub(crate) mod devices;
pub(crate) mod dm;
pub(crate) mod dmdev;
pub(crate) mod io;
pub(crate) mod pmem;
pub(crate) mod revocable;
pub(crate) mod wq;
