/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Self-describing 4 KiB test blocks shared by the power-cut tools
 * (tests/powercut/pctool.c, tests/powercut/mctool.c): block b
 * written by seq s holds pattern(b, s) (8 sectors of (MAGIC, b, s, sector
 * index, filler), crc32 of the rest in the last 4 bytes); a block never
 * written is zeros.  `scan` writes, per block, (seq, content hash): seq 0 =
 * zeros, 2^64-1 = neither zeros nor a valid pattern of that block.
 * Include after the system headers (needs zlib, O_DIRECT).
 */
#ifndef JSNAP_PC_BLOCKS_H
#define JSNAP_PC_BLOCKS_H

#define BS 4096
#define SEC 512
#define MAGIC 0x4A534E4150504331ULL

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xBF58476D1CE4E5B9ULL;
	x ^= x >> 27;
	x *= 0x94D049BB133111EBULL;
	x ^= x >> 31;
	return x;
}

/* 4 KiB written by seq s at block b (= pattern() in pc.py) */
static void pattern(uint8_t *out, uint64_t b, uint64_t s)
{
	uint64_t w = mix64(b * 0x9E3779B97F4A7C15ULL + s);
	for (int i = 0; i < 8; i++) {
		uint64_t *p = (uint64_t *)(out + i * SEC);
		p[0] = MAGIC;
		p[1] = b;
		p[2] = s;
		p[3] = i;
		for (int k = 4; k < SEC / 8; k++)
			p[k] = w;
	}
	uint32_t crc = crc32(0, out, BS - 4);
	memcpy(out + BS - 4, &crc, 4);
}

/* content hash of a block (not a CRC: a block that ends with the crc32 of
 * the rest always has the same crc32) */
static uint64_t blkhash(const uint8_t *blk)
{
	uint64_t h = 0xcbf29ce484222325ULL, w;
	for (int i = 0; i < BS; i += 8) {
		memcpy(&w, blk + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
	}
	return mix64(h);
}

/* seq of a block as read, 0 = zeros, ~0 = anything else */
static uint64_t blkseq(const uint8_t *blk, uint64_t b)
{
	static uint8_t zero[BS], exp[BS];
	uint64_t h[3];
	if (!memcmp(blk, zero, BS))
		return 0;
	memcpy(h, blk, sizeof(h));
	if (h[0] == MAGIC && h[1] == b && h[2] != 0 && h[2] != ~0ULL) {
		pattern(exp, b, h[2]);
		if (!memcmp(exp, blk, BS))
			return h[2];
	}
	return ~0ULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int scan(const char *dev, uint64_t nblk, const char *outp)
{
	int fd = open(dev, O_RDONLY | O_DIRECT);
	if (fd < 0) {
		perror(dev);
		return 1;
	}
	if (nblk == 0)
		nblk = lseek(fd, 0, SEEK_END) / BS;
	FILE *out = fopen(outp, "wb");
	if (!out) {
		perror(outp);
		return 1;
	}
	const size_t per = 256;
	uint8_t *buf;
	if (posix_memalign((void **)&buf, 4096, per * BS))
		return 1;
	for (uint64_t b0 = 0; b0 < nblk; b0 += per) {
		size_t cnt = nblk - b0 < per ? nblk - b0 : per;
		ssize_t r = pread(fd, buf, cnt * BS, (off_t)b0 * BS);
		if (r != (ssize_t)(cnt * BS)) {
			fprintf(stderr, "scan: read %s at block %llu: %s\n", dev,
				(unsigned long long)b0, r < 0 ? strerror(errno) : "short");
			return 1;
		}
		for (size_t k = 0; k < cnt; k++) {
			uint64_t rec[2] = { blkseq(buf + k * BS, b0 + k), blkhash(buf + k * BS) };
			if (fwrite(rec, sizeof(rec), 1, out) != 1)
				return 1;
		}
	}
	if (fclose(out))
		return 1;
	close(fd);
	return 0;
}

#endif
