/*
 * Writer, scanner and poller for tests/powercut.sh --scenario mirror
 * (one-way mirror under power cuts).  Compiled on the host (gcc -O2
 * mctool.c -lz), run in the guest.  The block format is the one of
 * tests/powercut/pctool.c (blocks.h; 4 KiB blocks, 8 sectors each starting with
 * MAGIC, block number, seq, sector index, filled with a word derived from
 * (block, seq), crc32 of the block in its last 4 bytes); the ack records
 * are read by tests/powercut/mc.py.
 *
 *   mctool write W DEV ACKDEV BASE SEED NBLK T0 [--count N] [--lo B]
 *                [--hi B] [--hot N] [--script START:N[,START:N...]]
 *       QD1 writer number W (0 = volume A, 1 = volume B) with O_DIRECT;
 *       write i carries seq BASE + 2*i + W.  Every write is logged in
 *       writer W's ack area of ACKDEV (O_DIRECT|O_DSYNC, 512-byte records):
 *       slot 0 (before the first write) names write 0; slot i+1 (after
 *       write i returned) acknowledges write i with its submit and
 *       completion times and names write i+1, so that the verifier knows
 *       the write in flight at a power cut.  Random writes of 1..16 blocks
 *       (half of them in the first --hot blocks of [lo, hi)), or the
 *       --script list; ends after --count writes or the script (the last
 *       record names no next write), else runs until killed.
 *   mctool scan DEV NBLK OUT
 *       per block of the first NBLK (0 = all) 4 KiB blocks, 16 bytes to OUT:
 *       u64 seq (0 = zeros, 2^64-1 = not a valid pattern of this block),
 *       u64 content hash.
 *   mctool fill DEV NBLK SEQ
 *       write pattern(b, SEQ) to blocks 0..NBLK-1.
 *   mctool waitdata DEV START N SEQ TIMEOUT_S
 *       poll (O_DIRECT reads) until blocks START..START+N-1 of DEV hold
 *       seq SEQ; exit 0 then, 1 on timeout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../powercut/blocks.h"

#define ACKMAGIC 0x4A534D4952414B31ULL /* "JSMIRAK1" */
#define ACK_SIZE 512
#define ACK_AREA0 (2ull << 20)
#define ACK_AREA_SIZE (31ull << 20)
#define MAXN 16
#define K_START 1
#define K_ACK 2

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int fill(const char *dev, uint64_t nblk, uint64_t seq)
{
	int fd = open(dev, O_WRONLY | O_DIRECT);
	uint8_t *buf;
	if (fd < 0 || posix_memalign((void **)&buf, 4096, 256 * BS)) {
		perror(dev);
		return 1;
	}
	for (uint64_t b0 = 0; b0 < nblk; b0 += 256) {
		size_t cnt = nblk - b0 < 256 ? nblk - b0 : 256;
		for (size_t k = 0; k < cnt; k++)
			pattern(buf + k * BS, b0 + k, seq);
		if (pwrite(fd, buf, cnt * BS, (off_t)b0 * BS) != (ssize_t)(cnt * BS)) {
			perror("mctool fill: pwrite");
			return 1;
		}
	}
	if (fsync(fd)) {
		perror("mctool fill: fsync");
		return 1;
	}
	close(fd);
	return 0;
}

static int waitdata(const char *dev, uint64_t start, uint64_t n, uint64_t seq, double tmo)
{
	int fd = open(dev, O_RDONLY | O_DIRECT);
	uint8_t *buf;
	if (fd < 0 || n == 0 || n > MAXN || posix_memalign((void **)&buf, 4096, n * BS)) {
		perror(dev);
		return 2;
	}
	double t0 = now();
	for (;;) {
		if (pread(fd, buf, n * BS, (off_t)start * BS) != (ssize_t)(n * BS)) {
			perror("mctool waitdata: pread");
			return 2;
		}
		uint64_t k;
		for (k = 0; k < n && blkseq(buf + k * BS, start + k) == seq; k++)
			;
		if (k == n)
			return 0;
		if (now() - t0 > tmo)
			return 1;
		usleep(100000);
	}
}

struct wparam {
	uint64_t start, n;
};

/* random write i of writer w: 1..16 blocks in [lo, hi), half of them in
 * the first `hot` blocks of it (overlaps between the writers) */
static struct wparam rand_params(uint64_t seed, uint64_t w, uint64_t seq, uint64_t lo,
				 uint64_t hi, uint64_t hot)
{
	uint64_t x = mix64(seed * 0xD1B54A32D192ED03ULL + seq * 2654435761u + w), r[5];
	for (int k = 1; k < 5; k++)
		r[k] = mix64(x + k * 0x9E3779B97F4A7C15ULL);
	static const uint64_t sizes[8] = { 1, 1, 2, 3, 4, 8, 12, 16 };
	struct wparam p;
	p.n = r[1] % 4 == 0 ? 1 + r[2] % MAXN : sizes[r[1] % 8];
	uint64_t h = hi;
	if (r[3] % 2 == 0 && hot && lo + hot < hi)
		h = lo + hot;
	if (h - lo < p.n)
		p.n = h - lo;
	p.start = lo + r[4] % (h - lo - p.n + 1);
	return p;
}

struct ackrec {
	uint64_t magic, seed, base, w, slot, kind;
	uint64_t seq, start, n, t_sub, t_ack;
	uint64_t next_seq, next_start, next_n;
};

static int put_ack(int afd, uint8_t *abuf, uint64_t w, const struct ackrec *r)
{
	memset(abuf, 0, ACK_SIZE);
	memcpy(abuf, r, sizeof(*r));
	uint32_t crc = crc32(0, abuf, ACK_SIZE - 4);
	memcpy(abuf + ACK_SIZE - 4, &crc, 4);
	off_t off = ACK_AREA0 + w * ACK_AREA_SIZE + r->slot * ACK_SIZE;
	if (pwrite(afd, abuf, ACK_SIZE, off) != ACK_SIZE) {
		printf("not ok - powercut-mirror writer %c: ack log write slot %llu: %s\n",
		       w ? 'B' : 'A', (unsigned long long)r->slot, strerror(errno));
		return 1;
	}
	return 0;
}

static int writer(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: mctool write W DEV ACKDEV BASE SEED NBLK T0 [opts]\n");
		return 2;
	}
	uint64_t w = strtoull(argv[0], NULL, 0);
	const char *dev = argv[1], *ack = argv[2];
	uint64_t base = strtoull(argv[3], NULL, 0);
	uint64_t seed = strtoull(argv[4], NULL, 0);
	uint64_t nblk = strtoull(argv[5], NULL, 0);
	double g0 = atof(argv[6]);
	uint64_t count = ~0ULL, lo = 0, hi = nblk, hot = 512;
	struct wparam script[64];
	size_t nscript = 0;
	for (int i = 7; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--count"))
			count = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--lo"))
			lo = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--hi"))
			hi = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--hot"))
			hot = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--script")) {
			char *s = argv[i + 1];
			while (*s && nscript < 64) {
				char *e;
				script[nscript].start = strtoull(s, &e, 0);
				if (*e != ':')
					return 2;
				script[nscript].n = strtoull(e + 1, &e, 0);
				nscript++;
				s = *e == ',' ? e + 1 : e;
			}
			count = nscript;
		} else {
			fprintf(stderr, "mctool write: bad option %s\n", argv[i]);
			return 2;
		}
	}
	if (w > 1 || hi > nblk || lo >= hi || base % 2) {
		fprintf(stderr, "mctool write: bad arguments\n");
		return 2;
	}
	for (size_t k = 0; k < nscript; k++)
		if (script[k].n == 0 || script[k].n > MAXN || script[k].start + script[k].n > nblk)
			return 2;
	uint64_t nslots = ACK_AREA_SIZE / ACK_SIZE - 1;
	if (count > nslots - 1)
		count = nslots - 1;
	int fd = open(dev, O_WRONLY | O_DIRECT);
	int afd = open(ack, O_WRONLY | O_DIRECT | O_DSYNC);
	if (fd < 0 || afd < 0) {
		perror("mctool write: open");
		return 1;
	}
	uint8_t *buf, *abuf;
	if (posix_memalign((void **)&buf, 4096, MAXN * BS) ||
	    posix_memalign((void **)&abuf, 4096, ACK_SIZE))
		return 1;
	char name = w ? 'B' : 'A';
#define PARAMS(i) (nscript ? script[i] : rand_params(seed, w, base + 2 * (i) + w, lo, hi, hot))
	struct wparam cur = PARAMS(0);
	struct ackrec r = { ACKMAGIC, seed, base, w, 0, K_START, 0, 0, 0, 0, 0,
			    count ? base + w : 0, cur.start, count ? cur.n : 0 };
	if (put_ack(afd, abuf, w, &r))
		return 1;
	printf("# powercut-mirror writer %c: start base=%llu blocks [%llu,%llu) count=%lld\n", name,
	       (unsigned long long)base, (unsigned long long)lo, (unsigned long long)hi,
	       (long long)count);
	fflush(stdout);
	double t0 = now(), tp = t0, lat_max = 0;
	uint64_t nbytes = 0;
	for (uint64_t i = 0; i < count; i++) {
		uint64_t seq = base + 2 * i + w;
		for (uint64_t k = 0; k < cur.n; k++)
			pattern(buf + k * BS, cur.start + k, seq);
		uint64_t ts = mono_ns();
		ssize_t got = pwrite(fd, buf, cur.n * BS, (off_t)cur.start * BS);
		uint64_t ta = mono_ns();
		if (got != (ssize_t)(cur.n * BS)) {
			printf("not ok - powercut-mirror writer %c: write seq %llu (block %llu, %llu blocks) returned %zd: %s\n",
			       name, (unsigned long long)seq, (unsigned long long)cur.start,
			       (unsigned long long)cur.n, got, got < 0 ? strerror(errno) : "short");
			return 1;
		}
		if ((ta - ts) / 1e9 > lat_max)
			lat_max = (ta - ts) / 1e9;
		struct wparam next = { 0, 0 };
		if (i + 1 < count)
			next = PARAMS(i + 1);
		struct ackrec a = { ACKMAGIC, seed, base, w, i + 1, K_ACK, seq, cur.start, cur.n,
				    ts, ta, next.n ? seq + 2 : 0, next.start, next.n };
		if (put_ack(afd, abuf, w, &a))
			return 1;
		nbytes += cur.n * BS;
		cur = next;
		double t = now();
		if (t - tp >= 1.0) {
			printf("# powercut-mirror writer %c: t=%.1f acked seq=%llu writes=%llu %.1f MiB (%.2f MiB/s) max latency %.0f ms\n",
			       name, t - g0, (unsigned long long)seq, (unsigned long long)i + 1,
			       nbytes / 1048576.0, nbytes / 1048576.0 / (t - t0), lat_max * 1000);
			fflush(stdout);
			tp = t;
			lat_max = 0;
		}
	}
	printf("# powercut-mirror writer %c: done, %llu writes acknowledged\n", name,
	       (unsigned long long)count);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "write"))
		return writer(argc - 2, argv + 2);
	if (argc == 5 && !strcmp(argv[1], "scan"))
		return scan(argv[2], strtoull(argv[3], NULL, 0), argv[4]);
	if (argc == 5 && !strcmp(argv[1], "fill"))
		return fill(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
	if (argc == 7 && !strcmp(argv[1], "waitdata"))
		return waitdata(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0),
				strtoull(argv[5], NULL, 0), atof(argv[6]));
	fprintf(stderr, "usage: mctool write W DEV ACKDEV BASE SEED NBLK T0 [opts]\n"
			"       mctool scan DEV NBLK OUT\n"
			"       mctool fill DEV NBLK SEQ\n"
			"       mctool waitdata DEV START N SEQ TIMEOUT_S\n");
	return 2;
}
