# dm-jsnap top-level Makefile.  Kbuild (the file `Kbuild`) builds the
# module; this file drives set-up, the VM and the tests.
#
#   make run     the main job: build everything, boot a VM, load the module,
#                create a jsnap device with a snapshot and exercise it
#   make check   every test; ends with "N passed, M failed"
#   make paths   KERNEL=<bzImage> and MODULE=<dm-jsnap.ko>
#   make module  just the module (after set-up)
#   make jsnapctl  the user-space tool (tools/jsnapctl/target/release/jsnapctl)
#   make bench   fio benchmarks (see README)
#   make check-debug  the guest suite on a lockdep + KFENCE kernel (a second
#                cached kernel; the module is rebuilt for the normal one after)

SHELL := /bin/bash
TOP := $(CURDIR)

.PHONY: all setup module jsnapctl paths run check check-debug bench clean host-test

all: module jsnapctl

setup:
	@bash scripts/setup.sh

module: setup
	@bash scripts/build-module.sh

jsnapctl: setup
	@bash scripts/build-jsnapctl.sh

paths: module
	@. scripts/env.sh; echo "KERNEL=$$KDIR/arch/x86/boot/bzImage"; echo "MODULE=$(TOP)/dm-jsnap.ko"

host-test:
	@cd rust/host && cargo test
	@bash scripts/build-jsnapctl.sh --test

run: module jsnapctl
	@bash scripts/run.sh

check:
	@bash scripts/check.sh

check-debug:
	@bash scripts/check-debug.sh

bench: module
	@bash bench/run.sh

clean:
	@. scripts/env.sh; [ ! -d "$$KDIR" ] || $(MAKE) -C "$$KDIR" M=$(TOP) clean >/dev/null
	rm -rf rust/ffi/generated rust/host/target tools/jsnapctl/target
