// SPDX-License-Identifier: GPL-2.0
/*
 * dm-jsnap C shim: the static-inline helpers and macro-based loops of the
 * block, device-mapper and DAX headers that Rust cannot call directly.
 *
 * Every function here is a thin wrapper; the policy lives in Rust.  The
 * Rust side gets these as bindings generated from rust/ffi/shim.h
 * (scripts/gen-bindings.sh, `ffi::sys`) and never calls them except through
 * the safe types of the ffi layer.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/crc32.h>
#include <linux/dax.h>
#include <linux/file.h>
#include <linux/uaccess.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/highmem.h>
#include <linux/libnvdimm.h>
#include <linux/random.h>
#include <linux/sched/mm.h>
#include <linux/completion.h>
#include <linux/atomic.h>
#include <linux/string.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

#include "shim.h"
#include "pmem_shadow.h"

/* Bio classification, so that Rust never decodes REQ_* bits itself. */
enum jsnap_bio_kind {
	JSNAP_BIO_READ = 0,
	JSNAP_BIO_WRITE = 1,
	JSNAP_BIO_FLUSH = 2,	/* empty REQ_PREFLUSH */
	JSNAP_BIO_DISCARD = 3,
	JSNAP_BIO_WRITE_ZEROES = 4,
	JSNAP_BIO_OTHER = 5,
};

unsigned int jsnap_bio_kind(struct bio *bio)
{
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		return JSNAP_BIO_READ;
	case REQ_OP_WRITE:
		if ((bio->bi_opf & REQ_PREFLUSH) && !bio_sectors(bio))
			return JSNAP_BIO_FLUSH;
		return JSNAP_BIO_WRITE;
	case REQ_OP_FLUSH:
		return JSNAP_BIO_FLUSH;
	case REQ_OP_DISCARD:
		return JSNAP_BIO_DISCARD;
	case REQ_OP_WRITE_ZEROES:
		return JSNAP_BIO_WRITE_ZEROES;
	default:
		return JSNAP_BIO_OTHER;
	}
}

sector_t jsnap_bio_sector(struct bio *bio)
{
	return bio->bi_iter.bi_sector;
}

unsigned int jsnap_bio_size(struct bio *bio)
{
	return bio->bi_iter.bi_size;
}

void jsnap_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector)
{
	bio_set_dev(bio, bdev);
	bio->bi_iter.bi_sector = sector;
}

/*
 * The per-bio data of every bio mapped by a jsnap target holds the target
 * that mapped it (its "owner"): a bio may only be remapped to a device
 * that target holds, which device-mapper keeps open until the bio ends.
 */
struct jsnap_per_bio {
	struct dm_target *owner;
	/* Set by the target for its end_io; 0 for none. */
	unsigned long tag;
};

static struct jsnap_per_bio *jsnap_pb(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(struct jsnap_per_bio));
}

void jsnap_bio_set_owner(struct bio *bio, struct dm_target *ti)
{
	struct jsnap_per_bio *pb = jsnap_pb(bio);

	pb->owner = ti;
	pb->tag = 0;
}

struct dm_target *jsnap_bio_owner(struct bio *bio)
{
	return jsnap_pb(bio)->owner;
}

void jsnap_bio_set_tag(struct bio *bio, unsigned long tag)
{
	jsnap_pb(bio)->tag = tag;
}

unsigned long jsnap_bio_tag(struct bio *bio)
{
	return jsnap_pb(bio)->tag;
}

/* FUA on a plain write only (the block layer refuses it on other operations). */
void jsnap_bio_set_fua(struct bio *bio)
{
	if (bio_op(bio) == REQ_OP_WRITE)
		bio->bi_opf |= REQ_FUA;
}

/* Room for the owner and the tag in the per-bio data of every bio mapped by `ti`. */
void jsnap_ti_init(struct dm_target *ti)
{
	ti->per_io_data_size = sizeof(struct jsnap_per_bio);
}

void jsnap_bio_endio(struct bio *bio, int err)
{
	bio->bi_status = errno_to_blk_status(err);
	bio_endio(bio);
}

int jsnap_bio_status(struct bio *bio)
{
	return blk_status_to_errno(bio->bi_status);
}

/*
 * Copy the data of a write bio to persistent memory with non-temporal
 * stores; the caller fences with jsnap_pmem_fence() before it writes the
 * record's descriptor.  The pages of a write may change while it is in
 * flight (the device does not ask for stable pages; an O_DIRECT buffer may
 * be rewritten by a racing thread): whatever bytes are copied are the
 * record, and every later reader (destage, reads, recovery) takes them from
 * pmem, so all of them see the same version.
 */
void jsnap_bio_copy_to_pmem(struct bio *bio, void *dst)
{
	void *start = dst;
	struct bio_vec bv;
	struct bvec_iter iter;

	bio_for_each_segment(bv, bio, iter) {
		void *src = bvec_kmap_local(&bv);

		memcpy_flushcache(dst, src, bv.bv_len);
		dst += bv.bv_len;
		kunmap_local(src);
	}
	jsnap_shadow_stored(start, dst - start);
}

/*
 * Open a block device by number without claiming it (no holder: a
 * filesystem may hold it exclusively), to keep it from being removed.
 * Returns the file or an ERR_PTR; release with jsnap_bdev_close().
 */
struct file *jsnap_bdev_open_shared(dev_t dev)
{
	return bdev_file_open_by_dev(dev, BLK_OPEN_READ, NULL, NULL);
}

void jsnap_bdev_close(struct file *f)
{
	bdev_fput(f);
}

/* Point a bio that the target completes itself at another sector. */
void jsnap_bio_set_sector(struct bio *bio, sector_t sector)
{
	bio->bi_iter.bi_sector = sector;
}

/*
 * Copy len bytes from src into the data of a read bio, starting skip bytes
 * into the bio's current iterator.
 */
void jsnap_bio_copy_from(struct bio *bio, unsigned int skip, const void *src,
			 unsigned int len)
{
	struct bvec_iter iter = bio->bi_iter;
	struct bio_vec bv;

	bio_advance_iter(bio, &iter, skip);
	while (len && iter.bi_size) {
		unsigned int n;
		void *dst;

		bv = bio_iter_iovec(bio, iter);
		n = min(len, bv.bv_len);
		dst = bvec_kmap_local(&bv);
		memcpy(dst, src, n);
		kunmap_local(dst);
		flush_dcache_page(bv.bv_page);
		src += n;
		len -= n;
		bio_advance_iter_single(bio, &iter, n);
	}
}

/*
 * Copy len bytes of persistent memory at src into the data of a read bio,
 * starting skip bytes into it, with the machine-check-safe copy: a poisoned
 * line fails the copy instead of panicking.  Returns 0 or -EIO.
 */
int jsnap_bio_copy_from_pmem_mc(struct bio *bio, unsigned int skip,
				const void *src, unsigned int len)
{
	struct bvec_iter iter = bio->bi_iter;
	struct bio_vec bv;

	bio_advance_iter(bio, &iter, skip);
	while (len && iter.bi_size) {
		unsigned int n;
		unsigned long rem;
		void *dst;

		bv = bio_iter_iovec(bio, iter);
		n = min(len, bv.bv_len);
		dst = bvec_kmap_local(&bv);
		rem = copy_mc_to_kernel(dst, src, n);
		kunmap_local(dst);
		flush_dcache_page(bv.bv_page);
		if (rem)
			return -EIO;
		src += n;
		len -= n;
		bio_advance_iter_single(bio, &iter, n);
	}
	return 0;
}

/* Machine-check-safe copy out of persistent memory: 0 or -EIO. */
int jsnap_pmem_read_mc(void *dst, const void *src, size_t len)
{
	return copy_mc_to_kernel(dst, src, len) ? -EIO : 0;
}

/*
 * CRC32C (standard convention) of persistent memory, read with the
 * machine-check-safe copy through a small buffer.  0 or -EIO (poison).
 */
int jsnap_pmem_crc_mc(const void *src, size_t len, u32 *out)
{
	u8 buf[512] __aligned(16);
	u32 crc = ~0U;

	while (len) {
		size_t n = min(len, sizeof(buf));

		if (copy_mc_to_kernel(buf, src, n))
			return -EIO;
		crc = crc32c(crc, buf, n);
		src += n;
		len -= n;
	}
	*out = ~crc;
	return 0;
}

/* Zero len bytes of a read bio, starting skip bytes into it. */
void jsnap_bio_zero(struct bio *bio, unsigned int skip, unsigned int len)
{
	struct bvec_iter iter = bio->bi_iter;
	struct bio_vec bv;

	bio_advance_iter(bio, &iter, skip);
	while (len && iter.bi_size) {
		unsigned int n;

		bv = bio_iter_iovec(bio, iter);
		n = min(len, bv.bv_len);
		memzero_page(bv.bv_page, bv.bv_offset, n);
		len -= n;
		bio_advance_iter_single(bio, &iter, n);
	}
}

u32 jsnap_crc32c(u32 crc, const void *p, size_t len)
{
	return ~crc32c(~crc, p, len);
}

/* Persistent copy: non-temporal stores, no fence. */
void jsnap_pmem_copy(void *dst, const void *src, size_t len)
{
	memcpy_flushcache(dst, src, len);
	jsnap_shadow_stored(dst, len);
}

/*
 * Persistent copy from persistent memory to persistent memory (no fence),
 * reading with the machine-check-safe copy through a small buffer: 0, or
 * -EIO (poison in the source; dst then holds a part of the copy).  The
 * two ranges must not overlap.
 */
int jsnap_pmem_move_mc(void *dst, const void *src, size_t len)
{
	u8 buf[512] __aligned(16);

	while (len) {
		size_t n = min(len, sizeof(buf));

		if (copy_mc_to_kernel(buf, src, n))
			return -EIO;
		jsnap_pmem_copy(dst, buf, n);
		src += n;
		dst += n;
		len -= n;
	}
	return 0;
}

/* Make every preceding jsnap_pmem_copy() durable and ordered. */
void jsnap_pmem_fence(void)
{
	jsnap_shadow_fence();
	pmem_wmb();
}

sector_t jsnap_bdev_sectors(struct block_device *bdev)
{
	return bdev_nr_sectors(bdev);
}

unsigned int jsnap_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}

sector_t jsnap_bdev_start_sect(struct block_device *bdev)
{
	return get_start_sect(bdev);
}

bool jsnap_dev_has_dax(struct dm_dev *dev)
{
	return dev->dax_dev != NULL;
}

/*
 * Whether CPU stores to the DAX device are durable once flushed from the
 * caches (false for virtio-pmem, which needs a host fsync: dm-writecache
 * refuses it too).
 */
bool jsnap_dev_dax_synchronous(struct dm_dev *dev)
{
	return dev->dax_dev && dax_synchronous(dev->dax_dev);
}

/* Whether this kernel can make stores to pmem durable (pmem_wmb etc.). */
bool jsnap_has_pmem_api(void)
{
	return IS_ENABLED(CONFIG_ARCH_HAS_PMEM_API);
}

struct block_device *jsnap_dev_bdev(struct dm_dev *dev)
{
	return dev->bdev;
}

dev_t jsnap_dev_devt(struct dm_dev *dev)
{
	return dev->bdev->bd_dev;
}

const char *jsnap_dev_name(struct dm_dev *dev)
{
	return dev->name;
}

/*
 * Map the first bytes of a DAX device into the kernel address space, as
 * dm-writecache's persistent_memory_claim() does: directly when the whole
 * range is one direct-mapped extent, otherwise through vmap().
 * Returns the address or an ERR_PTR; *vmapped tells how to release it.
 */
void *jsnap_dax_map(struct dm_dev *dev, u64 bytes, bool *vmapped)
{
	long p = bytes >> PAGE_SHIFT, da, i;
	sector_t offset = get_start_sect(dev->bdev);
	struct page **pages = NULL;
	void *map = NULL, *shadow;
	unsigned long pfn;
	int id, r = 0;

	*vmapped = false;
	if (!dev->dax_dev)
		return ERR_PTR(-EOPNOTSUPP);
	if (!p || (offset & (PAGE_SIZE / 512 - 1)))
		return ERR_PTR(-EINVAL);
	offset >>= PAGE_SHIFT - 9;

	id = dax_read_lock();
	da = dax_direct_access(dev->dax_dev, offset, p, DAX_ACCESS, &map, &pfn);
	if (da < 0) {
		r = da;
		goto out;
	}
	if (!pfn_valid(pfn)) {
		r = -EOPNOTSUPP;
		goto out;
	}
	if (da >= p)
		goto out;

	map = NULL;
	pages = vmalloc_array(p, sizeof(struct page *));
	if (!pages) {
		r = -ENOMEM;
		goto out;
	}
	i = 0;
	do {
		long daa = dax_direct_access(dev->dax_dev, offset + i, p - i,
					     DAX_ACCESS, NULL, &pfn);

		if (daa <= 0) {
			r = daa ? daa : -EINVAL;
			goto out;
		}
		if (!pfn_valid(pfn)) {
			r = -EOPNOTSUPP;
			goto out;
		}
		while (daa-- && i < p) {
			pages[i++] = pfn_to_page(pfn);
			pfn++;
			if (!(i & 15))
				cond_resched();
		}
	} while (i < p);
	map = vmap(pages, p, VM_MAP, PAGE_KERNEL);
	if (!map)
		r = -ENOMEM;
	else
		*vmapped = true;
out:
	vfree(pages);
	dax_read_unlock(id);
	if (r)
		return ERR_PTR(r);
	shadow = jsnap_shadow_map(map, bytes);
	if (IS_ERR(shadow) && *vmapped)
		vunmap(map);
	return shadow;
}

void jsnap_dax_unmap(void *map, bool vmapped)
{
	map = jsnap_shadow_unmap(map);
	if (vmapped)
		vunmap(map);
}

/*
 * Synchronous dm-io between kernel memory (direct-mapped or vmapped pmem,
 * kmalloc or vmalloc memory) and a block device.  write selects the direction;
 * fua adds REQ_FUA.  Returns 0 or a negative errno.
 */
int jsnap_io(struct dm_io_client *client, struct block_device *bdev,
	     sector_t sector, sector_t count, void *mem, bool write, bool fua)
{
	struct dm_io_region region = {
		.bdev = bdev, .sector = sector, .count = count,
	};
	struct dm_io_request req = {
		.bi_opf = (write ? REQ_OP_WRITE : REQ_OP_READ) | REQ_SYNC |
			  (fua ? REQ_FUA : 0),
		.mem.type = is_vmalloc_addr(mem) ? DM_IO_VMA : DM_IO_KMEM,
		.mem.ptr.addr = mem,
		.client = client,
		.notify.fn = NULL,
	};
	unsigned long err_bits = 0;
	int r;

	r = dm_io(&req, 1, &region, &err_bits, NULL, IOPRIO_DEFAULT);
	if (!r && err_bits)
		r = -EIO;
	return r;
}

struct dm_io_client *jsnap_io_client_create(void)
{
	struct dm_io_client *c = dm_io_client_create();

	return IS_ERR(c) ? NULL : c;
}

void jsnap_io_client_destroy(struct dm_io_client *c)
{
	dm_io_client_destroy(c);
}

int jsnap_flush(struct block_device *bdev)
{
#ifdef JSNAP_FAULT
	return jsnap_fault_flush(bdev);
#else
	return blkdev_issue_flush(bdev);
#endif
}

struct workqueue_struct *jsnap_alloc_workqueue(const char *name)
{
	return alloc_workqueue("%s", WQ_MEM_RECLAIM | WQ_UNBOUND, 1, name);
}

void jsnap_destroy_workqueue(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}

void jsnap_flush_workqueue(struct workqueue_struct *wq)
{
	flush_workqueue(wq);
}

void jsnap_ti_set(struct dm_target *ti, bool discards, bool volatile_cache)
{
	ti->num_flush_bios = 1;
	ti->flush_supported = volatile_cache;
	ti->num_discard_bios = discards ? 1 : 0;
	ti->discards_supported = discards;
	ti->num_write_zeroes_bios = 0;
}

void jsnap_limits_no_volatile_cache(struct queue_limits *lim)
{
	lim->features &= ~(BLK_FEAT_WRITE_CACHE | BLK_FEAT_FUA);
}

void jsnap_set_error(struct dm_target *ti, const char *msg)
{
	ti->error = (char *)msg;
}

/* Raises a device-mapper event (dmsetup wait, dmeventd); may sleep. */
void jsnap_table_event(struct dm_target *ti)
{
	dm_table_event(ti->table);
}

bool jsnap_ti_is_write(struct dm_target *ti)
{
	return dm_table_get_mode(ti->table) & BLK_OPEN_WRITE;
}

blk_mode_t jsnap_open_mode(bool write)
{
	return BLK_OPEN_READ | (write ? BLK_OPEN_WRITE : 0);
}

void jsnap_random(void *buf, size_t len)
{
	get_random_bytes(buf, len);
}

/* Copy len bytes of a write bio, starting skip bytes into it, to dst. */
void jsnap_bio_copy_to_buf(struct bio *bio, unsigned int skip, void *dst,
			   unsigned int len)
{
	struct bvec_iter iter = bio->bi_iter;
	struct bio_vec bv;

	bio_advance_iter(bio, &iter, skip);
	while (len && iter.bi_size) {
		unsigned int n;
		void *src;

		bv = bio_iter_iovec(bio, iter);
		n = min(len, bv.bv_len);
		src = bvec_kmap_local(&bv);
		memcpy(dst, src, n);
		kunmap_local(src);
		dst += n;
		len -= n;
		bio_advance_iter_single(bio, &iter, n);
	}
}

/* The device number of the mapped device a target belongs to. */
dev_t jsnap_ti_devt(struct dm_target *ti)
{
	return disk_devt(dm_disk(dm_table_get_md(ti->table)));
}

void jsnap_bio_submit(struct bio *bio)
{
	submit_bio_noacct(bio);
}

/*
 * Write n regions from kernel memory (direct-mapped or vmapped pmem) to a
 * block device with asynchronous dm-io, all in flight together, and wait
 * for every one.  Returns 0 or -EIO if any failed.
 */
struct jsnap_batch {
	atomic_t pending;
	int error;
	struct completion done;
};

static void jsnap_batch_done(unsigned long error, unsigned long unsup,
			     void *context)
{
	struct jsnap_batch *b = context;

	if (error || unsup)
		WRITE_ONCE(b->error, -EIO);
	if (atomic_dec_and_test(&b->pending))
		complete(&b->done);
}

/* A batch starts with one reference, dropped by jsnap_batch_wait(). */
static void jsnap_batch_init(struct jsnap_batch *b)
{
	b->error = 0;
	atomic_set(&b->pending, 1);
	init_completion(&b->done);
}

static int jsnap_batch_wait(struct jsnap_batch *b)
{
	jsnap_batch_done(0, 0, b);
	wait_for_completion_io(&b->done);
	return b->error;
}

int jsnap_io_write_many(struct dm_io_client *client, struct block_device *bdev,
			const u64 *sectors, const u64 *counts, void *const *mems,
			unsigned int n)
{
	struct jsnap_batch b;
	unsigned int i;

	jsnap_batch_init(&b);
	for (i = 0; i < n; i++) {
		struct dm_io_region region = {
			.bdev = bdev, .sector = sectors[i], .count = counts[i],
		};
		struct dm_io_request req = {
			.bi_opf = REQ_OP_WRITE,
			.mem.type = is_vmalloc_addr(mems[i]) ? DM_IO_VMA : DM_IO_KMEM,
			.mem.ptr.addr = mems[i],
			.client = client,
			.notify.fn = jsnap_batch_done,
			.notify.context = &b,
		};

		atomic_inc(&b.pending);
		if (dm_io(&req, 1, &region, NULL, NULL, IOPRIO_DEFAULT))
			jsnap_batch_done(1, 0, &b);
	}
	return jsnap_batch_wait(&b);
}

unsigned int jsnap_noio_begin(void)
{
	return memalloc_noio_save();
}

void jsnap_noio_end(unsigned int flags)
{
	memalloc_noio_restore(flags);
}

struct dm_kcopyd_client *jsnap_kcopyd_create(void)
{
	/* No throttle: the copier yields to user I/O itself. */
	struct dm_kcopyd_client *kc = dm_kcopyd_client_create(NULL);

	return IS_ERR(kc) ? NULL : kc;
}

void jsnap_kcopyd_destroy(struct dm_kcopyd_client *kc)
{
	dm_kcopyd_client_destroy(kc);
}

static void jsnap_kcopyd_done(int read_err, unsigned long write_err,
			      void *context)
{
	jsnap_batch_done(read_err || write_err, 0, context);
}

/*
 * Copies n runs from src to the same sectors of dst with dm-kcopyd, all in
 * flight together, and waits for all of them.  -EIO if any run failed.
 */
int jsnap_kcopyd_copy_many(struct dm_kcopyd_client *kc,
			   struct block_device *src, struct block_device *dst,
			   const u64 *sectors, const u64 *counts,
			   unsigned int n)
{
	struct jsnap_batch b;
	unsigned int i;

	jsnap_batch_init(&b);
	for (i = 0; i < n; i++) {
		struct dm_io_region from = {
			.bdev = src, .sector = sectors[i], .count = counts[i],
		};
		struct dm_io_region to = {
			.bdev = dst, .sector = sectors[i], .count = counts[i],
		};

		atomic_inc(&b.pending);
		dm_kcopyd_copy(kc, &from, 1, &to, 0, jsnap_kcopyd_done, &b);
	}
	return jsnap_batch_wait(&b);
}
