// SPDX-License-Identifier: GPL-2.0
/*
 * unstable DEV OFFSET_BYTES SIZE_BYTES SECONDS
 *
 * Helper of tests/guest/42-unstable-pages.sh: O_DIRECT pwrite() of SIZE
 * bytes at OFFSET of DEV, again and again, from ONE buffer that a second
 * thread keeps rewriting (memset with a counter, plus the counter at the
 * start of every 512-byte sector) while the writes are in flight, for
 * SECONDS seconds.  The pages of every write bio change while the target
 * copies them: whatever reaches the journal must be what replay applies.
 *
 * Prints "writes=N changes=M" on success; exits 1 on a failed write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned char *buf;
static size_t size;
static atomic_int stop;
static atomic_ulong changes;

static void *modifier(void *arg)
{
	unsigned long n = 0;

	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		n++;
		memset(buf, (int)(n & 0xff), size);
		for (size_t off = 0; off + sizeof(n) <= size; off += 512)
			memcpy(buf + off, &n, sizeof(n));
		atomic_store_explicit(&changes, n, memory_order_relaxed);
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: unstable DEV OFFSET_BYTES SIZE_BYTES SECONDS\n");
		return 2;
	}
	off_t off = strtoll(argv[2], NULL, 0);
	size = strtoull(argv[3], NULL, 0);
	double secs = atof(argv[4]);
	int fd = open(argv[1], O_RDWR | O_DIRECT);

	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	if (posix_memalign((void **)&buf, 4096, size)) {
		fprintf(stderr, "unstable: no memory\n");
		return 1;
	}
	memset(buf, 0x5a, size);
	pthread_t t;

	if (pthread_create(&t, NULL, modifier, NULL)) {
		fprintf(stderr, "unstable: pthread_create failed\n");
		return 1;
	}
	unsigned long writes = 0;
	int rc = 0;
	double end = now() + secs;

	while (now() < end) {
		ssize_t w = pwrite(fd, buf, size, off);

		if (w != (ssize_t)size) {
			fprintf(stderr, "unstable: pwrite %zd: %s\n", w, w < 0 ? strerror(errno) : "short");
			rc = 1;
			break;
		}
		writes++;
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	close(fd);
	printf("writes=%lu changes=%lu\n", writes, (unsigned long)atomic_load(&changes));
	return rc;
}
