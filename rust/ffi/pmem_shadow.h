/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The pmem ordering model of the test build (pmem_shadow.c); in the normal
 * build every hook is an empty inline function.
 */
#ifndef JSNAP_PMEM_SHADOW_H
#define JSNAP_PMEM_SHADOW_H

#include <linux/types.h>

struct block_device;

#ifdef JSNAP_FAULT
/* The address the driver uses for a new mapping (real, or its shadow). */
void *jsnap_shadow_map(void *real, size_t len);
/* The real mapping behind map, once its unfenced stores are applied. */
void *jsnap_shadow_unmap(void *map);
/* dst..dst+len was just stored to (through memcpy_flushcache). */
void jsnap_shadow_stored(void *dst, size_t len);
/* The calling task fences: its stores reach pmem (or the power is cut). */
void jsnap_shadow_fence(void);
/* Flush bdev's volatile cache (one flush at a time with fault_flush_serial). */
int jsnap_fault_flush(struct block_device *bdev);
#else
static inline void *jsnap_shadow_map(void *real, size_t len) { return real; }
static inline void *jsnap_shadow_unmap(void *map) { return map; }
static inline void jsnap_shadow_stored(void *dst, size_t len) {}
static inline void jsnap_shadow_fence(void) {}
#endif


#endif
