/*
 * Power-cut writer and scanner for dm-jsnap (tests/powercut.sh).  Compiled
 * on the host (gcc -O2 pctool.c -lz), run in the guest (fast under TCG,
 * unlike Python).  Same data and acklog formats as tests/powercut/pc.py,
 * which does the verification logic; write_params() and pattern() here
 * must stay identical to the ones there.
 *
 *   pctool write DEV ACKLOG BASE_SEQ SEED NBLK T0
 *       write + ack loop until killed (or the acklog is full: then idle).
 *   pctool scan DEV NBLK OUT
 *       for each of the first NBLK 4 KiB blocks (0 = whole device), write
 *       a 16-byte record to OUT: u64 seq (0 = all zeros, 2^64-1 = neither
 *       zeros nor a valid pattern of this block), u64 hash of the block.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
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

struct param {
	uint64_t start, n, flags;
};

/* = write_params() in pc.py */
static struct param write_params(uint64_t seed, uint64_t seq, uint64_t nblk)
{
	uint64_t x = mix64(seed * 0xD1B54A32D192ED03ULL + seq), r[6];
	for (int k = 1; k < 6; k++)
		r[k] = mix64(x + k * 0x9E3779B97F4A7C15ULL);
	uint64_t sizes[9] = { 1, 1, 2, 4, 8, 16, 32, 64, 1 + r[2] % 64 };
	struct param p;
	p.n = sizes[r[1] % 9];
	uint64_t lo = 0, hi = nblk;
	if (r[3] % 2 == 0 && nblk >= HOT_BLOCKS)
		hi = HOT_BLOCKS;
	p.start = lo + r[4] % (hi - p.n + 1 - lo);
	uint64_t f = r[5] % 100;
	p.flags = f < 10 ? F_DSYNC : f < 15 ? F_FDATASYNC : 0;
	return p;
}

static int writer(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: pctool write DEV ACKLOG BASE_SEQ SEED NBLK T0\n");
		return 2;
	}
	const char *dev = argv[0], *ack = argv[1];
	uint64_t base = strtoull(argv[2], NULL, 0);
	uint64_t seed = strtoull(argv[3], NULL, 0);
	uint64_t nblk = strtoull(argv[4], NULL, 0);
	double g0 = atof(argv[5]);

	int fd = open(dev, O_WRONLY | O_DIRECT);
	int sfd = open(dev, O_WRONLY | O_DIRECT | O_DSYNC);
	int afd = open(ack, O_WRONLY | O_DIRECT | O_DSYNC);
	if (fd < 0 || sfd < 0 || afd < 0) {
		perror("open");
		return 1;
	}
	uint8_t *buf, *abuf;
	if (posix_memalign((void **)&buf, 4096, 64 * BS) ||
	    posix_memalign((void **)&abuf, 4096, ACK_SIZE))
		return 1;
	double t0 = now(), tp = t0, lat_max = 0;
	uint64_t nbytes = 0;
	off_t asz = lseek(afd, 0, SEEK_END);
	size_t np = (asz - ACK_BASE) / ACK_SIZE;
	printf("# powercut writer: start base_seq=%llu nblk=%llu (C)\n",
	       (unsigned long long)base, (unsigned long long)nblk);
	fflush(stdout);
	for (size_t i = 0;; i++) {
		if (i >= np) {
			printf("# powercut writer: acklog full, idling\n");
			fflush(stdout);
			for (;;)
				pause();
		}
		uint64_t seq = base + i;
		struct param p = write_params(seed, seq, nblk);
		for (uint64_t k = 0; k < p.n; k++)
			pattern(buf + k * BS, p.start + k, seq);
		double t1 = now();
		ssize_t w = pwrite(p.flags & F_DSYNC ? sfd : fd, buf, (size_t)p.n * BS,
				   (off_t)p.start * BS);
		if (w != (ssize_t)p.n * BS) {
			printf("not ok - powercut writer: write seq %llu (block %llu, %llu blocks) returned %zd: %s\n",
			       (unsigned long long)seq, (unsigned long long)p.start, (unsigned long long)p.n, w, w < 0 ? strerror(errno) : "short");
			return 1;
		}
		if ((p.flags & F_FDATASYNC) && fdatasync(fd)) {
			printf("not ok - powercut writer: fdatasync after seq %llu: %s\n",
			       (unsigned long long)seq, strerror(errno));
			return 1;
		}
		double lat = now() - t1;
		if (lat > lat_max)
			lat_max = lat;
		/* acknowledged: record it */
		memset(abuf, 0, ACK_SIZE);
		uint64_t rec[6] = { ACKMAGIC, seed, seq, p.start, p.n, p.flags };
		memcpy(abuf, rec, sizeof(rec));
		uint32_t crc = crc32(0, abuf, ACK_SIZE - 4);
		memcpy(abuf + ACK_SIZE - 4, &crc, 4);
		if (pwrite(afd, abuf, ACK_SIZE, ACK_BASE + (off_t)i * ACK_SIZE) != ACK_SIZE) {
			printf("not ok - powercut writer: acklog write seq %llu: %s\n",
			       (unsigned long long)seq, strerror(errno));
			return 1;
		}
		nbytes += (uint64_t)p.n * BS;
		double t = now();
		if (t - tp >= 1.0) {
			printf("# powercut writer: t=%.1f acked seq=%llu writes=%zu %.1f MiB (%.2f MiB/s) max write latency %.0f ms\n",
			       t - g0, (unsigned long long)seq, i + 1, nbytes / 1048576.0,
			       nbytes / 1048576.0 / (t - t0), lat_max * 1000);
			fflush(stdout);
			tp = t;
			lat_max = 0;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "write"))
		return writer(argc - 2, argv + 2);
	if (argc == 5 && !strcmp(argv[1], "scan"))
		return scan(argv[2], strtoull(argv[3], NULL, 0), argv[4]);
	fprintf(stderr, "usage: pctool write DEV ACKLOG BASE_SEQ SEED NBLK T0\n"
			"       pctool scan DEV NBLK OUT\n");
	return 2;
}
