/*
 * Power-cut writer and scanner for dm-jsnap (tests/powercut.sh --scenario
 * journal).  Compiled on the host (gcc -O2 pctool.c -lz), run in the guest
 * (fast under TCG, unlike Python).  Same data and acklog formats as tests/powercut/pc.py,
 * which does the verification logic; write_params() and pattern() here
 * must stay identical to the ones there.
 *
 *   pctool write DEV ACKLOG BASE_SEQ SEED NBLK T0 [THREADS]
 *       THREADS (default 1) concurrent write + ack loops until killed (or
 *       the acklog is full: then idle); thread t writes seq BASE_SEQ+t,
 *       BASE_SEQ+t+THREADS, ... (one write in flight each), and logs each
 *       acknowledged write in slot seq-BASE_SEQ with its submit and
 *       completion times (CLOCK_MONOTONIC).
 *   pctool snapshot NAME SECTOR
 *       runs `dmsetup message NAME SECTOR snapshot`; prints "SENT TS" before
 *       and "DONE TR RC" after: CLOCK_MONOTONIC ns (the clock of the ack
 *       times) before the message was sent and after it returned, and its
 *       exit status.
 *   pctool scan DEV NBLK OUT
 *       for each of the first NBLK 4 KiB blocks (0 = whole device), write
 *       a 16-byte record to OUT: u64 seq (0 = all zeros, 2^64-1 = neither
 *       zeros nor a valid pattern of this block), u64 hash of the block.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "blocks.h"

#define ACKMAGIC 0x534E41505F41434BULL /* 0x4A534E41505F41434B & (2^64-1) */
#define ACK_BASE (2u << 20)
#define ACK_SIZE 512
#define F_DSYNC 1
#define F_FDATASYNC 2

#define HOT_BLOCKS 2048
#define MAX_BLOCKS 256 /* 1 MiB */

struct param {
	uint64_t start, n, flags;
};

/* = write_params() in pc.py */
static struct param write_params(uint64_t seed, uint64_t seq, uint64_t nblk)
{
	uint64_t x = mix64(seed * 0xD1B54A32D192ED03ULL + seq), r[6];
	for (int k = 1; k < 6; k++)
		r[k] = mix64(x + k * 0x9E3779B97F4A7C15ULL);
	uint64_t sizes[10] = { 1, 1, 2, 4, 8, 16, 32, 64, 1 + r[2] % 64, MAX_BLOCKS };
	struct param p;
	p.n = sizes[r[1] % 10];
	uint64_t lo = 0, hi = nblk;
	if (r[3] % 2 == 0 && nblk >= HOT_BLOCKS)
		hi = HOT_BLOCKS;
	p.start = lo + r[4] % (hi - p.n + 1 - lo);
	uint64_t f = r[5] % 100;
	p.flags = f < 10 ? F_DSYNC : f < 15 ? F_FDATASYNC : 0;
	return p;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* One writer thread: writes seq = base + t, base + t + K, ... (QD1 each). */
struct wctx {
	uint64_t base, seed, nblk, k, t;
	int fd, sfd, afd;
	size_t np;
	double g0;
	uint64_t nbytes, acked;
	pthread_mutex_t *out;
};

static void *wthread(void *arg)
{
	struct wctx *c = arg;
	uint8_t *buf, *abuf;
	if (posix_memalign((void **)&buf, 4096, MAX_BLOCKS * BS) ||
	    posix_memalign((void **)&abuf, 4096, ACK_SIZE))
		exit(1);
	double tp = now(), lat_max = 0;
	for (uint64_t i = 0;; i++) {
		uint64_t slot = i * c->k + c->t, seq = c->base + slot;
		if (slot >= c->np) {
			printf("# powercut writer %llu: acklog full, idling\n", (unsigned long long)c->t);
			fflush(stdout);
			for (;;)
				pause();
		}
		struct param p = write_params(c->seed, seq, c->nblk);
		for (uint64_t k = 0; k < p.n; k++)
			pattern(buf + k * BS, p.start + k, seq);
		uint64_t ts = mono_ns();
		double t1 = now();
		ssize_t w = pwrite(p.flags & F_DSYNC ? c->sfd : c->fd, buf, (size_t)p.n * BS,
				   (off_t)p.start * BS);
		if (w != (ssize_t)p.n * BS) {
			printf("not ok - powercut writer: write seq %llu (block %llu, %llu blocks) returned %zd: %s\n",
			       (unsigned long long)seq, (unsigned long long)p.start, (unsigned long long)p.n, w, w < 0 ? strerror(errno) : "short");
			fflush(stdout);
			exit(1);
		}
		/* completed (durable, as every completed write is) when pwrite returns */
		uint64_t tc = mono_ns();
		if ((p.flags & F_FDATASYNC) && fdatasync(c->fd)) {
			printf("not ok - powercut writer: fdatasync after seq %llu: %s\n",
			       (unsigned long long)seq, strerror(errno));
			fflush(stdout);
			exit(1);
		}
		double lat = now() - t1;
		if (lat > lat_max)
			lat_max = lat;
		/* acknowledged: record it, with its submit and completion times */
		memset(abuf, 0, ACK_SIZE);
		uint64_t rec[9] = { ACKMAGIC, c->seed, seq, p.start, p.n, p.flags, ts, tc, c->k };
		memcpy(abuf, rec, sizeof(rec));
		uint32_t crc = crc32(0, abuf, ACK_SIZE - 4);
		memcpy(abuf + ACK_SIZE - 4, &crc, 4);
		if (pwrite(c->afd, abuf, ACK_SIZE, ACK_BASE + (off_t)slot * ACK_SIZE) != ACK_SIZE) {
			printf("not ok - powercut writer: acklog write seq %llu: %s\n",
			       (unsigned long long)seq, strerror(errno));
			fflush(stdout);
			exit(1);
		}
		pthread_mutex_lock(c->out);
		c->nbytes += (uint64_t)p.n * BS;
		c->acked = i + 1;
		pthread_mutex_unlock(c->out);
		double t = now();
		if (c->t == 0 && t - tp >= 1.0) {
			uint64_t nb = 0;
			pthread_mutex_lock(c->out);
			for (struct wctx *o = c; o < c + c->k; o++)
				nb += o->nbytes;
			pthread_mutex_unlock(c->out);
			printf("# powercut writer: t=%.1f acked seq=%llu (thread 0) %.1f MiB by %llu threads, max write latency %.0f ms\n",
			       t - c->g0, (unsigned long long)seq, nb / 1048576.0,
			       (unsigned long long)c->k, lat_max * 1000);
			fflush(stdout);
			tp = t;
			lat_max = 0;
		}
	}
	return NULL;
}

static int writer(int argc, char **argv)
{
	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: pctool write DEV ACKLOG BASE_SEQ SEED NBLK T0 [THREADS]\n");
		return 2;
	}
	const char *dev = argv[0], *ack = argv[1];
	uint64_t base = strtoull(argv[2], NULL, 0);
	uint64_t seed = strtoull(argv[3], NULL, 0);
	uint64_t nblk = strtoull(argv[4], NULL, 0);
	double g0 = atof(argv[5]);
	uint64_t k = argc == 7 ? strtoull(argv[6], NULL, 0) : 1;
	if (k < 1 || k > 64) {
		fprintf(stderr, "pctool: THREADS must be 1..64\n");
		return 2;
	}
	int fd = open(dev, O_WRONLY | O_DIRECT);
	int sfd = open(dev, O_WRONLY | O_DIRECT | O_DSYNC);
	int afd = open(ack, O_WRONLY | O_DIRECT | O_DSYNC);
	if (fd < 0 || sfd < 0 || afd < 0) {
		perror("open");
		return 1;
	}
	off_t asz = lseek(afd, 0, SEEK_END);
	size_t np = (asz - ACK_BASE) / ACK_SIZE;
	printf("# powercut writer: start base_seq=%llu nblk=%llu threads=%llu (C)\n",
	       (unsigned long long)base, (unsigned long long)nblk, (unsigned long long)k);
	fflush(stdout);
	static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;
	struct wctx *c = calloc(k, sizeof(*c));
	pthread_t *th = calloc(k, sizeof(*th));
	if (!c || !th)
		return 1;
	for (uint64_t t = 0; t < k; t++) {
		c[t] = (struct wctx){ .base = base, .seed = seed, .nblk = nblk, .k = k, .t = t,
				      .fd = fd, .sfd = sfd, .afd = afd, .np = np, .g0 = g0,
				      .out = &out };
		if (pthread_create(&th[t], NULL, wthread, &c[t]))
			return 1;
	}
	for (uint64_t t = 0; t < k; t++)
		pthread_join(th[t], NULL);
	return 0;
}

/* pctool snapshot NAME SECTOR */
static int snapshot(const char *name, const char *sector)
{
	uint64_t tr;
	int st = 0;
	pid_t pid;

	printf("SENT %llu\n", (unsigned long long)mono_ns());
	fflush(stdout);
	pid = fork();

	if (pid < 0)
		return 1;
	if (pid == 0) {
		execlp("dmsetup", "dmsetup", "message", name, sector, "snapshot", (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return 1;
	tr = mono_ns();
	printf("DONE %llu %d\n", (unsigned long long)tr, WIFEXITED(st) ? WEXITSTATUS(st) : 128);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "snapshot"))
		return snapshot(argv[2], argv[3]);
	if (argc >= 2 && !strcmp(argv[1], "write"))
		return writer(argc - 2, argv + 2);
	if (argc == 5 && !strcmp(argv[1], "scan"))
		return scan(argv[2], strtoull(argv[3], NULL, 0), argv[4]);
	fprintf(stderr, "usage: pctool write DEV ACKLOG BASE_SEQ SEED NBLK T0 [THREADS]\n"
			"       pctool scan DEV NBLK OUT\n"
			"       pctool snapshot NAME SECTOR\n");
	return 2;
}
