#!/usr/bin/python3
"""Grammar-based fuzzer for jsnap / jsnap-view table lines and messages
(issue 12 item 5).  Driven by tests/guest/25-fuzz.sh, which sets up the
devices and passes them in the environment; see that file for the knobs
(JSNAP_FUZZ_SEED, JSNAP_FUZZ_CASES).

Every case is a table line or a message built from a valid one by
mutations (wrong counts, huge / negative / overflowing numbers, repeated and
unknown features, lying feature counts, device arguments swapped for other
devices, very long tokens, non-UTF-8 bytes, ...).  An oracle that mirrors
the constructors and the message handler (rust/jsnap.rs, rust/view.rs,
rust/jsnap/recovery.rs, rust/jsnap/snapshot.rs, rust/logic/table.rs)
predicts the outcome: either "accepted" (then the device must come up, echo
its table as DESIGN.md 2.1 says, and be removed) or a refusal with one
exact reason, which must be the text in the kernel log.  Refused cases run
in batches; the whole of every device is checksummed before and after each
batch (a mismatch replays the batch case by case to name the culprit).

Output: one `ok - 25-fuzz: ...` / `not ok - 25-fuzz: ... -- reason` line
per check.
"""

import errno
import os
import random
import re
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jformat  # noqa: E402

E = os.environ
T = E.get("TEST_NAME", "25-fuzz")
SEED = int(E["FUZZ_SEED"])
NCASES = int(E["FUZZ_CASES"])
BATCH = int(E.get("FUZZ_BATCH", "100"))
SCRATCH = E["SCRATCH"]
PROD, STORE, SPARE, PMEM = E["PROD"], E["STORE"], E["SPARE"], E["PMEM"]
PART, LIN, JTINY, LOOPDEV = E["PART"], E["LIN"], E["JTINY"], E["LOOPDEV"]
FILE = E["NBFILE"]
NOENT = "/dev/nonexistent-fuzz"
IMGDIR = "/dev/shm" if os.path.isdir("/dev/shm") else SCRATCH
LEN = int(E.get("FUZZ_LEN", "32768"))  # 16 MiB: the base target length
C = 64
# The disks (LIN, PART and JTINY lie on SPARE, LOOPDEV and PMEM).
COUNTED = [PMEM, PROD, STORE, SPARE, LOOPDEV]
MAXARGS = 64

npass = 0
nfail = 0


def ok(name):
    global npass
    npass += 1
    print(f"ok - {T}: {name}", flush=True)


def fail(name, why):
    global nfail
    nfail += 1
    print(f"not ok - {T}: {name} -- {why}", flush=True)


def note(s):
    print(f"# {s}", flush=True)


def check(name, cond, why):
    if cond:
        ok(name)
    else:
        fail(name, why)
    return cond


def short(x, n=160):
    s = x if isinstance(x, str) else x.decode("utf-8", "backslashreplace")
    return s if len(s) <= n else s[: n - 40] + f"...({len(s)} chars)..." + s[-30:]


# ---- running commands ----------------------------------------------------------------


def run(argv, timeout=60):
    """Runs argv (str or bytes items); returns (rc, output)."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "timed out"


def sh(cmd, timeout=120):
    return run(["bash", "-c", cmd], timeout)


class Kmsg:
    """Kernel log records logged since the last `mark()`."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        self.mark()

    def mark(self):
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self):
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten records: go on
                    continue
                raise
            if not rec:
                break
            text = rec.decode("utf-8", "replace")
            out.append(text.split(";", 1)[-1].split("\n", 1)[0])
        return out


KMSG = Kmsg()
SPLAT = re.compile(r"BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace")


def dm_names():
    """The dm devices, from sysfs (no process: this runs once per case)."""
    out = []
    for b in os.listdir("/sys/block"):
        try:
            out.append(open(f"/sys/block/{b}/dm/name").read().strip())
        except OSError:
            pass
    return sorted(out)


def dm_remove(name):
    for _ in range(10):
        rc, _ = run(["dmsetup", "remove", name])
        if rc == 0:
            return True
        time.sleep(0.2)
    return False


def devsum(dev, skip_mib=0, count_mib=None):
    cnt = f" count={count_mib}" if count_mib is not None else ""
    rc, out = sh(f"dd if={dev} bs=1M iflag=direct skip={skip_mib}{cnt} status=none | cksum")
    return out.strip()


def write_counters():
    """Block-layer write and discard counters of every disk (prod, store,
    spare, the loop disk, pmem): any write that reaches a disk, anywhere on
    it, moves them, even one that rewrites the same bytes."""
    res = {}
    for d in COUNTED:
        f = f"/sys/class/block/{os.path.basename(os.path.realpath(d))}/stat"
        v = open(f).read().split()
        # writes, write sectors, discards, discard sectors
        res[d] = (v[4], v[6]) + (tuple(v[11:15:2]) if len(v) >= 15 else ())
    return res


class PmemImage:
    """The whole of pmem, read with O_DIRECT into a file in RAM (DAX stores
    bypass the block layer's counters: compare the bytes, with cmp)."""

    n = 0

    def __init__(self):
        PmemImage.n += 1
        self.path = os.path.join(IMGDIR, f"jsnap-fuzz-pmem.{os.getpid()}.{PmemImage.n % 3}")
        sh(f"dd if={PMEM} of={self.path} bs=4M iflag=direct status=none")

    def diff(self, other):
        """Where `other` first differs from this image, or None."""
        rc, out = run(["cmp", self.path, other.path])
        return None if rc == 0 else out.strip()


def sums():
    """The state of every device: pmem's bytes, the disks' write counters."""
    return {"pmem": PmemImage(), "ctr": write_counters()}


def sum_diff(a, b, skip=()):
    out = []
    if PMEM not in skip:
        off = a["pmem"].diff(b["pmem"])
        if off is not None:
            out.append(f"{PMEM} ({off})")
    for d, v in a["ctr"].items():
        # (pmem: the test's own dd writes of crafted superblocks count too;
        # its bytes are compared above)
        if d not in skip and d != PMEM and b["ctr"][d] != v:
            out.append(f"{d} written (write counters {v} -> {b['ctr'][d]})")
    return out


# ---- devices ------------------------------------------------------------------------


class Dev:
    def __init__(self, path, label):
        self.path, self.label = path, label
        self.block = False
        self.devt = None
        self.sectors = 0
        self.dax = False
        try:
            st = os.stat(path)
        except OSError:
            return
        import stat as S

        if not S.S_ISBLK(st.st_mode):
            return
        self.block = True
        self.devt = (os.major(st.st_rdev), os.minor(st.st_rdev))
        rc, out = run(["blockdev", "--getsz", path])
        self.sectors = int(out.strip()) if rc == 0 else 0
        sysd = f"/sys/dev/block/{self.devt[0]}:{self.devt[1]}/queue/dax"
        try:
            self.dax = open(sysd).read().strip() == "1"
        except OSError:
            self.dax = False

    def mm(self):
        return f"{self.devt[0]}:{self.devt[1]}"


def probe():
    devs = {}
    for p, l in [(PROD, "prod"), (STORE, "store"), (SPARE, "spare"), (PMEM, "pmem"), (PART, "partition"),
                 (LIN, "dm-linear"), (JTINY, "tiny pmem slice"), (FILE, "regular file"),
                 ("/dev/null", "char device"), ("/tmp", "directory"), (NOENT, "nonexistent")]:
        devs[p] = Dev(p, l)
    return devs


DEVS = probe()


def dev_of(tok):
    """The device a table token names (path or major:minor), or None."""
    if isinstance(tok, bytes):
        return None
    m = re.fullmatch(r"([0-9]+):([0-9]+)", tok)
    if m:
        mm = (int(m.group(1)), int(m.group(2)))
        for d in DEVS.values():
            if d.block and d.devt == mm:
                return d
        return None
    d = DEVS.get(tok)
    if d is None and tok.startswith("/"):
        d = Dev(tok, "path")
    return d if d is not None and d.block else None


# ---- the oracle -------------------------------------------------------------------------

NAMES = ["format", "high_watermark", "low_watermark", "destage_batch", "hydrate_batch", "no_destage", "relocated"]
RANGES = {"high_watermark": (1, 100, "Invalid high_watermark: must be 1..100"),
          "low_watermark": (0, 99, "Invalid low_watermark: must be 0..99"),
          "destage_batch": (1, 4096, "Invalid destage_batch: must be 1..4096"),
          "hydrate_batch": (1, 1024, "Invalid hydrate_batch: must be 1..1024")}
R_CHUNK = "Invalid chunk size: must be a power of two between 8 and 1048576 sectors"


class Refuse(Exception):
    def __init__(self, where, text):
        super().__init__(text)
        self.where, self.text = where, text


def parse_num(s, lo, hi):
    if isinstance(s, bytes) or not re.fullmatch(r"[0-9]+", s):
        return None
    s = s.lstrip("0") or "0"
    if len(s) > 10:
        return None
    v = int(s)
    if v > 0xFFFFFFFF or not lo <= v <= hi:
        return None
    return v


def parse_features(toks):
    f = {"format": False, "relocated": False, "hw": 50, "lw": 45}
    if not toks:
        return f
    cnt = parse_num(toks[0], 0, 0xFFFFFFFF)
    if cnt is None:
        raise Refuse("ctr", "Invalid feature argument count")
    rest = toks[1:]
    if cnt != len(rest):
        raise Refuse("ctr", "Feature argument count does not match the arguments given")
    given = []
    i = 0
    while i < len(rest):
        name = rest[i]
        i += 1
        if name not in NAMES:
            raise Refuse("ctr", "Unknown feature argument")
        if name in given:
            raise Refuse("ctr", "Duplicate feature argument")
        if name in ("format", "relocated", "no_destage"):
            f[name] = True
        else:
            if i >= len(rest):
                raise Refuse("ctr", "Feature argument is missing its value")
            lo, hi, err = RANGES[name]
            v = parse_num(rest[i], lo, hi)
            i += 1
            if v is None:
                raise Refuse("ctr", err)
            if name == "high_watermark":
                f["hw"] = v
            if name == "low_watermark":
                f["lw"] = v
        given.append(name)
    if "low_watermark" not in given:
        f["lw"] = max(f["hw"] - 5, 0)
    if f["lw"] >= f["hw"]:
        raise Refuse("ctr", "low_watermark must be below high_watermark")
    return f


def utf8_ok(toks):
    return all(not isinstance(t, bytes) for t in toks)


class Journal:
    """What the journal's superblock says (the oracle's view of pmem)."""

    def __init__(self, prod, length, chunk):
        self.prod, self.len, self.chunk = prod, length, chunk

    def key(self):
        return (self.prod, self.len, self.chunk)


JOURNAL = None  # set after the first format


def expect_jsnap(start, length, args):
    """(accepted echo line | None, Refuse | None, new journal key | None)."""
    if length == 0:
        return None, Refuse("core", "zero-length target"), None
    if start != 0:
        return None, Refuse("ctr", "Gap in table"), None
    if len(args) < 4:
        return None, Refuse("ctr", "Invalid argument count: need <production_dev> <journal_dev> <store_dev|-> <chunk_sectors>"), None
    if len(args) > MAXARGS:
        return None, Refuse("ctr", "Too many arguments"), None
    if not utf8_ok(args):
        return None, Refuse("ctr", "Arguments must be valid UTF-8"), None
    chunk = parse_num(args[3], 8, 1 << 20)
    if chunk is None or chunk & (chunk - 1):
        return None, Refuse("ctr", R_CHUNK), None
    f = parse_features(args[4:])
    p = dev_of(args[0])
    if p is None:
        return None, Refuse("ctr", "Error opening production device"), None
    if p.sectors < length:
        return None, Refuse("ctr", "Production device is smaller than the target length"), None
    j = dev_of(args[1])
    if j is None:
        return None, Refuse("ctr", "Error opening journal device"), None
    if j.devt == p.devt:
        return None, Refuse("ctr", "Production and journal must be different devices"), None
    if not j.dax:
        return None, Refuse("ctr", "Journal device does not support DAX"), None
    s = None
    if args[2] != "-":
        s = dev_of(args[2])
        if s is None:
            return None, Refuse("ctr", "Error opening store device"), None
        if s.devt in (p.devt, j.devt):
            return None, Refuse("ctr", "Store must differ from production and journal"), None
        if s.sectors < length:
            return None, Refuse("ctr", "Store device is smaller than the target length"), None
    feats = list(args[5:])
    line = f"{p.mm()} {j.mm()} {s.mm() if s else '-'} {args[3]}"
    full = line + (f" {len(feats)} " + " ".join(feats) if feats else "")
    if len(full) > 1024:
        return None, Refuse("ctr", "Table line too long"), None
    if j.devt != DEVS[PMEM].devt:
        # only the tiny slice of pmem is offered otherwise
        return None, Refuse("ctr", "Journal device is too small for this target"), None
    key = (p.devt, length, chunk)
    if not f["format"]:
        if p.devt != JOURNAL.prod and not f["relocated"]:
            return None, Refuse("ctr", "Journal belongs to another production device (use relocated if it was renumbered)"), None
        if length != JOURNAL.len:
            return None, Refuse("ctr", "Journal belongs to a target of another length"), None
        if chunk != JOURNAL.chunk:
            return None, Refuse("ctr", "Journal was formatted with another chunk size"), None
    kept = [t for t in feats if t != "format"]
    echo = f"0 {length} jsnap {line}" + (f" {len(kept)} " + " ".join(kept) if kept else "")
    return echo, None, key


# ---- mutations ------------------------------------------------------------------------------

NUMS = ["0", "1", "4", "7", "8", "9", "12", "16", "64", "0064", "128", "4096", "1048576", "2097152",
        "-8", "-1", "+8", "8x", "0x40", "1e3", "4294967295", "4294967296", "18446744073709551615",
        "18446744073709551616", "99999999999999999999999", "abc", "64.0", "٦٤"]
UNKNOWN = ["bogus", "FORMAT", "format=1", "high_watermark=80", "formats", "-", "0", "no-destage", "relocate"]


def rnd_num(r):
    if r.random() < 0.15:
        return "0" * r.randint(1, 3000) + str(r.choice([8, 64, 50, 1]))
    return r.choice(NUMS)


def rnd_path(r, kind):
    """A device argument: any of the devices, in any spelling."""
    pool = [PROD, STORE, SPARE, PMEM, PART, LIN, JTINY, FILE, "/dev/null", "/tmp", NOENT]
    x = r.random()
    if x < 0.12:
        return r.choice(["999:999", "0:0", "4294967295:1", "1:99999999", "8:0x", ":", "-1:0"])
    if x < 0.16:
        return "/dev/" + "x" * r.randint(300, 5000)
    if x < 0.2 and kind == "store":
        return "-"
    d = DEVS[r.choice(pool)]
    if d.block and r.random() < 0.3:
        return d.mm()
    return d.path


def rnd_features(r):
    toks = []
    for _ in range(r.choice([0, 1, 1, 2, 3, 4, 8])):
        x = r.random()
        name = r.choice(NAMES) if x < 0.85 else r.choice(UNKNOWN)
        toks.append(name)
        if name in RANGES or (x > 0.95):
            v = rnd_num(r) if r.random() < 0.4 else str(r.randint(RANGES.get(name, (0, 100))[0], RANGES.get(name, (0, 100))[1]))
            if r.random() > 0.05:
                toks.append(v)
    x = r.random()
    if x < 0.7:
        cnt = str(len(toks))
    elif x < 0.85:
        cnt = str(max(0, len(toks) + r.choice([-2, -1, 1, 2])))
    else:
        cnt = rnd_num(r)
    return [cnt] + toks


def gen_jsnap(r):
    start, length = 0, LEN
    args = [PROD, PMEM, STORE, str(C)]
    kinds = {"dev": 12, "chunk": 5, "feat": 10, "len": 4, "argc": 2, "extra": 2, "long": 2, "many": 1,
             "utf8": 1, "mm": 2, "start": 1, "relocated": 2, "format": 1}
    muts = set(r.choices(list(kinds), weights=list(kinds.values()), k=r.choice([1, 1, 2, 2, 3])))
    muts = sorted(muts, key=lambda m: (m == "argc", m))
    feats = None
    for m in muts:
        if m == "dev" and len(args) >= 3:
            i = r.randint(0, 2)
            args[i] = rnd_path(r, ["prod", "journal", "store"][i])
            if r.random() < 0.2:  # the same device twice
                args[r.randint(0, 2)] = args[i]
        elif m == "mm" and len(args) >= 3:
            i = r.randint(0, 2)
            d = dev_of(args[i])
            if d:
                args[i] = d.mm()
        elif m == "chunk" and len(args) >= 4:
            args[3] = rnd_num(r)
        elif m == "feat":
            feats = rnd_features(r)
        elif m == "format":
            feats = ["1", "format"]
        elif m == "relocated":
            feats = r.choice([["1", "relocated"], ["2", "relocated", "format"], ["3", "no_destage", "relocated", "relocated"]])
            args[0] = r.choice([PROD, LIN, PART])
        elif m == "len":
            length = r.choice([0, 1, 8, LEN // 2, LEN - 1, LEN + 64, DEVS[PART].sectors, DEVS[PART].sectors + 8,
                               DEVS[PROD].sectors, DEVS[PROD].sectors + 1, 1 << 40])
        elif m == "start":
            start = r.choice([1, 8, 1 << 20])
        elif m == "argc":
            args = args[: r.randint(0, 3)]
        elif m == "extra":
            feats = (feats or []) + [r.choice(UNKNOWN + NUMS)]
        elif m == "long":
            i = r.randint(0, len(args)) if args else 0
            tok = r.choice(["a" * r.randint(1000, 6000), "0" * r.randint(1000, 6000) + "64"])
            if i < len(args):
                args[i] = tok
            else:
                feats = ["2", "destage_batch", "0" * r.randint(1000, 4000) + "16"]
        elif m == "many":
            n = r.randint(60, 200)
            feats = [str(r.choice([n, n - 1, 59]))] + [r.choice(NAMES + UNKNOWN) for _ in range(n)]
        elif m == "utf8":
            feats = ["1", b"\xff\xfeformat"] if r.random() < 0.5 else None
            if feats is None and len(args) >= 4:
                args[3] = b"6\xc04"
    if feats is not None and len(args) >= 4:
        args = args + feats
    return start, length, args


def line_bytes(start, length, target, args):
    parts = [str(start).encode(), str(length).encode(), target.encode()]
    parts += [a if isinstance(a, bytes) else a.encode() for a in args]
    return b" ".join(parts)


# ---- running a table case ------------------------------------------------------------------------


def reason_found(ref, target, logs):
    if ref.where == "core":
        needle = ref.text
    elif ref.where == "ctr":
        needle = f": {target}: {ref.text} (-"
    else:
        needle = ref.text
    return any(needle in l for l in logs)


def splat_in(logs):
    return [l for l in logs if SPLAT.search(l)]


def create_refused(name, tname, line, ref, dm_before, create_argv=None):
    """dmsetup create must fail with exactly this reason and leave nothing."""
    toks = line.split()
    tgt = "jsnap-view" if len(toks) > 2 and toks[2] == b"jsnap-view" else "jsnap"
    c0 = write_counters()
    KMSG.mark()
    argv = create_argv or ["dmsetup", "create", tname, "--table", line]
    rc, out = run(argv)
    logs = KMSG.read()
    good = True
    c1 = write_counters()
    if c1 != c0:
        fail(name + ": nothing written", f"{[d for d in c0 if c0[d] != c1[d]]} written ({short(line)})")
        good = False
    if rc == 0:
        fail(name, f"accepted (expected: {ref.text}): {short(line)}")
        dm_remove(tname)
        if tgt == "jsnap":
            reformat_base(name)  # it may have formatted the journal
        return False
    if not reason_found(ref, tgt, logs):
        got = [l for l in logs if "jsnap" in l or "device-mapper" in l]
        fail(name, f"expected reason '{ref.text}', log said: {got[:3]} ({short(line)})")
        good = False
    s = splat_in(logs)
    if s:
        fail(name + ": no splat", s[:3])
        good = False
    after = dm_names()
    if after != dm_before:
        fail(name + ": no device left", f"dm devices {dm_before} -> {after}")
        for n in set(after) - set(dm_before):
            run(["dmsetup", "remove", "--force", n])
        good = False
    if good:
        ok(f"{name}: refused: {ref.text}")
    return good


def create_accepted(name, tname, line, echo, dm_before):
    KMSG.mark()
    rc, out = run(["dmsetup", "create", tname, "--table", line])
    logs = KMSG.read()
    if rc != 0:
        got = [l for l in logs if "jsnap" in l or "device-mapper" in l]
        fail(name, f"refused (expected accepted): {got[:3]} ({short(line)})")
        return False
    _, both = sh(f"dmsetup table {tname}; echo @@; dmsetup status {tname}")
    table, _, status = both.partition("@@")
    removed = dm_remove(tname)
    good = True
    if table.strip() != echo:
        fail(name, f"table echo: expected '{short(echo)}', got '{short(table.strip())}'")
        good = False
    if " jsnap " in echo and "state=ok" not in status:
        fail(name, f"status: {status.strip()}")
        good = False
    if not removed:
        fail(name, "remove failed")
        good = False
    s = splat_in(logs + KMSG.read())
    if s:
        fail(name + ": no splat", s[:3])
        good = False
    if dm_names() != dm_before:
        fail(name + ": no device left", f"{dm_names()}")
        good = False
    if good:
        ok(f"{name}: accepted, table echoed, removed")
    return good


def replay_create(name, line):
    if run(["dmsetup", "create", name, "--table", line])[0] == 0:
        dm_remove(name)


BASE = line_bytes(0, LEN, "jsnap", [PROD, PMEM, STORE, str(C)])


def reformat_base(why):
    """Puts the journal back to the base geometry (after a valid case that
    formatted it for another, or relocated it)."""
    global JOURNAL
    line = BASE + b" 1 format"
    rc, out = run(["dmsetup", "create", "fzr", "--table", line])
    if rc != 0 or not dm_remove("fzr"):
        fail(f"re-format the journal for the base table ({why})", out.strip())
        return False
    JOURNAL = Journal(DEVS[PROD].devt, LEN, C)
    return True


class Batch:
    """Refusal cases between two whole-device checksums."""

    def __init__(self, label):
        self.label = label
        self.cases = []
        self.before = sums()

    def add(self, replay):
        self.cases.append(replay)

    def close(self, skip=()):
        after = sums()
        diff = sum_diff(self.before, after, skip)
        name = f"{self.label}: {len(self.cases)} refused cases left every device unchanged (all of pmem compared, every disk's write counters)"
        if check(name, not diff, f"changed: {diff}"):
            return after
        # name the culprit: replay case by case, checksumming after each
        base = after
        for i, rp in enumerate(self.cases):
            rp()
            now = sums()
            d = sum_diff(base, now, skip)
            if d:
                note(f"{self.label}: case {i} changed {d} again on replay")
            base = now
        return after


# ---- phase 1: random table lines ---------------------------------------------------------------------


def phase_tables(r, n):
    dm_before = dm_names()
    batch = Batch("tables batch 1")
    nb, nacc, nref = 1, 0, 0
    valid = []
    # first, one line for each refusal path of the constructor that random
    # lines reach only now and then (the rest of each line is valid)
    big = DEVS[PART].sectors + 8
    directed = [
        (0, big, [PROD, PMEM, PART, str(C)]),  # store smaller than len
        (0, big, [PART, PMEM, STORE, str(C)]),  # production smaller than len
        (0, LEN, [PROD, SPARE, STORE, str(C)]),  # no DAX
        (0, LEN, [PROD, PMEM, STORE, "0" * 1100 + str(C)]),  # table line too long
        (0, LEN, [PROD, PMEM, STORE, str(C), "64"] + ["format"] * 64),  # too many arguments
        (0, LEN, [PROD, PMEM, STORE, str(C), "1", "hydrate_batch"]),  # missing value
        (0, LEN, [PROD, PMEM, STORE, str(C), "2", "hydrate_batch", "1025"]),
        (0, LEN, [PROD, PMEM, STORE, str(C), "4", "high_watermark", "20", "low_watermark", "20"]),
        (0, LEN, [PROD, PMEM, PROD, str(C)]),  # the same device twice
        (0, LEN, [PROD, PMEM, STORE, "2097152"]),  # chunk above 2^20
        (0, 0, [PROD, PMEM, STORE, str(C)]),  # zero length
    ]
    for i in range(n):
        start, length, args = directed[i] if i < len(directed) else gen_jsnap(r)
        line = line_bytes(start, length, "jsnap", args)
        try:
            echo, ref, key = expect_jsnap(start, length, args)
        except Refuse as e:
            echo, ref, key = None, e, None
        name = f"case {i}"
        if ref is not None:
            nref += 1
            create_refused(name, "fzc", line, ref, dm_before)
            batch.add(lambda line=line: replay_create("fzc", line))
        else:
            valid.append((name, line, echo, key))
        if (i + 1) % BATCH == 0 or i == n - 1:
            after = batch.close()
            # the valid cases of this batch: they may write pmem (superblock),
            # nothing else
            for name, line, echo, key in valid:
                nacc += 1
                create_accepted(name, "fzc", line, echo, dm_before)
                if key != JOURNAL.key():
                    reformat_base(name)
            now = sums()
            d = sum_diff(after, now, skip=(PMEM,))
            check(f"tables batch {nb}: {len(valid)} accepted cases changed nothing but the journal", not d,
                  f"changed: {d}")
            valid = []
            if i != n - 1:
                nb += 1
                batch = Batch(f"tables batch {nb}")
    note(f"table cases: {nref} refused, {nacc} accepted, in {nb} batches")


# ---- phase 2: crafted superblocks (every refusal path of the journal check) --------------------------

def read_sb():
    with open(PMEM, "rb", buffering=0) as f:
        return f.read(8192)


def write_sb(data):
    p = os.path.join(SCRATCH, "sb.bin")
    with open(p, "wb") as f:
        f.write(data)
    rc, out = sh(f"dd if={p} of={PMEM} bs=4096 count=2 oflag=direct status=none")
    return rc == 0


def slot_with(slot, edits, fix_crc=True):
    b = bytearray(slot)
    for off, fmt, val in edits:
        struct.pack_into(fmt, b, off, val)
    if fix_crc:
        jformat.seal_slot(b)
    return bytes(b)


def current_slot(sb):
    """The live superblock slot (highest generation of the valid ones)."""
    k = jformat.live_slot(sb)
    return None if k is None else sb[k * 4096:(k + 1) * 4096]


def phase_superblock():
    dm_before = dm_names()
    before = sums()
    orig = read_sb()
    live = current_slot(orig)
    if not check("superblock: the base journal has a valid superblock", live is not None, "none found"):
        return
    zero = bytes(4096)
    pdevt = DEVS[PROD].devt
    other = struct.unpack_from("<I", live, 156)[0] ^ 0x5
    base = BASE.decode()
    snap_active = slot_with(live, [(52, "<I", 1)])
    cases = [
        ("unsupported version", slot_with(live, [(8, "<I", 4)]) + zero, base,
         "Journal has an unsupported format version"),
        ("unknown header size", slot_with(live, [(12, "<I", 999)]) + zero, base,
         "Journal has an unsupported format version"),
        ("bad checksum", slot_with(live, [(40, "<Q", LEN)], fix_crc=False)[:152] + b"\x00\x00\x00\x01"
         + live[156:] + zero, base, "Journal superblock is corrupt (use the format feature to overwrite it)"),
        ("bad snap_state", slot_with(live, [(52, "<I", 7)]) + zero, base,
         "Journal superblock is corrupt (use the format feature to overwrite it)"),
        ("bad changed-block flags", slot_with(live, [(188, "<I", 4)]) + zero, base,
         "Journal superblock is corrupt (use the format feature to overwrite it)"),
        ("bad geometry (ring beyond the device)", slot_with(live, [(112, "<Q", 1 << 40)]) + zero, base,
         "Journal superblock is corrupt (use the format feature to overwrite it)"),
        ("both slots corrupt", slot_with(live, [(100, "<I", 3)]) + slot_with(live, [(52, "<I", 9)]), base,
         "Journal superblock is corrupt (use the format feature to overwrite it)"),
        ("foreign magic", b"NOTJSNAP" + live[8:] + zero, base,
         "Journal device holds foreign data (use the format feature to overwrite it)"),
        ("zero magic, other bytes set", bytes(8) + live[8:] + zero, base,
         "Journal device holds foreign data (use the format feature to overwrite it)"),
        ("device larger in the superblock", slot_with(live, [(64, "<Q", struct.unpack_from("<Q", live, 64)[0] + 4096)])
         + zero, base, "Journal device is smaller than its superblock says"),
        ("another production device", slot_with(live, [(156, "<I", other)]) + zero, base,
         "Journal belongs to another production device (use relocated if it was renumbered)"),
        ("relocated does not excuse another length", slot_with(live, [(156, "<I", other)]) + zero,
         line_bytes(0, LEN // 2, "jsnap", [PROD, PMEM, STORE, str(C), "1", "relocated"]).decode(),
         "Journal belongs to a target of another length"),
        ("store changed (to none) while a snapshot exists", snap_active + zero,
         line_bytes(0, LEN, "jsnap", [PROD, PMEM, "-", str(C)]).decode(),
         "Journal holds a snapshot: the store device cannot change"),
        ("another store device while a snapshot exists", snap_active + zero,
         line_bytes(0, LEN, "jsnap", [PROD, PMEM, PART, str(C)]).decode(),
         "Journal holds a snapshot on another store device (use relocated if it was renumbered)"),
        ("chunk size differs", live + zero, line_bytes(0, LEN, "jsnap", [PROD, PMEM, STORE, "128"]).decode(),
         "Journal was formatted with another chunk size"),
        ("journal too small", live + zero, line_bytes(0, LEN, "jsnap", [PROD, JTINY, STORE, str(C), "1", "format"]).decode(),
         "Journal device is too small for this target"),
    ]
    for name, sb, line, why in cases:
        if not write_sb(sb):
            fail(f"superblock: {name}: write the crafted superblock", "dd failed")
            continue
        where = "ctr"
        create_refused(f"superblock: {name}", "fzc", line.encode(), Refuse(where, why), dm_before)
        check(f"superblock: {name}: superblock area unchanged", read_sb() == sb, "the refused table wrote it")
    # put the original superblock area back: every device must be as before
    write_sb(orig)
    after = sums()
    d = sum_diff(before, after)
    check("superblock: every device unchanged after restoring the superblock area", not d, f"changed: {d}")
    # relocated, when needed: accepted, and the superblock then names the
    # production device it was loaded with
    write_sb(slot_with(live, [(156, "<I", other)]) + zero)
    create_accepted("superblock: relocated when needed (another production devt)", "fzc",
                    BASE + b" 1 relocated", f"0 {LEN} jsnap {DEVS[PROD].mm()} {DEVS[PMEM].mm()} {DEVS[STORE].mm()} {C} 1 relocated",
                    dm_before)
    now = current_slot(read_sb())
    check("superblock: relocated rewrote prod_devt", now is not None and struct.unpack_from("<I", now, 156)[0]
          == struct.unpack_from("<I", live, 156)[0], "prod_devt not updated")
    create_accepted("superblock: relocated when not needed", "fzc", BASE + b" 1 relocated",
                    f"0 {LEN} jsnap {DEVS[PROD].mm()} {DEVS[PMEM].mm()} {DEVS[STORE].mm()} {C} 1 relocated", dm_before)
    create_accepted("superblock: no relocated needed after relocation", "fzc", BASE,
                    f"0 {LEN} jsnap {DEVS[PROD].mm()} {DEVS[PMEM].mm()} {DEVS[STORE].mm()} {C}", dm_before)
    reformat_base("after the relocated cases")


# ---- phase 3: messages and views, in each state ---------------------------------------------------

WORDS = ["snapshot", "drop", "drain", "hydrate", "on", "off", "SNAPSHOT", "Drop", "x", "0", "-1",
         "4294967296", "hydrate=on", "snap", "status", "format", "changed", "current", "previous",
         "18446744073709551615", "18446744073709551616", "512", "1"]


def gen_msg(r):
    x = r.random()
    if x < 0.05:
        return ["a" * r.randint(1000, 5000)]
    if x < 0.1:
        return [r.choice(["snapshot", "drain", "hydrate"])] + ["on"] * r.randint(60, 150)
    if x < 0.13:
        return [r.choice(["snapshot", b"snap\xffshot", "hydrate"]), b"\xc3\x28"]
    n = r.choice([1, 1, 2, 2, 3])
    w = [r.choice(WORDS) for _ in range(n)]
    if r.random() < 0.5:
        w[0] = r.choice(["snapshot", "drop", "drain", "hydrate", "changed"])
    return w


def expect_msg(words, st):
    """None if accepted, else Refuse('msg', text)."""
    if len(words) > MAXARGS:
        return Refuse("msg", "dm-jsnap: Too many arguments")
    if not utf8_ok(words):
        return Refuse("msg", "dm-jsnap: Arguments must be valid UTF-8")
    cmd, rest = words[0], words[1:]
    if cmd == "changed":
        return expect_changed(rest, st)
    ar = {"snapshot": 0, "drop": 0, "drain": 0, "hydrate": 1}
    if cmd not in ar:
        return Refuse("msg", "dm-jsnap: Unknown message: expected snapshot, drop, hydrate, drain or changed")
    if len(rest) != ar[cmd]:
        return Refuse("msg", "dm-jsnap: Wrong number of arguments for message")
    if cmd == "hydrate" and rest[0] not in ("on", "off"):
        return Refuse("msg", "dm-jsnap: Invalid hydrate argument: must be on or off")
    if st["suspended"]:
        return Refuse("msg", "dm-jsnap: message refused: the device is suspended")
    if cmd == "snapshot":
        if st["views"]:
            return Refuse("msg", "dm-jsnap: snapshot refused: a jsnap-view is open")
        if st["snap"]:
            return Refuse("msg", "dm-jsnap: snapshot refused: a snapshot exists (drop it first)")
    if cmd == "drop":
        if st["views"]:
            return Refuse("msg", "dm-jsnap: drop refused: a jsnap-view is open")
        if not st["snap"]:
            return Refuse("msg", "dm-jsnap: drop refused: there is no snapshot")
    if cmd == "hydrate" and rest[0] == "on" and not st["snap"]:
        return Refuse("msg", "dm-jsnap: hydrate refused: no active snapshot")
    return None


def msg_argv(dev, words, sector="0"):
    # "--": a word such as "-1" is not an option of dmsetup's
    return ["dmsetup", "message", "--", dev, sector] + [w if isinstance(w, bytes) else w.encode() for w in words]


def kernel_words(words):
    """The words as the kernel sees them (dmsetup joins, the kernel splits)."""
    j = b" ".join(w if isinstance(w, bytes) else w.encode() for w in words)
    out = []
    for t in j.split():
        try:
            out.append(t.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(t)
    return out


SEEN = {}


def status_table(dev):
    return sh(f"dmsetup status {dev}; dmsetup table {dev}")[1]


def msg_refused(name, dev, words, ref, sector="0"):
    if not STATE_MOVES and dev not in SEEN:
        SEEN[dev] = status_table(dev)
    c0 = write_counters()
    KMSG.mark()
    rc, out = run(msg_argv(dev, words, sector))
    logs = KMSG.read()
    c1 = write_counters()
    st1 = status_table(dev) if not STATE_MOVES else None
    good = True
    desc = short(" ".join(w if isinstance(w, str) else repr(w) for w in words), 80)
    if rc == 0:
        fail(name, f"message '{desc}' accepted (expected: {ref.text})")
        return False
    if not STATE_MOVES and c1 != c0:
        fail(name + ": nothing written", f"{[d for d in c0 if c0[d] != c1[d]]} written")
        good = False
    if not any(ref.text in l for l in logs):
        fail(name, f"message '{desc}': expected '{ref.text}', log said: {[l for l in logs][:3]}")
        good = False
    if splat_in(logs):
        fail(name + ": no splat", splat_in(logs)[:3])
        good = False
    # status may move on its own only while destage/hydration runs
    if not STATE_MOVES and SEEN[dev] != st1:
        fail(name, f"status/table changed: '{SEEN[dev].strip()}' -> '{st1.strip()}'")
        SEEN[dev] = st1
        good = False
    if good:
        ok(f"{name}: '{desc}' refused: {ref.text}")
    return good


STATE_MOVES = False


def gen_view(r, jdev, length):
    args = [jdev, "ro"]
    ln = length
    muts = r.sample(["dev", "dev", "mode", "argc", "len", "long", "utf8", "mm"], r.choice([1, 1, 2]))
    for m in sorted(muts, key=lambda m: (m == "argc", m)):  # shorten last
        if m == "dev":
            args[0] = rnd_path(r, "view")
        elif m == "mm":
            d = dev_of(args[0]) if not isinstance(args[0], bytes) else None
            if d:
                args[0] = d.mm()
        elif m == "mode":
            args[1] = r.choice(["ro", "rw", "mirror", "RO", "read-only", "", "mirrors", "0", "a" * 3000])
        elif m == "argc":
            args = r.choice([[], args[:1], args + ["ro"], args + ["x", "y"]])
        elif m == "len":
            ln = r.choice([0, 1, length - 8, length + 8, length * 2])
        elif m == "long":
            args[0] = "/dev/mapper/" + "v" * r.randint(500, 5000)
        elif m == "utf8":
            args[-1:] = [b"r\xffo"]
    args = [a for a in args if a != ""]
    return ln, args


def expect_view(length, args, jsnap_len, st, jdevt):
    if length == 0:
        return Refuse("core", "zero-length target")
    if len(args) != 2:
        return Refuse("ctr", "Invalid argument count: need <jsnap_dev> <ro|rw|mirror>")
    if not utf8_ok(args):
        return Refuse("ctr", "Arguments must be valid UTF-8")
    if args[1] not in ("ro", "rw", "mirror"):
        return Refuse("ctr", "Invalid view mode: must be ro, rw or mirror")
    d = dev_of(args[0])
    if d is None:
        m = re.fullmatch(r"([0-9]+):([0-9]+)", args[0])
        if m and int(m.group(1)) < 4096 and int(m.group(2)) < (1 << 20):
            return Refuse("ctr", "Device is not a jsnap device")
        return Refuse("ctr", "Cannot find the jsnap device")
    if d.devt != jdevt:
        return Refuse("ctr", "Device is not a jsnap device")
    if not st["snap"]:
        return Refuse("ctr", "The jsnap device has no active snapshot")
    if length != jsnap_len:
        return Refuse("ctr", "View length must equal the jsnap device length")
    return None


def phase_messages(r, n_per_state):
    global STATE_MOVES
    dm_before = dm_names()
    line = BASE + b" 3 no_destage hydrate_batch 1"
    rc, out = run(["dmsetup", "create", "fzm", "--table", line])
    if not check("messages: create the jsnap device", rc == 0, out.strip()):
        return
    run(["dmsetup", "mknodes"])
    FZM = "/dev/mapper/fzm"
    DEVS[FZM] = Dev(FZM, "jsnap")
    jdevt = DEVS[FZM].devt
    dm_base = dm_names()
    st = {"snap": False, "views": 0, "suspended": False}

    def random_round(label, n, views=True, targets=("fzm",)):
        SEEN.clear()  # a new state: status and table as they are now
        b = Batch(label)
        valid_views = []
        for i in range(n):
            if views and r.random() < 0.3:
                ln, args = gen_view(r, FZM, LEN)
                ref = expect_view(ln, args, LEN, st, jdevt)
                vline = line_bytes(0, ln, "jsnap-view", args)
                if ref is None:
                    valid_views.append((f"{label}: view {i}", vline,
                                        f"0 {ln} jsnap-view {DEVS[FZM].mm()} {args[1]}"))
                    continue
                create_refused(f"{label}: view {i}", "fzv2", vline, ref, dm_names())
                b.add(lambda vline=vline: replay_create("fzv2", vline))
                continue
            words, ref = gen_refused_msg(r, st)
            tgt = r.choice(targets)
            if tgt != "fzm":
                ref = Refuse("msg", "Target type does not support messages")
            elif r.random() < 0.05:
                msg_refused(f"{label}: msg {i} (sector outside)", tgt, words,
                            Refuse("msg", "Target message sector outside device."), sector=str(LEN + r.choice([0, 8, 1 << 40])))
                continue
            msg_refused(f"{label}: msg {i}", tgt, words, ref)
            b.add(lambda tgt=tgt, words=words: run(msg_argv(tgt, words)))
        after = b.close()
        for name, vline, echo in valid_views:
            create_accepted(name, "fzv2", vline, echo, dm_names())
        d = sum_diff(after, sums(), skip=(PMEM,))
        check(f"{label}: {len(valid_views)} accepted views changed nothing", not d, f"changed: {d}")

    random_round("messages, no snapshot", n_per_state)
    # the jsnap device itself as production, as journal and as store (reload)
    for i, what in enumerate(["production", "journal", "store"]):
        a = [PROD, PMEM, STORE, str(C)]
        a[i] = FZM
        KMSG.mark()
        rc, out = run(["dmsetup", "reload", "fzm", "--table", line_bytes(0, LEN, "jsnap", a)])
        logs = KMSG.read()
        run(["dmsetup", "reload", "fzm", "--clear"]) if rc == 0 else None
        want = f"Error opening {what} device"
        check(f"messages: reload with the jsnap device itself as {what}: refused: {want}",
              rc != 0 and any(f": jsnap: {want} (-" in l for l in logs), f"rc={rc} log={logs[:3]}")
    KMSG.mark()
    rc, out = run(["dmsetup", "create", "fzself", "--notable"])
    run(["dmsetup", "mknodes"])
    rc, out = run(["dmsetup", "load", "fzself", "--table", f"0 {LEN} jsnap-view /dev/mapper/fzself ro"])
    logs = KMSG.read()
    check("messages: a view of its own device: refused: A view cannot be loaded onto its own jsnap device",
          rc != 0 and any("A view cannot be loaded onto its own jsnap device" in l for l in logs), f"rc={rc} {logs[:3]}")
    dm_remove("fzself")

    # ---- snapshot active
    rc, out = run(["dmsetup", "message", "fzm", "0", "snapshot"])
    if not check("messages: snapshot", rc == 0, out.strip()):
        return
    st["snap"] = True
    random_round("messages, snapshot active", n_per_state)

    # ---- a view open
    rc, out = run(["dmsetup", "create", "fzv", "--table", f"0 {LEN} jsnap-view {FZM} ro"])
    if check("messages: create a ro view", rc == 0, out.strip()):
        st["views"] = 1
        run(["dmsetup", "mknodes"])
        KMSG.mark()
        rc, out = run(["dmsetup", "reload", "fzm", "--table", line])
        logs = KMSG.read()
        if rc == 0:
            run(["dmsetup", "reload", "fzm", "--clear"])
        check("messages: reload of the jsnap device while a view is attached: refused (EBUSY)",
              rc != 0 and any(re.search(r"jsnap: A jsnap-view is attached to this device: remove it first \(-(16|EBUSY)\)", l)
                              for l in logs), f"rc={rc} {logs[:3]}")
        random_round("messages, view open", n_per_state, targets=("fzm", "fzm", "fzv"))
        dm_remove("fzv")
        st["views"] = 0

    # ---- suspended
    rc, out = run(["dmsetup", "suspend", "fzm"])
    if check("messages: suspend", rc == 0, out.strip()):
        st["suspended"] = True
        random_round("messages, suspended", n_per_state // 2, views=False)
        SEEN.clear()
        for w in (["snapshot"], ["drop"], ["hydrate", "on"], ["hydrate", "off"], ["drain"]):
            msg_refused("messages, suspended", "fzm", w, expect_msg(w, st))
        run(["dmsetup", "resume", "fzm"])
        st["suspended"] = False

    dm_remove("fzm")
    check("messages: no device left", dm_names() == dm_before, f"{dm_names()}")


def expect_changed(rest, st):
    """`changed [current|previous] [FIRST [COUNT]]` (README): None if it is
    accepted, or may be (`previous` depends on the snapshots taken since the
    journal was formatted, which this oracle does not follow)."""
    which = "current"
    if rest and rest[0] in ("current", "previous"):
        which, rest = rest[0], rest[1:]
    if len(rest) > 2:
        return Refuse("msg", "dm-jsnap: Wrong number of arguments for message")
    nums = []
    for a in rest:
        if not re.fullmatch("[0-9]+", a) or int(a) >= 1 << 64:
            return Refuse("msg", "dm-jsnap: Invalid changed argument: expected [current|previous] [<first_chunk> [<nr_chunks>]]")
        nums.append(int(a))
    if st["suspended"]:
        return Refuse("msg", "dm-jsnap: message refused: the device is suspended")
    if which == "previous":
        return None
    nch = (LEN + C - 1) // C
    if nums and nums[0] >= nch:
        return Refuse("msg", f"dm-jsnap: changed: first chunk {nums[0]} is beyond the last chunk {nch - 1}")
    if len(nums) == 2 and nums[1] == 0:
        return Refuse("msg", "dm-jsnap: changed: the chunk count must be at least 1")
    return None


def gen_refused_msg(r, st):
    """A random message that the oracle says is refused in state `st`
    (valid ones are drawn again: the directed steps cover them), so that
    every random message case prints exactly one check."""
    for _ in range(1000):
        words = gen_msg(r)
        kw = kernel_words(words)
        ref = expect_msg(kw, st) if kw else None
        if ref is not None:
            return words, ref
    raise RuntimeError("no refused message in 1000 draws")


def busy_messages(r, n, st, when):
    """`n` random messages to fzb `when` (hydration or drain runs); those
    the oracle says are refused must be, with their reason."""
    for i in range(n):
        words, ref = gen_refused_msg(r, st)
        msg_refused(f"busy: {when}: msg {i}", "fzb", words, ref)


def phase_busy(r, n):
    """Messages while hydration and then drain run, on a jsnap device of its
    own over 16 MiB dm-linear slices of prod and store (it cannot reach
    beyond them): production must end as the writes made it, the store as
    the snapshot (hydrated), the other disks unwritten."""
    global STATE_MOVES
    mib = LEN // 2048
    p0 = os.path.join(SCRATCH, "p0")
    model = os.path.join(SCRATCH, "model")
    for name, dev in (("bz_p", PROD), ("bz_s", STORE)):
        rc, out = run(["dmsetup", "create", name, "--table", f"0 {LEN} linear {dev} 0"])
        if not check(f"busy: create {name}", rc == 0, out):
            return
    run(["dmsetup", "mknodes"])
    BP, BS = "/dev/mapper/bz_p", "/dev/mapper/bz_s"
    rc, out = run(["dmsetup", "create", "fzb", "--table",
                   f"0 {LEN} jsnap {BP} {PMEM} {BS} {C} 4 format no_destage hydrate_batch 1"])
    if not check("busy: create the jsnap device (no_destage, hydrate_batch 1)", rc == 0, out):
        return
    run(["dmsetup", "mknodes"])
    FZB = "/dev/mapper/fzb"
    st = {"snap": False, "views": 0, "suspended": False}
    sh(f"dd if={BP} of={p0} bs=1M count={mib} iflag=direct status=none; cp {p0} {model}")
    rc, out = run(["dmsetup", "message", "fzb", "0", "snapshot"])
    check("busy: snapshot", rc == 0, out)
    st["snap"] = True
    others = {d: v for d, v in write_counters().items() if d in (SPARE, LOOPDEV)}
    others_sum = {d: devsum(d) for d in (SPARE, LOOPDEV)}
    with open(model, "r+b") as m:
        blk = os.path.join(SCRATCH, "blk")
        for _ in range(24):
            nsec = r.randint(1, 256)
            off = r.randrange(0, LEN - nsec)
            data = os.urandom(nsec * 512)
            with open(blk, "wb") as f:
                f.write(data)
            rc, out = sh(f"dd if={blk} of={FZB} bs=512 seek={off} count={nsec} oflag=direct status=none")
            if rc != 0:
                fail("busy: write", out)
                return
            m.seek(off * 512)
            m.write(data)
    STATE_MOVES = True
    rc, out = run(["dmsetup", "message", "fzb", "0", "hydrate", "on"])
    check("busy: hydrate on", rc == 0, out)
    _, s = run(["dmsetup", "status", "fzb"])
    note(f"busy: status at the first message during hydration: {s.strip()}")
    busy_messages(r, n, st, "during hydration")
    _, s = run(["dmsetup", "status", "fzb"])
    note(f"busy: status after the messages during hydration: {s.strip()}")
    drain = subprocess.Popen(["dmsetup", "message", "fzb", "0", "drain"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    _, s = run(["dmsetup", "status", "fzb"])
    note(f"busy: status at the first message during drain: {s.strip()}")
    busy_messages(r, n, st, "during drain")
    check("busy: drain succeeded", drain.wait(timeout=300) == 0, drain.stdout.read().decode())
    for _ in range(300):
        _, s = run(["dmsetup", "status", "fzb"])
        if "hydration=done" in s:
            break
        time.sleep(1)
    check("busy: hydration done", "hydration=done" in s, s.strip())
    STATE_MOVES = False
    _, a = sh(f"dd if={BP} bs=1M iflag=direct status=none | cksum")
    _, b = sh(f"cksum < {model}")
    check("busy: production after drain = the writes (model)", a.split()[:2] == b.split()[:2], f"{a} vs {b}")
    _, a = sh(f"dd if={BS} bs=1M iflag=direct status=none | cksum")
    _, b = sh(f"cksum < {p0}")
    check("busy: store after hydration = the snapshot", a.split()[:2] == b.split()[:2], f"{a} vs {b}")
    now = {d: v for d, v in write_counters().items() if d in (SPARE, LOOPDEV)}
    check("busy: spare and loop disk not written", now == others, f"{others} -> {now}")
    now_sum = {d: devsum(d) for d in (SPARE, LOOPDEV)}
    check("busy: spare and loop disk unchanged (whole-device checksums)", now_sum == others_sum,
          f"{others_sum} -> {now_sum}")
    rc, out = run(["dmsetup", "message", "fzb", "0", "drop"])
    check("busy: drop", rc == 0, out)
    for d in ("fzb", "bz_s", "bz_p"):
        check(f"busy: remove {d}", dm_remove(d), "")


def main():
    global JOURNAL
    r = random.Random(SEED)
    note(f"fuzz: seed {SEED}, {NCASES} cases (replay: JSNAP_FUZZ_SEED={SEED} JSNAP_FUZZ_CASES={NCASES})")
    note("devices: " + ", ".join(f"{d.label}={d.path}({d.mm() if d.block else '-'},{d.sectors},dax={int(d.dax)})"
                                  for d in DEVS.values()))
    t0 = time.time()
    sums()
    note(f"reading all of pmem and the write counters: {time.time() - t0:.1f} s")
    if not reformat_base("start"):
        return
    ntab = NCASES * 2 // 3
    t = time.time()
    phase_tables(r, ntab)
    note(f"table phase: {time.time() - t:.1f} s")
    t = time.time()
    phase_superblock()
    note(f"superblock phase: {time.time() - t:.1f} s")
    t = time.time()
    nmsg = max(8, (NCASES - ntab) // 4)
    phase_messages(r, nmsg)
    note(f"message phase: {time.time() - t:.1f} s")
    t = time.time()
    phase_busy(r, nmsg // 2)
    note(f"busy phase: {time.time() - t:.1f} s")
    run(["dmsetup", "mknodes"])
    for k in range(3):
        try:
            os.unlink(os.path.join(IMGDIR, f"jsnap-fuzz-pmem.{os.getpid()}.{k}"))
        except OSError:
            pass
    note(f"fuzz: {npass} passed, {nfail} failed, {time.time() - t0:.0f} s (seed {SEED})")


if __name__ == "__main__":
    main()
    sys.exit(1 if nfail else 0)
