// SPDX-License-Identifier: GPL-2.0
/*
 * dm-jsnap pmem ordering model: test build only (scripts/build-module.sh
 * --fault).
 *
 * A power cut of the VM keeps every CPU store to the file-backed NVDIMM,
 * fenced or not, so a missing pmem_wmb() can never show there.  With
 * fault_pmem_shadow=1 every journal mapping gets a shadow: the driver reads
 * and writes the shadow (what the CPUs see), and each store is recorded as
 * pending for the task that made it.  jsnap_pmem_fence() copies the current
 * content of the calling task's pending ranges to the real mapping, so the
 * NVDIMM holds exactly what real pmem is guaranteed to hold: what its
 * writer flushed and fenced.  (A fence orders the stores of the CPU that
 * issues it; the model is per task, which is stricter than per CPU only
 * when a task migrates between its stores and its fence, and the kernel's
 * context switch is serialising there.)
 *
 * fault_pmem_cut=N cuts the power at the N-th fence from now: every store
 * still unfenced at that moment (of any task, the cutting task's included)
 * reaches the NVDIMM or not, per 64-byte cache line (see power_cut), and the
 * machine restarts at once (QEMU runs with -no-reboot: it exits).  Any task
 * that fences after the cut waits for the reset there, so nothing that
 * depends on a fence happens after it.
 *
 * What the model does not produce: a fence persists the lines' current
 * content, so an old unfenced store never lands after a newer fenced one to
 * the same line; lines persist whole (hardware promises 8 bytes); entries
 * are keyed by task pointer (an exited task's entries wait for a task that
 * reuses the pointer); the shadow is filled with a plain copy (poisoned
 * pmem is not modelled).  One mapping of a journal at a time: a second one
 * (a table reload while the old table is live) would see a stale shadow,
 * so it is refused.
 */
#include <linux/atomic.h>
#include <linux/blkdev.h>
#include <linux/delay.h>
#include <linux/io.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/libnvdimm.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#include "shim.h"
#include "pmem_shadow.h"

static bool fault_pmem_shadow;
module_param(fault_pmem_shadow, bool, 0644);
MODULE_PARM_DESC(fault_pmem_shadow,
		 "test: stores reach pmem only at their writer's fence (journals mapped from now on)");

/* Fences until the cut; 0: no cut planned. */
static atomic_t cut_countdown = ATOMIC_INIT(0);

static int cut_set(const char *val, const struct kernel_param *kp)
{
	int n, r = kstrtoint(val, 0, &n);

	if (r)
		return r;
	if (n < 0)
		return -EINVAL;
	atomic_set(&cut_countdown, n);
	return 0;
}

static int cut_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&cut_countdown));
}

static const struct kernel_param_ops cut_ops = { .set = cut_set, .get = cut_get };
module_param_cb(fault_pmem_cut, &cut_ops, NULL, 0644);
MODULE_PARM_DESC(fault_pmem_cut,
		 "test: with fault_pmem_shadow, cut the power at the N-th fence from now (0: never)");

/* How unfenced stores persist at a cut: -1 chosen per cut, else 0-2. */
static int fault_pmem_cut_how = -1;
module_param(fault_pmem_cut_how, int, 0644);
MODULE_PARM_DESC(fault_pmem_cut_how,
		 "test: at a pmem cut, unfenced lines persist by a coin (0), newest store per task whole (1), none (2); -1 random");

/* How long the cutting task waits (ms) before the reset. */
static int fault_pmem_cut_ms = 100;
module_param(fault_pmem_cut_ms, int, 0644);
MODULE_PARM_DESC(fault_pmem_cut_ms,
		 "test: delay (ms) between a pmem cut and the reset; from 1000 the cutting task sleeps");

struct shadow {
	struct list_head list;
	phys_addr_t phys;	/* of the first byte: the same journal mapped twice */
	u8 *real;	/* the DAX mapping: what survives a power cut */
	u8 *cpu;	/* what the CPUs read and write */
	size_t len;
};

struct pending {
	struct list_head list;
	struct shadow *s;
	struct task_struct *task;
	size_t off, len;
};

static LIST_HEAD(shadows);
static LIST_HEAD(pendings);
static DEFINE_SPINLOCK(lock);
static bool cut;
static unsigned long fences;

/*
 * Fences issued where the task cannot sleep (under a spinlock): after a
 * cut such a fence spins until the reset, and with every vCPU spinning
 * (the others on the same lock) nothing else runs, dm-log-writes' log
 * thread included, so the disks' logs lose writes that had completed and
 * been flushed before the cut.  The driver fences only where it may
 * sleep; tests read this count (it must stay 0).
 */
static atomic_t fences_atomic = ATOMIC_INIT(0);

static int fences_atomic_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&fences_atomic));
}

static const struct kernel_param_ops atomic_ops = { .get = fences_atomic_get };
module_param_cb(fault_pmem_fences_atomic, &atomic_ops, NULL, 0444);
MODULE_PARM_DESC(fault_pmem_fences_atomic,
		 "test: shadow-pmem fences issued by a task that could not sleep (read only; must stay 0)");

/*
 * dm-log-writes (the power-cut tests' volatile-cache model) logs a write
 * only when a flush that was mapped after the write completed completes
 * itself, and logs flushes in the order they complete.  With two flushes in
 * flight, the one mapped later may complete first: writes that completed
 * before it, but were taken by the earlier one, are logged after it, and
 * the replay puts an older write over a newer one to the same sector (a
 * state no disk can be in).  Measured in a 2-vCPU guest, one task writing
 * a sector twice then flushing, another flushing: 744 of 8000 second
 * writes logged before the first with two hardware queues, 22 with one, 0
 * with the flushes one at a time.  fault_flush_serial=1 (set by
 * tests/powercut.sh --log-writes) issues the driver's flushes one at a time.
 * Not covered: flushes a rw jsnap-view remaps to the store (no power-cut
 * scenario writes through a rw view under dm-log-writes).
 */
static bool fault_flush_serial;
module_param(fault_flush_serial, bool, 0644);
MODULE_PARM_DESC(fault_flush_serial,
		 "test: issue the driver's device flushes one at a time (dm-log-writes logs them in order)");

static DEFINE_MUTEX(flush_serial);

int jsnap_fault_flush(struct block_device *bdev)
{
	int ret;

	if (!READ_ONCE(fault_flush_serial))
		return blkdev_issue_flush(bdev);
	mutex_lock(&flush_serial);
	ret = blkdev_issue_flush(bdev);
	mutex_unlock(&flush_serial);
	return ret;
}

static bool fault_cut_after_cow;
module_param(fault_cut_after_cow, bool, 0644);
MODULE_PARM_DESC(fault_cut_after_cow,
		 "test: with fault_pmem_shadow, cut the power at the first fence after a destage batch overwrote chunks it preserved");

void jsnap_shadow_cow_overwritten(void)
{
	if (READ_ONCE(fault_cut_after_cow) && READ_ONCE(fault_pmem_shadow) && !list_empty(&shadows))
		atomic_cmpxchg(&cut_countdown, 0, 1);
}

void *jsnap_shadow_map(void *real, size_t len)
{
	unsigned long flags;
	struct shadow *s, *t;

	if (!READ_ONCE(fault_pmem_shadow))
		return real;
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return ERR_PTR(-ENOMEM);
	s->cpu = vmalloc(len);
	if (!s->cpu) {
		kfree(s);
		return ERR_PTR(-ENOMEM);
	}
	memcpy(s->cpu, real, len);
	s->real = real;
	s->len = len;
	s->phys = is_vmalloc_addr(real) ? page_to_phys(vmalloc_to_page(real)) : virt_to_phys(real);
	spin_lock_irqsave(&lock, flags);
	list_for_each_entry(t, &shadows, list) {
		if (t->phys == s->phys) {
			spin_unlock_irqrestore(&lock, flags);
			pr_err("dm-jsnap: fault: pmem shadow: this journal is mapped already (a reload with the old table live is not modelled)\n");
			vfree(s->cpu);
			kfree(s);
			return ERR_PTR(-EBUSY);
		}
	}
	list_add(&s->list, &shadows);
	spin_unlock_irqrestore(&lock, flags);
	pr_info("dm-jsnap: fault: pmem shadow of %zu bytes: stores reach pmem at their writer's fence\n",
		len);
	return s->cpu;
}

/* The shadow holding p..p+len, or NULL (lock held). */
static struct shadow *find(const void *p, size_t len)
{
	struct shadow *s;

	list_for_each_entry(s, &shadows, list)
		if ((const u8 *)p >= s->cpu && (const u8 *)p + len <= s->cpu + s->len)
			return s;
	return NULL;
}

/* Persists what the CPUs now see in p's range, and forgets p (lock held). */
static void apply(struct pending *p)
{
	memcpy_flushcache(p->s->real + p->off, p->s->cpu + p->off, p->len);
	list_del(&p->list);
	kfree(p);
}

void *jsnap_shadow_unmap(void *map)
{
	unsigned long flags;
	struct pending *p, *t;
	struct shadow *s;
	void *real;

	spin_lock_irqsave(&lock, flags);
	s = find(map, 1);
	if (!s || s->cpu != map) {
		spin_unlock_irqrestore(&lock, flags);
		return map;
	}
	/* Not a power cut: the caches reach pmem in the end (after a cut,
	 * nothing more does). */
	list_for_each_entry_safe(p, t, &pendings, list) {
		if (p->s != s)
			continue;
		if (cut) {
			list_del(&p->list);
			kfree(p);
		} else {
			apply(p);
		}
	}
	pmem_wmb();
	list_del(&s->list);
	spin_unlock_irqrestore(&lock, flags);
	real = s->real;
	vfree(s->cpu);
	kfree(s);
	return real;
}

void jsnap_shadow_stored(void *dst, size_t len)
{
	unsigned long flags;
	struct pending *p;
	struct shadow *s;

	if (!len)
		return;
	p = kmalloc(sizeof(*p), GFP_ATOMIC | __GFP_NOWARN);
	spin_lock_irqsave(&lock, flags);
	s = find(dst, len);
	if (!s || cut) {
		spin_unlock_irqrestore(&lock, flags);
		kfree(p);
		return;
	}
	if (!p) {
		/* Reaching pmem early is always allowed. */
		memcpy_flushcache(s->real + ((u8 *)dst - s->cpu), dst, len);
		spin_unlock_irqrestore(&lock, flags);
		return;
	}
	p->s = s;
	p->task = current;
	p->off = (u8 *)dst - s->cpu;
	p->len = len;
	list_add_tail(&p->list, &pendings);
	spin_unlock_irqrestore(&lock, flags);
}

/*
 * A task that fences after the cut waits here for the reset.  One that
 * cannot sleep may hold a spinlock another CPU spins on: with every vCPU
 * busy, the cutting task (sleeping out fault_pmem_cut_ms) would never run
 * again, and the guest would lock up instead of restarting.  So a waiter
 * that cannot sleep resets the machine itself once the cut's delay (and a
 * margin) has passed, counted in busy-wait delays, which need no interrupt.
 */
static void __noreturn wait_for_reset(void)
{
	unsigned int waited = 0;
	unsigned int limit = clamp(READ_ONCE(fault_pmem_cut_ms), 0, 60000) + 500;

	if (!preemptible())
		pr_emerg("dm-jsnap: fault: a fence after the cut waits where it cannot sleep: the disks' logs may miss flushed writes\n");
	for (;;) {
		if (preemptible()) {
			msleep(10);
			continue;
		}
		mdelay(10);
		waited += 10;
		if (waited >= limit)
			emergency_restart();
	}
}

/* Is p the last store its task has pending (lock held)? */
static bool last_of_task(struct pending *p)
{
	struct pending *q = p;

	list_for_each_entry_continue(q, &pendings, list)
		if (q->task == p->task)
			return false;
	return true;
}

/*
 * Every unfenced store persists or not, per cache line (lock held), in one
 * of three ways chosen at random: each line by a coin; each task's newest
 * store whole and a coin for the lines of its older ones (the order a
 * missing fence would need to go wrong); none.
 */
static void power_cut(void)
{
	static const char *const how[] = { "each line by a coin", "newest store per task whole",
					   "none" };
	unsigned long lines = 0, kept = 0;
	int forced = READ_ONCE(fault_pmem_cut_how);
	unsigned int mode = forced >= 0 && forced <= 2 ? forced : get_random_u32() % 3;
	struct pending *p;

	cut = true;
	list_for_each_entry(p, &pendings, list) {
		size_t a = p->off & ~(size_t)63, end = p->off + p->len;
		bool whole = mode == 1 && last_of_task(p);

		for (; a < end; a += 64, lines++) {
			size_t from = max(a, p->off), to = min(a + 64, end);

			if (mode != 2 && (whole || (get_random_u32() & 1))) {
				memcpy_flushcache(p->s->real + from, p->s->cpu + from, to - from);
				kept++;
			}
		}
	}
	pmem_wmb();
	pr_emerg("dm-jsnap: fault: pmem power cut at fence %lu: %lu of %lu unfenced cache lines persisted (%s)\n",
		 fences, kept, lines, how[mode]);
}

void jsnap_shadow_fence(void)
{
	/* (before the lock, which disables interrupts) */
	bool can_sleep = preemptible();
	unsigned long flags;
	struct pending *p, *t;

	if (list_empty(&shadows) && !READ_ONCE(cut))
		return;
	if (!can_sleep)
		atomic_inc(&fences_atomic);
	spin_lock_irqsave(&lock, flags);
	if (cut) {
		spin_unlock_irqrestore(&lock, flags);
		wait_for_reset();
	}
	fences++;
	/*
	 * A long delay is for other tasks to finish their I/O: it cannot be
	 * had from a fence under a spinlock (the cutting task would spin with
	 * preemption off, and the others on the lock); the cut then comes at
	 * the next fence that may sleep.
	 */
	if (atomic_read(&cut_countdown) > 0 &&
	    (READ_ONCE(fault_pmem_cut_ms) < 1000 || can_sleep ||
	     atomic_read(&cut_countdown) > 1) &&
	    atomic_dec_and_test(&cut_countdown)) {
		int ms = READ_ONCE(fault_pmem_cut_ms);
		bool sleep = ms >= 1000 && can_sleep;

		/*
		 * Not preempted until the reset (unless asked to sleep): a task
		 * that fences after the cut may wait holding a spinlock that a
		 * task scheduled here would spin on.
		 */
		if (!sleep)
			preempt_disable();
		power_cut();
		spin_unlock_irqrestore(&lock, flags);
		/*
		 * Let the console show the line and, with a long delay, other
		 * tasks finish I/O that needs no fence (dm-log-writes writing
		 * its log); fencers wait meanwhile.
		 */
		if (sleep)
			msleep(ms);
		else
			mdelay(clamp(ms, 0, 999));
		emergency_restart();
		wait_for_reset();
	}
	list_for_each_entry_safe(p, t, &pendings, list) {
		if (p->task != current)
			continue;
		apply(p);
	}
	spin_unlock_irqrestore(&lock, flags);
}
