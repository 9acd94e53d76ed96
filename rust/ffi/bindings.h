/* SPDX-License-Identifier: GPL-2.0 */
/* Headers the kernel's Rust bindings lack; see scripts/gen-bindings.sh. */
#include <linux/device-mapper.h>
#include <linux/dax.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include "shim.h"
