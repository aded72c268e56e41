#!/usr/bin/env python3
"""Benchmark tailpost's SMTP mx against Postfix smtpd -> Dovecot LMTP -> Maildir.

One command, one run on loopback (root: Postfix and Dovecot start as root):

  tests/bench/smtp/run.sh [--messages 1000] [--sessions 10] [--size 2048] [--reps 1]

Postfix's own load generator, smtp-source, sends N messages of SIZE bytes
of payload over S parallel sessions (a new connection per message, as most
MX traffic is) to one recipient, into each target in turn:

  tailpost-fs  tailpost-mailbox (release build) mx listener, Postgres, blobs
               in a local directory;
  tailpost-s3  the same with blobs in s3rver (S3 API on loopback), every
               PUT confirmed by a HEAD (stores.blob.s3.verify: head, the
               default);
  tailpost-s3-etag  the same, PUTs confirmed by their ETag (verify: etag:
               the server's MD5 of the stored bytes must be ours; no HEAD);
  postfix      Postfix smtpd (private instance) relaying to Dovecot's LMTP
               (private instance) storing into a Maildir: the reference.

"End to end" means accepted AND stored: for tailpost the 250 is only sent
once the blob is durable and the Postgres transaction committed, so the
run ends when smtp-source ends (and the row count is checked); for
Postfix the run ends when the last message file appears in the Maildir.
Every component keeps its durability defaults (Postgres fsync and
synchronous_commit on, blob fsync+rename, Postfix queue fsync, Dovecot's
fsync_mode=optimized).

Reported per target (median over reps): messages/s; peak memory of the
mail daemon(s): the largest sum of PSS (shared pages counted once) over
all their processes, sampled every 50 ms, and for tailpost also the
process's VmHWM (peak RSS); the stores (Postgres, s3rver) are not
counted in memory; CPU seconds (user+system, including reaped children)
per 1000 messages of those processes, and for tailpost separately the CPU
its stores (Postgres, s3rver) spent meanwhile.  Then the ratios tailpost-fs/postfix and tailpost-s3/postfix.
Everything is bounded in time; every process started here is stopped by
PID.
"""
import argparse
import json
import os
import pathlib
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import harness  # noqa: E402
import postfix_util  # noqa: E402

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
RCPT = "bench@example.org"
TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(harness.child_pids(p))
    return out


def proc_field(pid, name):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            # utime, stime, cutime, cstime: children reaped by the masters count too
            total += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return total / TICK


def pss_kb(pid):
    """Proportional set size: shared pages (libraries, a master's pages in its
    forked children) counted once across the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Largest sum of PSS over the descendants of some root pids, sampled
    every 50 ms (a peak between samples can be missed)."""

    def __init__(self, roots):
        self.roots, self.peak, self.stop_flag = roots, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_flag:
            pids = [p for r in self.roots for p in descendants(r)]
            self.peak = max(self.peak, sum(pss_kb(p) for p in pids))
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop_flag = True
        self.t.join(timeout=5)


def smtp_source(port, n, sessions, size, timeout):
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(n), "-l", str(size), "-M", "client.bench",
            "-f", "sender@remote.example", "-t", RCPT, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({r.returncode}): {r.stdout}{r.stderr}")
    return t0, time.monotonic()


# --- tailpost -----------------------------------------------------------------


class Tailpost:
    def __init__(self, tmp, exe, pg, db, s3=None, verify="head"):
        self.tmp = pathlib.Path(tmp)
        self.exe, self.pg, self.db, self.s3 = exe, pg, db, s3
        self.port = harness.free_port()
        self.blobs = self.tmp / "blobs"
        self.blobs.mkdir()
        if s3 is not None:
            self.bucket = s3.create_bucket()
            blob = (f'  blob: {{ s3: {{ endpoint: "{s3.endpoint}", region: {s3.region}, '
                    f'bucket: {self.bucket}, access_key: "{s3.access_key}", '
                    f'secret_key: "{s3.secret_key}", timeout: 30s, retries: 2, '
                    f'verify: {verify} }} }}\n')
        else:
            blob = f'  blob: {{ fs: {{ path: "{self.blobs}" }} }}\n'
        self.cfg = self.tmp / "mailbox.yaml"
        self.cfg.write_text(
            "hostname: mail.bench\nlog_level: warn\n"
            f"smtp: {{ spool_dir: \"{self.tmp / 'spool'}\" }}\n"
            f"listeners:\n  - name: mx\n    role: mx\n    bind: [\"127.0.0.1:{self.port}\"]\n"
            "    max_connections: 10000\n"
            f"stores:\n  data: {{ postgres: \"{db.url_nopw}\", password: \"${{PGPW}}\", "
            "pool_size: 8 }\n" + blob)
        self.env = harness._clean_env({"PGPW": db.password})
        self.log = self.tmp / "mailbox.log"
        self.proc = None

    def cli(self, *args, input=None):
        r = subprocess.run([str(self.exe)] + list(args) + ["-c", str(self.cfg)], input=input,
                           capture_output=True, text=True, env=self.env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{args}: {r.stdout}{r.stderr}")

    def setup(self):
        self.cli("migrate")
        self.cli("domain", "add", "example.org")
        self.cli("account", "add", RCPT, input="bench-pw\n")

    def start(self):
        self.proc = harness.spawn([self.exe, "serve", "-c", self.cfg], self.log, env=self.env,
                                  cwd=self.tmp)
        harness.wait_port("127.0.0.1", self.port, timeout=30, proc=self.proc)

    def stored(self):
        out = self.pg.psql("SELECT count(*) FROM messages", dbname=self.db.name)
        return int(out.strip())

    def peak_rss_kb(self):
        return proc_field(self.proc.pid, "VmHWM")

    def cpu(self):
        return cpu_seconds([self.proc.pid])

    def stop(self):
        harness.stop(self.proc)


def store_cpu(pg, s3):
    """CPU seconds so far of the stores tailpost uses (Postgres, s3rver)."""
    roots = [pg.proc.pid] + ([s3.proc.pid] if s3 is not None else [])
    return cpu_seconds([p for r in roots for p in descendants(r)])


def run_tailpost(args, tmp, exe, pg, s3, verify="head"):
    db = pg.create_database()
    tp = Tailpost(tmp, exe, pg, db, s3, verify)
    tp.setup()
    tp.start()
    try:
        smtp_source(tp.port, 50, 5, args.size, 120)  # warm-up: connections, caches
        before, cpu0, scpu0 = tp.stored(), tp.cpu(), store_cpu(pg, s3)
        with RssSampler([tp.proc.pid]) as rs:
            t0, t1 = smtp_source(tp.port, args.messages, args.sessions, args.size, args.timeout)
        scpu = store_cpu(pg, s3) - scpu0
        stored = tp.stored() - before
        if stored != args.messages:
            raise RuntimeError(f"tailpost stored {stored} of {args.messages}")
        return {"rate": args.messages / (t1 - t0), "rss_mb": rs.peak / 1024,
                "hwm_mb": tp.peak_rss_kb() / 1024,
                "cpu_per_1k": (tp.cpu() - cpu0) * 1000 / args.messages,
                "store_cpu_per_1k": scpu * 1000 / args.messages}
    finally:
        tp.stop()
        pg.drop_database(db.name)


# --- Postfix -> Dovecot LMTP -> Maildir -----------------------------------------


def start_dovecot(base):
    nobody = pwd.getpwnam("nobody")
    for d in ("run", "state", "home"):
        os.mkdir(os.path.join(base, d), 0o755)
    os.chown(os.path.join(base, "home"), nobody.pw_uid, nobody.pw_gid)
    port = harness.free_port()
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""\
base_dir = {base}/run
state_dir = {base}/state
instance_name = tailpost-bench-{port}
log_path = {base}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={base}/home/%u
}}
mail_location = maildir:~/Maildir
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
""")
    proc = harness.spawn([DOVECOT, "-F", "-c", conf], os.path.join(base, "dovecot.out"), cwd=base)
    harness.wait_port("127.0.0.1", port, timeout=30, proc=proc)
    return proc, port, pathlib.Path(base) / "home" / RCPT / "Maildir" / "new"


def start_postfix(lmtp_port):
    """Postfix smtpd relaying example.org to Dovecot's LMTP, through the
    tests' private-Postfix runner (tests/integration/postfix_util.py).  Its
    service table has no lmtp client, so one is added to master.cf and the
    master re-reads it (SIGHUP) before any mail flows."""
    pf = postfix_util.start_postfix("postfix-bench", f"""\
myhostname = pf.bench
mydestination =
inet_protocols = ipv4
virtual_mailbox_domains = example.org
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
smtpd_reject_unlisted_recipient = no
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
""")
    try:
        master_cf = os.path.join(pf["base"], "conf", "master.cf")
        with open(master_cf) as f:
            text = f.read()
        if not re.search(r"^lmtp\s+unix\s", text, re.M):
            with open(master_cf, "a") as f:
                f.write("lmtp      unix  -       -       n       -       -       lmtp\n")
            mark = os.path.getsize(pf["log"])
            os.kill(pf["proc"].pid, signal.SIGHUP)
            harness.wait_for(lambda: "reload" in open(pf["log"], errors="replace").read()[mark:],
                             timeout=20, what="postfix master reload")
    except BaseException:
        postfix_util.stop_postfix(pf)
        raise
    return pf


def maildir_count(d):
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


def run_postfix(args, tmp):
    base = tempfile.mkdtemp(prefix="pfbench-", dir=tmp)
    os.chmod(base, 0o755)
    dv, lmtp_port, maildir = start_dovecot(base)
    pf = None
    try:
        pf = start_postfix(lmtp_port)
        port = pf["port"]
        smtp_source(port, 50, 5, args.size, 120)
        harness.wait_for(lambda: maildir_count(maildir) >= 50, timeout=60, what="warm-up")
        before = maildir_count(maildir)
        roots = [pf["proc"].pid, dv.pid]
        cpu0 = cpu_seconds([p for r in roots for p in descendants(r)])
        with RssSampler(roots) as rs:
            t0, _ = smtp_source(port, args.messages, args.sessions, args.size, args.timeout)
            harness.wait_for(lambda: maildir_count(maildir) - before >= args.messages,
                             timeout=args.timeout, interval=0.01, what="Maildir delivery")
            t1 = time.monotonic()
            cpu1 = cpu_seconds([p for r in roots for p in descendants(r)])
        return {"rate": args.messages / (t1 - t0), "rss_mb": rs.peak / 1024, "hwm_mb": 0.0,
                "cpu_per_1k": (cpu1 - cpu0) * 1000 / args.messages, "store_cpu_per_1k": 0.0}
    finally:
        if pf is not None:
            postfix_util.stop_postfix(pf)
        harness.stop(dv)
        shutil.rmtree(base, ignore_errors=True)


# --- main -------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--build", default=os.environ.get("SMTP_BENCH_BUILD", "build/bench-smtp"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--targets", default="tailpost-fs,tailpost-s3,tailpost-s3-etag,postfix",
                    help="comma-separated subset of tailpost-fs, tailpost-s3, "
                         "tailpost-s3-etag, postfix")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: private Postfix and Dovecot instances start as root")
    build = ROOT / args.build
    if not args.no_build:
        subprocess.run(["make", f"BUILD={args.build}", "MODE=release", "-j2",
                        f"{args.build}/bin/tailpost-mailbox"], cwd=ROOT, check=True)
    exe = build / "bin" / "tailpost-mailbox"
    tmp = tempfile.mkdtemp(prefix="tailpost-smtp-bench-", dir=harness._tmp_base())
    os.chmod(tmp, 0o755)
    pg = harness.PostgresServer()
    s3 = harness.S3Server()
    results = {"tailpost-fs": [], "tailpost-s3": [], "tailpost-s3-etag": [], "postfix": []}
    for t in args.targets.split(","):
        if t not in results:
            sys.exit(f"unknown target '{t}'")
    results = {k: v for k, v in results.items() if k in args.targets.split(",")}
    try:
        pg.start()
        s3.start()
        for rep in range(args.reps):
            for name in results:
                d = tempfile.mkdtemp(prefix=f"{name}-{rep}-", dir=tmp)
                os.chmod(d, 0o755)  # Postfix and Dovecot users traverse it
                if name == "postfix":
                    r = run_postfix(args, d)
                elif name == "tailpost-fs":
                    r = run_tailpost(args, d, exe, pg, None)
                else:
                    r = run_tailpost(args, d, exe, pg, s3,
                                     "etag" if name.endswith("-etag") else "head")
                results[name].append(r)
                print(f"rep {rep} {name:12s} {r['rate']:8.1f} msg/s  peak PSS "
                      f"{r['rss_mb']:6.1f} MB  cpu {r['cpu_per_1k']:5.2f} s/1k msgs  stores "
                      f"{r['store_cpu_per_1k']:5.2f} s/1k msgs", flush=True)
    finally:
        s3.close()
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: {m: statistics.median(r[m] for r in v)
               for m in ("rate", "rss_mb", "hwm_mb", "cpu_per_1k", "store_cpu_per_1k")}
           for k, v in results.items()}
    print(f"\n{args.messages} messages x {args.size} B payload, {args.sessions} sessions, "
          f"{args.reps} rep(s), medians:")
    print("| target | msg/s | peak PSS MB (sum) | peak RSS MB (VmHWM) | CPU s / 1000 msgs "
          "| + stores' CPU s / 1000 msgs |")
    print("|---|---|---|---|---|---|")
    for k, v in med.items():
        hwm = f"{v['hwm_mb']:.1f}" if v["hwm_mb"] else "-"
        st = f"{v['store_cpu_per_1k']:.2f}" if k != "postfix" else "-"
        print(f"| {k} | {v['rate']:.0f} | {v['rss_mb']:.1f} | {hwm} | {v['cpu_per_1k']:.2f} "
              f"| {st} |")
    if "postfix" not in med:
        if args.json:
            print(json.dumps({"medians": med}))
        return
    pf = med["postfix"]["rate"]
    fs_ratio = med["tailpost-fs"]["rate"] / pf if "tailpost-fs" in med else None
    s3_ratio = med["tailpost-s3"]["rate"] / pf if "tailpost-s3" in med else None
    etag_ratio = med["tailpost-s3-etag"]["rate"] / pf if "tailpost-s3-etag" in med else None
    print()
    # Targets of one repetition run back to back, so the ratio within a
    # repetition is less exposed to load that comes and goes on a shared
    # machine than the ratio of the medians: print the median of those too.
    for k in results:
        if k != "postfix" and len(results[k]) == len(results["postfix"]):
            per = [a["rate"] / b["rate"] for a, b in zip(results[k], results["postfix"])]
            print(f"per-repetition ratios {k} / postfix: "
                  f"{', '.join(f'{x:.2f}' for x in per)} (median {statistics.median(per):.2f})")
    if fs_ratio is not None:
        print(f"ratio tailpost-fs / postfix+dovecot: {fs_ratio:.2f}x (target >= 1.5x)")
    if s3_ratio is not None:
        print(f"ratio tailpost-s3 (verify: head) / postfix+dovecot: {s3_ratio:.2f}x "
              "(target >= 1.0x)")
    if etag_ratio is not None:
        print(f"ratio tailpost-s3 (verify: etag) / postfix+dovecot: {etag_ratio:.2f}x "
              "(target >= 1.0x)")
    if args.json:
        print(json.dumps({"medians": med, "ratio_fs": fs_ratio, "ratio_s3": s3_ratio,
                          "ratio_s3_etag": etag_ratio}))


if __name__ == "__main__":
    main()
