#!/usr/bin/env python3
"""bench/report.py — turn the guest's raw output (bench/guest.sh) into
results.json, results.md and PNG plots.  Runs on the host.

    report.py RAW_DIR OUT_DIR HOST_FACTS_FILE

RAW_DIR is the guest's $JSNAP_VM_OUT/bench as copied back by bench/run.sh.
Plots need matplotlib (bench/run.sh runs this with $VENV/bin/python); without
it the JSON and Markdown are still written.
"""
import json
import os
import re
import sys

CONFIGS = [
    ("raw", "raw production disk (NVMe)"),
    ("linear", "dm-linear"),
    ("snap4k", "dm-snapshot P, 4 KiB chunk (origin, 1 snapshot)"),
    ("snap64k", "dm-snapshot P, 64 KiB chunk (origin, 1 snapshot)"),
    ("thin", "dm-thin, 64 KiB blocks, 1 internal snapshot"),
    ("writecache", "dm-writecache p (pmem), no snapshot"),
    ("wc_snap", "dm-writecache p (pmem) over a dm-snapshot origin, 4 KiB chunk, 1 snapshot"),
    ("jsnap", "jsnap, 4 KiB chunk, no snapshot"),
    ("jsnap_snap", "jsnap, 4 KiB chunk, 1 snapshot"),
    ("jsnap_view", "jsnap, 4 KiB chunk, 1 snapshot + jsnap-view ro"),
    ("jsnap_bypass", "jsnap, 4 KiB chunk, no snapshot, journal bypass for writes of 128 KiB or more (bypass 256)"),
    ("jsnapx", "jsnap, 4 KiB chunk, no snapshot, with the feature args of BENCH_JSNAP_FEATURES (experiment)"),
    ("jsnapx_snap", "jsnap, 4 KiB chunk, 1 snapshot, with the feature args of BENCH_JSNAP_FEATURES (experiment)"),
    ("raw_after", "raw production disk again (baseline drift check, job c)"),
]
JOBS = [
    ("a", "4k randwrite, every block of the region once, QD1 (first write)", "write", "iops"),
    ("b", "4k randwrite, same blocks overwritten, QD1", "write", "iops"),
    ("c", "4k randwrite, QD32", "write", "iops"),
    ("d", "4k randwrite + fdatasync=1, QD1", "write", "iops"),
    ("e", "1 MiB sequential write of the whole volume (> journal), QD4", "write", "mbs"),
    ("f", "4k randread QD32, region half rewritten just before (in journal/cache)", "read", "iops"),
    ("s", "4k randwrite, 2 writer threads at QD1 each", "write", "iops"),
    ("t", "4k randwrite, 2 writer threads at QD16 each", "write", "iops"),
]
# Scaling: two writer threads against one writer at the same total depth.
SCALING = (("s", "b", "2 threads x QD1 / 1 thread QD1 (job b)"),
           ("t", "c", "2 threads x QD16 / 1 thread QD32 (job c)"))
# USER_HZ of /proc/stat
CLK_TCK = 100
BASES = ("linear", "snap4k")
DRIFT_LIMIT = 0.20
SPLAT_RE = re.compile(r"BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace")


def kv_file(path):
    d = {}
    if not os.path.exists(path):
        return d
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if "=" in line:
            k, v = line.split("=", 1)
            d.setdefault(k, v)
            d.setdefault(k + "#all", []).append(v)
    return d


def load_fio(path):
    if not os.path.exists(path):
        return None
    txt = open(path, errors="replace").read()
    i = txt.find("{")
    if i < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(txt[i:])[0]
    except ValueError:
        return None


def stat_fields(meta, prefix, dev):
    v = meta.get(f"{prefix}_{dev}")
    if not v:
        return None
    return [int(x) for x in v.split()]


def jsnap_counters(meta, prefix):
    """written_bytes/destaged_bytes/journal_used from the `dmsetup status` lines."""
    for line in meta.get(f"{prefix}_status#all", []):
        if " jsnap " in line and line.startswith("js:"):
            m = dict(re.findall(r"(\w+)=(\S+)", line))
            return m
    return None


def cpu_busy(meta, prefix):
    """Busy guest CPU time in seconds (user+nice+system+irq+softirq, all
    CPUs) from the /proc/stat line the hook recorded."""
    v = meta.get(f"{prefix}_cpu")
    if not v:
        return None
    f = v.split()
    if len(f) < 8 or f[0] != "cpu":
        return None
    t = [int(x) for x in f[1:8]]
    return (t[0] + t[1] + t[2] + t[5] + t[6]) / CLK_TCK


def pct(p, key):
    try:
        return p[key] / 1000.0  # ns -> us
    except (KeyError, TypeError):
        return None


def fio_jobs(raw, cfg):
    """jobname -> fio JSON job object, from every *.json of the configuration."""
    out = {}
    d = os.path.join(raw, cfg)
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".json"):
            fio = load_fio(os.path.join(d, fn))
            for j in (fio or {}).get("jobs", []):
                out[j["jobname"]] = j
    return out


def parse_step(raw, cfg, job, direction, facts, jobs):
    meta = kv_file(os.path.join(raw, cfg, f"{job}.meta"))
    if not meta:
        return None
    r = {}
    if meta.get("drain_t0") and meta.get("drain_t1"):
        r["drain_s"] = float(meta["drain_t1"]) - float(meta["drain_t0"])
        r["drain_rc"] = int(meta.get("drain_rc", "0"))
    j = jobs.get(job)
    if j:
        r["fio_error"] = j.get("error", 0)
        d = j[direction]
        r["iops"] = d["iops"]
        r["mbs"] = d["bw_bytes"] / 1e6
        r["io_bytes"] = d["io_bytes"]
        r["total_ios"] = d["total_ios"]
        r["runtime_ms"] = d["runtime"]
        for kind in ("lat_ns", "clat_ns"):
            p = d.get(kind, {}).get("percentile", {})
            r[kind.replace("_ns", "")] = {
                "p50_us": pct(p, "50.000000"),
                "p99_us": pct(p, "99.000000"),
                "p99.9_us": pct(p, "99.900000"),
                "mean_us": d.get(kind, {}).get("mean", 0) / 1000.0,
            }
        r["write_bytes"] = j["write"]["io_bytes"]
        r["read_bytes"] = j["read"]["io_bytes"]
    # CPU time per I/O, whole guest (fio, the target's workers, interrupts),
    # over the job's I/O and its drain
    cb, ca = cpu_busy(meta, "before"), cpu_busy(meta, "after")
    if cb is not None and ca is not None and r.get("total_ios"):
        r["cpu_us_per_io"] = (ca - cb) * 1e6 / r["total_ios"]
    # /sys/block/*/stat deltas (before -> after, drain included)
    devs = [facts["prod_dev"], facts["store_dev"], "pmem0"]
    delta = {}
    for dv in devs:
        b = stat_fields(meta, "before", dv)
        a = stat_fields(meta, "after", dv)
        if b and a:
            delta[dv] = {
                "read_sectors": a[2] - b[2],
                "write_sectors": a[6] - b[6],
                "flushes": (a[14] - b[14]) if len(a) > 14 else None,
            }
    r["diskstats"] = delta
    wsec = r.get("write_bytes", 0) / 512.0
    if delta and wsec > 0:
        nv = sum(delta[d]["write_sectors"] for d in devs[:2] if d in delta)
        rd = sum(delta[d]["read_sectors"] for d in devs[:2] if d in delta)
        r["wa_disk"] = nv / wsec
        r["ra_disk"] = rd / wsec
        pm = delta.get("pmem0", {}).get("write_sectors", 0)
        r["pmem_blk_sectors"] = pm
        jb = ja = None
        cb, ca = jsnap_counters(meta, "before"), jsnap_counters(meta, "after")
        if cb and ca:
            jb = int(ca["written_bytes"]) - int(cb["written_bytes"])
            ja = int(ca["destaged_bytes"]) - int(cb["destaged_bytes"])
            r["jsnap_written_bytes"] = jb
            r["jsnap_destaged_bytes"] = ja
            r["wa_journal"] = jb / (wsec * 512)
            r["wa_total"] = (nv + pm + jb / 512.0) / wsec
        else:
            r["wa_total"] = (nv + pm) / wsec
        fl = sum((delta[d]["flushes"] or 0) for d in devs[:2] if d in delta)
        r["flushes_per_1k_writes"] = 1000.0 * fl / max(1, r.get("total_ios", 1))
    cj = jsnap_counters(meta, "before")
    if cj:
        r["jsnap_status_before"] = cj
    ca = jsnap_counters(meta, "after")
    if ca:
        r["jsnap_status_after"] = ca
    return r


def main():
    raw, outdir, hostfacts = sys.argv[1:4]
    facts = kv_file(os.path.join(raw, "facts"))
    facts = {k: v for k, v in facts.items() if not k.endswith("#all")}
    for k in ("prod", "store"):
        m = re.match(r"(\S+)", facts.get(k, ""))
        facts[k + "_dev"] = os.path.basename(m.group(1)) if m else k
    # facts lines like "prod=/dev/nvme0n1 prod_sectors=..." -> split further
    for k in list(facts):
        if k in ("fio", "cpu", "kernel", "module"):
            continue
        for kk, vv in re.findall(r"(\w+)=(\S+)", facts[k]):
            facts.setdefault(kk, vv)
        if re.search(r"\s\w+=", facts[k]):
            facts[k] = facts[k].split()[0]
    host = kv_file(hostfacts)
    host = {k: v for k, v in host.items() if not k.endswith("#all")}

    res = {"host": host, "guest": facts, "configs": {}, "jobs": {j[0]: j[1] for j in JOBS}}
    for cfg, desc in CONFIGS:
        d = os.path.join(raw, cfg)
        if not os.path.isdir(d):
            continue
        result = open(os.path.join(d, "result")).read().strip() if os.path.exists(os.path.join(d, "result")) else "INCOMPLETE"
        c = {"description": desc, "result": result, "jobs": {}}
        fj = fio_jobs(raw, cfg)
        for job, _, direction, _ in JOBS + [("v", "", "write", ""), ("x", "", "write", ""), ("w", "", "read", ""),
                                           ("y", "", "read", ""), ("g", "", "write", "")]:
            s = parse_step(raw, cfg, job, direction, facts, fj)
            if s:
                c["jobs"][job] = s
        setup = os.path.join(d, "setup.log")
        if os.path.exists(setup):
            c["setup_log"] = open(setup, errors="replace").read()[-4000:]
        if "a" in c["jobs"] and c["jobs"]["a"].get("total_ios") is not None:
            blocks = int(facts.get("region_mb", "0")) * 256
            if blocks:
                c["a_coverage"] = c["jobs"]["a"]["total_ios"] / blocks
        if "e" in c["jobs"] and "io_bytes" in c["jobs"]["e"]:
            jsz = int(facts.get("pmem_sectors", "0")) * 512
            c["e_exceeds_journal"] = c["jobs"]["e"]["io_bytes"] > jsz
        res["configs"][cfg] = c
    # Hydration (background copy of a whole snapshot) vs a raw copy.
    hyd = {}
    for name in ("dd", "jsnap_64k", "clone_64k", "jsnap_4k"):
        f = os.path.join(raw, "hydrate", name + ".meta")
        if not os.path.exists(f):
            continue
        m = kv_file(f)
        # One block of lines per repetition: every run must be good; the
        # median time counts, min and max are kept.
        lines = [l.strip().split("=", 1) for l in open(f) if "=" in l]
        secs = sorted(float(v or 0) for k, v in lines if k == "secs")
        rcs = [v for k, v in lines if k == "rc"]
        eq = [v for k, v in lines if k == "copy_equal"]
        h = {"mb": int(m.get("mb", "0")), "secs": secs[len(secs) // 2] if secs else 0.0,
             "secs_all": secs, "runs": len(secs),
             "ok": bool(secs) and all(v == "0" for v in rcs) and all(v == "1" for v in eq)
             and len(rcs) == len(secs) == len(eq) and "failed" not in m}
        h["mbs"] = h["mb"] / h["secs"] if h["ok"] and h["secs"] > 0 else None
        hyd[name] = h
    if "dd" in hyd and hyd["dd"]["mbs"]:
        for h in hyd.values():
            h["ratio_dd"] = h["mbs"] / hyd["dd"]["mbs"] if h["mbs"] else None
    res["hydration"] = hyd

    # ---- ratios to dm-linear and dm-snapshot 4k ----------------------------
    def metric(cfg, job, name):
        s = res["configs"].get(cfg, {}).get("jobs", {}).get(job)
        if not s:
            return None
        if name in ("iops", "mbs", "wa_disk", "wa_total", "drain_s", "cpu_us_per_io"):
            return s.get(name)
        return (s.get("lat") or {}).get(name)

    METRICS = ("iops", "mbs", "p50_us", "p99_us", "p99.9_us", "wa_disk", "wa_total", "cpu_us_per_io")
    for cfg, c in res["configs"].items():
        for job, s in c["jobs"].items():
            s["ratio"] = {}
            for base in BASES:
                rr = {}
                for m in METRICS:
                    x, y = metric(cfg, job, m), metric(base, job, m)
                    rr[m] = (x / y) if (x is not None and y) else None
                s["ratio"][base] = rr

    # ---- baseline drift ----------------------------------------------------
    before = metric("raw", "c", "iops")
    after = metric("raw_after", "c", "iops")
    verdict = "ACCEPTED"
    drift = None
    if before and after:
        drift = after / before - 1.0
        if abs(drift) > DRIFT_LIMIT:
            verdict = "REJECTED"
    else:
        verdict = "REJECTED"
    res["scaling"] = {}
    for two, one, _ in SCALING:
        for cfg in res["configs"]:
            x, y = metric(cfg, two, "iops"), metric(cfg, one, "iops")
            res["scaling"].setdefault(two, {})[cfg] = (x / y) if (x and y) else None
    res["baseline"] = {"raw_c_iops_before": before, "raw_c_iops_after": after,
                       "drift": drift, "limit": DRIFT_LIMIT}
    # kernel log
    splats = []
    dm = os.path.join(outdir, "dmesg.txt")
    if os.path.exists(dm):
        splats = [l.rstrip() for l in open(dm, errors="replace") if SPLAT_RE.search(l)]
    res["splats"] = splats[:50]
    if splats:
        verdict = "REJECTED" if verdict == "REJECTED" else "ACCEPTED-WITH-SPLATS"
    bad = [cfg for cfg, c in res["configs"].items() if c["result"] != "OK"]
    bad += ["hydrate-" + n for n, h in res.get("hydration", {}).items() if not h["ok"]]
    res["verdict"] = verdict
    res["failed_configs"] = bad

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=False)
    md = render_md(res, facts, host)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(md)
    try:
        plots(res, outdir)
    except ImportError as e:
        print(f"report.py: no plots ({e})", file=sys.stderr)
    print(md)


def fmt(x, nd=None):
    if x is None:
        return "–"
    if nd is None:
        ax = abs(x)
        nd = 0 if ax >= 100 else (1 if ax >= 10 else 2)
    return f"{x:.{nd}f}"


def cell(s, name, getter):
    x = getter(s)
    if x is None:
        return "–"
    rl = s["ratio"]["linear"].get(name)
    rs = s["ratio"]["snap4k"].get(name)
    return f"{fmt(x)} ({fmt(rl, 2)} · {fmt(rs, 2)})"


def render_md(res, facts, host):
    L = []
    ts = host.get("timestamp", "?")
    L.append(f"# dm-jsnap benchmark — {ts} UTC, {facts.get('mode', '?')} mode")
    L.append("")
    b = res["baseline"]
    drift = f"{b['drift'] * 100:+.1f}%" if b["drift"] is not None else "n/a"
    L.append(f"**Verdict: {res['verdict']}** — raw-disk baseline (job c) before/after: "
             f"{fmt(b['raw_c_iops_before'])} / {fmt(b['raw_c_iops_after'])} IOPS, drift {drift} "
             f"(limit ±{int(DRIFT_LIMIT * 100)}%).")
    if res["failed_configs"]:
        L.append("")
        L.append("**Not OK:** " + ", ".join(f"{c} ({res['configs'][c]['result'] if c in res['configs'] else 'copy differs or failed'})"
                                            for c in res["failed_configs"]))
    if res["splats"]:
        L.append("")
        L.append(f"**Kernel log splats ({len(res['splats'])}):** `" + res["splats"][0][:200] + "` …")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- accelerator: **{host.get('accel', '?')}**; guest: {facts.get('nproc')} vCPUs, "
             f"{int(facts.get('mem_total_kb', 0)) // 1024} MiB RAM, kernel {facts.get('kernel')}, {facts.get('fio')}")
    L.append(f"- host: {host.get('nproc')} CPUs ({host.get('cpu')}), {host.get('mem')}, kernel {host.get('kernel')}, "
             f"{host.get('qemu')}; load average at start {host.get('load_start')}, at end {host.get('load_end')}")
    L.append(f"- media: production and store are file-backed emulated NVMe disks (QEMU `nvme`, `dbcs=off`, "
             f"`cache=none,aio=threads`, files pre-allocated); pmem: emulated NVDIMM "
             f"{int(facts.get('pmem_sectors', 0)) // 2048} MiB (fsdax, file in /dev/shm) — journal of jsnap "
             f"and cache of dm-writecache")
    L.append(f"- sizes: volume {facts.get('volume_mb')} MiB, jobs a–d/f on the first {facts.get('region_mb')} MiB, "
             f"verify on {facts.get('verify_mb')} MiB (4k random) and {facts.get('seqverify_mb')} MiB (1 MiB sequential) in the middle; time-based jobs {facts.get('t')} s, "
             f"job a capped at {facts.get('ta')} s, job e at {facts.get('te')} s; module sha256 {facts.get('module_sha256')}")
    L.append("")
    L.append("## Devices")
    L.append("")
    L.append("| device | what | result | job a coverage | job e > journal |")
    L.append("|---|---|---|---|---|")
    for cfg, c in res["configs"].items():
        cov = c.get("a_coverage")
        L.append(f"| {cfg} | {c['description']} | {c['result']} | "
                 f"{'–' if cov is None else f'{cov * 100:.0f}%'} | "
                 f"{'–' if 'e_exceeds_journal' not in c else ('yes' if c['e_exceeds_journal'] else 'NO')} |")
    L.append("")
    L.append("Every cell is `value (ratio to dm-linear · ratio to dm-snapshot 4k)`, both measured in this run. "
             "Latency is fio's total latency (submission + completion, `lat_ns`) in µs; completion-only "
             "percentiles (`clat_ns`) are in results.json. WA disk = sectors written to the NVMe production and "
             "store disks ÷ sectors written by fio, drain/flush after the job included; WA total adds the "
             "jsnap journal bytes (`written_bytes`) — pmem written through DAX does not show in "
             "/sys/block/pmem0/stat, so dm-writecache's pmem writes are not counted. A device whose verify "
             "pass failed, or whose status showed an error, is FAILED and shows no numbers. CPU µs/IO = busy guest "
             "CPU time (all CPUs: fio, the target's workers, interrupts; /proc/stat) over the job and its drain ÷ I/Os.")
    for job, title, direction, unit in JOBS:
        L.append("")
        L.append(f"### Job {job}: {title}")
        L.append("")
        thr = "MB/s" if unit == "mbs" else "IOPS"
        L.append(f"| device | {thr} | p50 µs | p99 µs | p99.9 µs | WA disk | WA total | CPU µs/IO | drain s |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for cfg, c in res["configs"].items():
            s = c["jobs"].get(job)
            if not s:
                continue
            if c["result"] != "OK":
                L.append(f"| {cfg} | **{c['result'].split(':')[0]}** | | | | | | | |")
                continue
            if s.get("fio_error") or "iops" not in s:
                L.append(f"| {cfg} | fio error {s.get('fio_error')} | | | | | | | |")
                continue
            row = [cfg, cell(s, unit, lambda s: s.get(unit))]
            for p in ("p50_us", "p99_us", "p99.9_us"):
                row.append(cell(s, p, lambda s, p=p: (s.get("lat") or {}).get(p)))
            if direction == "write":
                row.append(cell(s, "wa_disk", lambda s: s.get("wa_disk")))
                row.append(cell(s, "wa_total", lambda s: s.get("wa_total")))
            else:
                row += ["–", "–"]
            row.append(cell(s, "cpu_us_per_io", lambda s: s.get("cpu_us_per_io")))
            row.append(fmt(s.get("drain_s")))
            L.append("| " + " | ".join(row) + " |")
    sc = res.get("scaling") or {}
    if sc:
        L.append("")
        L.append("## Scaling with two writer threads (same run)")
        L.append("")
        L.append("| device | " + " | ".join(t for _, _, t in SCALING) + " |")
        L.append("|---|" + "---|" * len(SCALING))
        for cfg in res["configs"]:
            if res["configs"][cfg]["result"] != "OK" or cfg == "raw_after":
                continue
            L.append(f"| {cfg} | " + " | ".join(fmt((sc.get(two) or {}).get(cfg), 2) for two, _, _ in SCALING) + " |")
    # jsnap details
    L.append("")
    L.append("## jsnap counters per job (`dmsetup status` deltas)")
    L.append("")
    L.append("| device | job | fio MiB written | journal MiB (`written_bytes`) | destaged MiB (`destaged_bytes`) | "
             "journal_used before → after job | preserved after |")
    L.append("|---|---|---|---|---|---|---|")
    for cfg, c in res["configs"].items():
        if not cfg.startswith("jsnap"):
            continue
        for job in "abcdstvxegf":
            s = c["jobs"].get(job)
            if not s or "jsnap_status_after" not in s:
                continue
            sb, sa = s.get("jsnap_status_before", {}), s["jsnap_status_after"]
            L.append(f"| {cfg} | {job} | {fmt(s.get('write_bytes', 0) / 2**20)} | "
                     f"{fmt((s.get('jsnap_written_bytes') or 0) / 2**20)} | "
                     f"{fmt((s.get('jsnap_destaged_bytes') or 0) / 2**20)} | "
                     f"{sb.get('journal_used', '?')} → {sa.get('journal_used', '?')} | {sa.get('preserved', '?')} |")
    L.append("")
    L.append("Verify jobs: v = 4k random writes with fio `--verify=crc32c` + read-back, x = 1 MiB sequential "
             f"writes over {facts.get('seqverify_mb')} MiB (1.5x the pmem) + read-back, then drain/flush, then "
             "`--verify_only` reads of both (w, y). g: half of the job-f region rewritten right before job f, "
             "not drained.")
    hyd = res.get("hydration") or {}
    if hyd:
        L.append("")
        L.append("## Hydration: background copy of a whole snapshot vs a raw copy")
        L.append("")
        L.append("Idle volume of random data; the copy is compared with production afterwards (md5). "
                 "dd: `dd bs=1M iflag=direct oflag=direct` production → store. jsnap: `snapshot` + `hydrate on` "
                 "until `hydration=done`, waited for with `dmsetup wait` (jsnap raises an event when every chunk is preserved); "
                 "default step: 4 MiB worth of chunks, one store flush per step. "
                 "dm-clone: same region size, `hydration_threshold 64 hydration_batch_size 64`, `enable_hydration` until its status "
                 "shows all regions hydrated, polled every 20 ms (each poll is a dmsetup process, whose guest CPU the copy shares; "
                 "its own event comes with its metadata commit, up to 1 s later, which is not counted).")
        L.append("")
        L.append("Each copier ran the number of times shown, the copiers taking turns; the median time counts.")
        L.append("")
        L.append("| copier | MiB | runs | seconds (median) | min–max | MB/s | ratio to dd | copy equal |")
        L.append("|---|---|---|---|---|---|---|---|")
        for name, h in hyd.items():
            sa = h.get("secs_all") or [h["secs"]]
            L.append(f"| {name} | {h['mb']} | {h.get('runs', 1)} | {fmt(h['secs'])} | {fmt(sa[0])}–{fmt(sa[-1])} | "
                     f"{fmt(h['mbs'])} | {fmt(h.get('ratio_dd'), 2)} | {'yes' if h['ok'] else '**NO**'} |")
    L.append("")
    L.append("Under TCG absolute numbers are far below native and depend on host load; only the ratios "
             "measured in the same run mean anything (see bench/README.md).")
    L.append("")
    return "\n".join(L)


def plots(res, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfgs = [c for c in res["configs"] if c != "raw_after"]
    if not cfgs:
        return

    def ok(c):
        return res["configs"][c]["result"] == "OK"

    # throughput
    fig, axes = plt.subplots(2, 4, figsize=(20, 8))
    for ax, (job, title, direction, unit) in zip(axes.flat, JOBS):
        vals, names, colors = [], [], []
        for c in cfgs:
            s = res["configs"][c]["jobs"].get(job)
            v = s.get(unit) if s else None
            names.append(c)
            vals.append(v if (v is not None and ok(c)) else 0)
            colors.append("tab:red" if c.startswith("jsnap") else "tab:gray")
        ax.bar(range(len(names)), vals, color=colors)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{job}: {title}", fontsize=8)
        ax.set_ylabel("MB/s" if unit == "mbs" else "IOPS")
    fig.suptitle(f"throughput per device ({res['host'].get('accel', '?')}, same run; failed devices at 0)")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "throughput.png"), dpi=90)
    plt.close(fig)

    # latency percentiles
    fig, axes = plt.subplots(2, 4, figsize=(20, 8))
    for ax, (job, title, direction, unit) in zip(axes.flat, JOBS):
        width = 0.27
        for k, (p, col) in enumerate((("p50_us", "tab:blue"), ("p99_us", "tab:orange"), ("p99.9_us", "tab:red"))):
            ys = []
            for c in cfgs:
                s = res["configs"][c]["jobs"].get(job)
                y = (s.get("lat") or {}).get(p) if s else None
                ys.append(y if (y and ok(c)) else 0)
            ax.bar([i + (k - 1) * width for i in range(len(cfgs))], ys, width, label=p.replace("_us", ""), color=col)
        ax.set_yscale("log")
        ax.set_xticks(range(len(cfgs)))
        ax.set_xticklabels(cfgs, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{job}: {title}", fontsize=8)
        ax.set_ylabel("total latency, µs (log)")
        ax.legend(fontsize=7)
    fig.suptitle("latency percentiles per device (fio lat_ns)")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "latency.png"), dpi=90)
    plt.close(fig)

    # ratios to dm-snapshot 4k
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    wjobs = [j for j in JOBS]
    for ax, base in zip(axes, BASES):
        width = 0.8 / len(cfgs)
        for k, c in enumerate(cfgs):
            ys = []
            for job, _, _, unit in wjobs:
                s = res["configs"][c]["jobs"].get(job)
                r = s["ratio"][base].get(unit) if s else None
                ys.append(r if (r and ok(c)) else 0)
            ax.bar([i + k * width for i in range(len(wjobs))], ys, width, label=c)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks([i + 0.4 for i in range(len(wjobs))])
        ax.set_xticklabels([j[0] for j in wjobs])
        ax.set_title(f"throughput ratio to {base} (same run)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ratios.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
