#!/usr/bin/env bash
# qemu/shm-shim.sh: build (once, cached) and print the path of a tiny
# LD_PRELOAD library that emulates System V shared memory (shmget/shmat/
# shmdt/shmctl) with anonymous shared mappings.  The test kernel has no
# CONFIG_SYSVIPC, and fio allocates its job area with shmget ("shmget:
# Function not implemented"); qemu/guest-init.sh puts a fio wrapper using
# this library first in the guest's PATH when /proc/sysvipc is missing.
set -euo pipefail
cache=${JSNAP_CACHE:-$HOME/.cache/dm-jsnap}
src=$(cat <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/types.h>

#define MAXSEG 256
static struct { void *addr; size_t size; int used; } segs[MAXSEG];

int shmget(key_t key, size_t size, int flg)
{
	(void)key; (void)flg;
	for (int i = 0; i < MAXSEG; i++) {
		if (segs[i].used)
			continue;
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			errno = ENOMEM;
			return -1;
		}
		segs[i].addr = p;
		segs[i].size = size;
		segs[i].used = 1;
		return i + 1;
	}
	errno = ENOSPC;
	return -1;
}

static int bad(int id)
{
	return id < 1 || id > MAXSEG || !segs[id - 1].used;
}

void *shmat(int id, const void *addr, int flg)
{
	(void)addr; (void)flg;
	if (bad(id)) {
		errno = EINVAL;
		return (void *)-1;
	}
	return segs[id - 1].addr;
}

int shmdt(const void *addr)
{
	(void)addr;
	return 0;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
	if (bad(id)) {
		errno = EINVAL;
		return -1;
	}
	if (cmd == IPC_STAT && buf) {
		memset(buf, 0, sizeof(*buf));
		buf->shm_segsz = segs[id - 1].size;
	}
	return 0;
}
C
)
hash=$(printf '%s' "$src" | sha256sum | cut -c1-12)
out=$cache/shm-shim-$hash.so
if [[ ! -f $out ]]; then
	mkdir -p "$cache"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	printf '%s\n' "$src" >"$tmp/shim.c"
	${CC:-gcc} -O2 -shared -fPIC -o "$tmp/shim.so" "$tmp/shim.c"
	mv "$tmp/shim.so" "$out"
fi
echo "$out"
