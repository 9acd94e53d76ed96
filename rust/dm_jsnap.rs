// SPDX-License-Identifier: GPL-2.0

//! dm-jsnap: instant snapshots whose copy-on-write cost is taken off the
//! write path by a pmem journal.
//!
//! Two device-mapper targets: `jsnap` (the production volume, [`jsnap`])
//! and `jsnap-view` (the snapshot volume).  Every block that needs `unsafe_code` lives in
//! [`ffi`]; the pure logic (on-media format, ring, replay, overlap algebra,
//! validity map, argument parsing) in [`logic`] is plain `core` Rust that is
//! also tested on the host (`rust/host`).
#![deny(unsafe_code)]

use kernel::prelude::*;
use kernel::sync::Arc;

#[allow(unsafe_code)]
mod ffi;

/// Pure `core` logic shared with the host test crate (`rust/host`).
#[allow(unreachable_pub, dead_code)]
mod logic;

#[forbid(unsafe_code)]
mod jsnap;
#[forbid(unsafe_code)]
mod kunit;
#[forbid(unsafe_code)]
mod view;

#[forbid(unsafe_code)]
mod fault;

#[forbid(unsafe_code)]
mod prof;

#[cfg(not(jsnap_fault))]
module! {
    type: JsnapModule,
    name: "dm_jsnap",
    authors: ["dm-jsnap developers"],
    description: "device-mapper journaled instant snapshots",
    license: "GPL",
}

// The fault-injection build (`scripts/build-module.sh --fault`, tests only):
// parameters that hold chosen steps open so that tests reach the windows
// between them (see `fault`).
#[cfg(jsnap_fault)]
module! {
    type: JsnapModule,
    name: "dm_jsnap",
    authors: ["dm-jsnap developers"],
    description: "device-mapper journaled instant snapshots (fault-injection build)",
    license: "GPL",
    params: {
        fault_copy_sector: i64 {
            default: -1,
            description: "Hold journal writes starting at this target sector between the changes-table insert and the pmem copy",
        },
        fault_copy_ms: i64 {
            default: 0,
            description: "How long (ms) to hold them",
        },
        fault_preserve_ms: i64 {
            default: 0,
            description: "Hold every preservation step (ms) between the production copy and the validity bit",
        },
        fault_flip_stage: i64 {
            default: 0,
            description: "Hold `snapshot`'s changed-block flip: 1 after the previous interval is forgotten and its map zeroed, 2 after the commit of the new intervals; 3: hold `drop` before its superblock commit; 4, 5: hold the first copy of a journal compaction after its data is fenced, after its descriptor is durable",
        },
        fault_flip_ms: i64 {
            default: 0,
            description: "How long (ms) to hold it",
        },
        fault_ctr_ms: i64 {
            default: 0,
            description: "Hold the jsnap constructor (ms) between its check for attached views and its registration",
        },
        fault_enomem_site: i64 {
            default: 0,
            description: "Allocation site to fail: 1 destage batch (chunk locks held), 2 hydration step, 3 table nodes of a write",
        },
        fault_enomem_count: i64 {
            default: 0,
            description: "How many allocations at that site fail (-1: all)",
        },
        fault_poison_sector: i64 {
            default: -1,
            description: "Journal data covering this target sector reads as poisoned pmem",
        },
    },
}

struct JsnapModule {
    _jsnap: ffi::dm::Registration<jsnap::Jsnap>,
    _view: ffi::dm::Registration<view::View>,
}

impl kernel::Module for JsnapModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // One registry, shared by the two target types.
        let registry = Arc::pin_init(jsnap::registry::Registry::new(), GFP_KERNEL)?;
        let jsnap = ffi::dm::Registration::new(module, registry.clone())?;
        let view = ffi::dm::Registration::new(module, registry)?;
        pr_info!("dm-jsnap: loaded\n");
        Ok(Self {
            _jsnap: jsnap,
            _view: view,
        })
    }
}
