/* SPDX-License-Identifier: GPL-2.0 */
/* Declarations of rust/ffi/shim.c; bindgen turns them into Rust. */
#ifndef JSNAP_SHIM_H
#define JSNAP_SHIM_H

#include <linux/types.h>

struct bio;
struct block_device;
struct dm_dev;
struct dm_io_client;
struct dm_target;
struct file;
struct workqueue_struct;

unsigned int jsnap_bio_kind(struct bio *bio);
sector_t jsnap_bio_sector(struct bio *bio);
unsigned int jsnap_bio_size(struct bio *bio);
void jsnap_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector);
void jsnap_bio_set_owner(struct bio *bio, struct dm_target *ti);
struct dm_target *jsnap_bio_owner(struct bio *bio);
void jsnap_ti_init(struct dm_target *ti);
void jsnap_bio_set_tag(struct bio *bio, unsigned long tag);
unsigned long jsnap_bio_tag(struct bio *bio);
void jsnap_bio_set_fua(struct bio *bio);
void jsnap_bio_endio(struct bio *bio, int err);
int jsnap_bio_status(struct bio *bio);
void jsnap_bio_copy_to_pmem(struct bio *bio, void *dst);
void jsnap_bio_copy_from(struct bio *bio, unsigned int skip, const void *src,
			 unsigned int len);
void jsnap_bio_zero(struct bio *bio, unsigned int skip, unsigned int len);
u32 jsnap_crc32c(u32 crc, const void *p, size_t len);
int jsnap_bio_copy_from_pmem_mc(struct bio *bio, unsigned int skip,
				const void *src, unsigned int len);
int jsnap_pmem_read_mc(void *dst, const void *src, size_t len);
int jsnap_pmem_crc_mc(const void *src, size_t len, u32 *out);
void jsnap_pmem_copy(void *dst, const void *src, size_t len);
int jsnap_pmem_move_mc(void *dst, const void *src, size_t len);
void jsnap_pmem_fence(void);
/* Fault build only (pmem_shadow.c): a destage batch overwrote chunks it
 * preserved (with fault_cut_after_cow: cut the power at the next fence). */
void jsnap_shadow_cow_overwritten(void);
sector_t jsnap_bdev_sectors(struct block_device *bdev);
unsigned int jsnap_bdev_logical_block_size(struct block_device *bdev);
sector_t jsnap_bdev_start_sect(struct block_device *bdev);
bool jsnap_dev_has_dax(struct dm_dev *dev);
bool jsnap_dev_dax_synchronous(struct dm_dev *dev);
bool jsnap_has_pmem_api(void);
void jsnap_bio_set_sector(struct bio *bio, sector_t sector);
struct file *jsnap_bdev_open_shared(dev_t dev);
void jsnap_bdev_close(struct file *f);
struct block_device *jsnap_dev_bdev(struct dm_dev *dev);
dev_t jsnap_dev_devt(struct dm_dev *dev);
const char *jsnap_dev_name(struct dm_dev *dev);
void *jsnap_dax_map(struct dm_dev *dev, u64 bytes, bool *vmapped);
void jsnap_dax_unmap(void *map, bool vmapped);
int jsnap_io(struct dm_io_client *client, struct block_device *bdev,
	     sector_t sector, sector_t count, void *mem, bool write, bool fua);
struct dm_io_client *jsnap_io_client_create(void);
void jsnap_io_client_destroy(struct dm_io_client *c);
int jsnap_flush(struct block_device *bdev);
struct workqueue_struct *jsnap_alloc_workqueue(const char *name);
void jsnap_destroy_workqueue(struct workqueue_struct *wq);
void jsnap_flush_workqueue(struct workqueue_struct *wq);
void jsnap_ti_set(struct dm_target *ti,
		  bool discards, bool volatile_cache);
void jsnap_limits_no_volatile_cache(struct queue_limits *lim);
void jsnap_set_error(struct dm_target *ti, const char *msg);
bool jsnap_ti_is_write(struct dm_target *ti);
void jsnap_table_event(struct dm_target *ti);
blk_mode_t jsnap_open_mode(bool write);
void jsnap_random(void *buf, size_t len);
void jsnap_bio_copy_to_buf(struct bio *bio, unsigned int skip, void *dst,
			   unsigned int len);
dev_t jsnap_ti_devt(struct dm_target *ti);
void jsnap_bio_submit(struct bio *bio);
unsigned int jsnap_noio_begin(void);
void jsnap_noio_end(unsigned int flags);
int jsnap_io_write_many(struct dm_io_client *client, struct block_device *bdev,
			const u64 *sectors, const u64 *counts, void *const *mems,
			unsigned int n);
struct dm_kcopyd_client *jsnap_kcopyd_create(void);
void jsnap_kcopyd_destroy(struct dm_kcopyd_client *kc);
int jsnap_kcopyd_copy_many(struct dm_kcopyd_client *kc,
			   struct block_device *src, struct block_device *dst,
			   const u64 *sectors, const u64 *counts,
			   unsigned int n);

#endif
