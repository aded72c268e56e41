#!/usr/bin/env python3
"""Benchmark tailpost's IMAP server against Dovecot (Debian, Maildir).

One command, one run on loopback (root: a private Dovecot starts as root):

  tests/bench/imap/run.sh [--clients 10,50] [--seconds 20] [--users 50]
                          [--messages 100] [--idle 200] [--reps 1]
                          [--pool-size N] [--only tailpost|dovecot]
                          [--pg-stats N] [--build DIR] [--no-build] [--json]

Our load generator, tests/tools/imap_load.c (built with the release
binary), drives both servers with the same workload:

  fill  every user bench<i>@example.org (i < --users) gets --messages
        generated text messages (1.5-12 KB) APPENDed to INBOX;
  run   N clients, each its own user: LOGIN, SELECT INBOX, then rounds of
        UID FETCH (FLAGS), (ENVELOPE), (BODY.PEEK[]) of random messages,
        UID STORE +FLAGS / -FLAGS (\\Flagged), UID FETCH 1:* (FLAGS),
        APPEND of a new 1 KB message with \\Deleted and UID EXPUNGE of it,
        NOOP -- for --seconds; commands/s, p50/p99 latency, errors.  The
        mailboxes are not refilled between runs: APPEND + EXPUNGE churn
        accumulates over the runs of one invocation, as in a real mailbox;
  idle  --idle connections logged in with INBOX selected; the memory the
        server grew by, divided by the count.

Targets:
  tailpost  tailpost-mailbox (release build), an `imap` listener with
            allow_plaintext_auth, Postgres (private, durability defaults,
            shared_buffers 128MB as shipped), blobs in a local directory,
            the in-process memory store, pool_size as configured (default 16);
  dovecot   Dovecot imap (private instance, Debian package, defaults:
            high-security login processes, one imap process per client,
            fsync_mode optimized), Maildir, passwd-file users.
Both check the same SHA-512-crypt password hash (cheap, so login cost does
not dominate; LOGIN is timed but not in the rate).

Memory per idle connection: tailpost: VmRSS of its one process after the
connections minus before; Dovecot: the sum over all its processes (master,
auth, anvil, log, imap ...) of RSS and of PSS (shared pages counted once),
after minus before.  CPU seconds per 1000 commands are the servers'
processes (for tailpost also Postgres separately) and the load generator;
"other processes" is what the rest of the machine used meanwhile (busy CPU
from /proc/stat minus all of those), so a run disturbed by other work on a
shared machine shows as such.  --pg-stats N loads pg_stat_statements (with
planning time) and prints, after each tailpost run, the statement count and
time per IMAP command, the N most expensive statements, and the state of the
messages table (HOT updates, dead rows, expunged tombstones, size).

Prints one line per run, then a Markdown table and the ratios.  Bounded in
time; every process started here is stopped by PID.
"""
import argparse
import json
import os
import pathlib
import pwd
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import harness  # noqa: E402

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "bench-pw"
DOMAIN = "example.org"
TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(harness.child_pids(p))
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except OSError:
            pass
    return total / TICK


def mem_kb(pids):
    """(sum of VmRSS, sum of PSS) in KB over pids."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def sha512_crypt(pw):
    r = subprocess.run(["openssl", "passwd", "-6", "-salt", "imapbench", pw],
                       capture_output=True, text=True, timeout=30, check=True)
    return r.stdout.strip()


def user(i):
    return f"bench{i}@{DOMAIN}"


class Load:
    """The imap_load tool against one port."""

    def __init__(self, exe, port):
        self.exe, self.port = exe, port

    def argv(self, cmd, *args):
        return [str(self.exe), cmd, "--target", f"127.0.0.1:{self.port}", "--user-prefix",
                "bench", "--user-suffix", f"@{DOMAIN}", "--password", PASSWORD] + \
            [str(a) for a in args]

    def json(self, cmd, *args, timeout):
        r = subprocess.run(self.argv(cmd, *args), capture_output=True, text=True,
                           timeout=timeout)
        try:
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"imap_load {cmd} ({r.returncode}): {r.stdout}{r.stderr}")
        return out

    def idle_memory(self, count, users, pids_fn, settle=1.0):
        """Open count idle connections; (rss, pss) KB after minus before."""
        # warm-up: the server's pools, caches and first allocations; only a
        # few, so that the measured connections cannot just reuse memory
        # freed by the warm-up ones
        self._idle(min(5, count), users, lambda: None)
        time.sleep(settle)
        before = mem_kb(pids_fn())
        after = []
        self._idle(count, users, lambda: (time.sleep(settle), after.append(mem_kb(pids_fn()))))
        return after[0][0] - before[0], after[0][1] - before[1]

    def _idle(self, count, users, measure):
        p = subprocess.Popen(self.argv("idle", "--count", count, "--users", users),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            ready, _, _ = select.select([p.stdout], [], [], 300)
            line = p.stdout.readline() if ready else "(no answer within 300 s)"
            if line.strip() != f"ready {count}":
                raise RuntimeError(f"idle: {line!r} {p.stderr.read() if p.poll() is not None else ''}")
            measure()
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


# --- tailpost ---------------------------------------------------------------------


class Tailpost:
    name = "tailpost"

    def __init__(self, tmp, exe, pg, pool_size):
        self.tmp = pathlib.Path(tmp)
        self.exe, self.pg = exe, pg
        self.db = pg.create_database()
        self.port = harness.free_port()
        blobs = self.tmp / "blobs"
        blobs.mkdir()
        pool = f", pool_size: {pool_size}" if pool_size else ""
        self.cfg = self.tmp / "mailbox.yaml"
        self.cfg.write_text(
            "hostname: mail.bench\nlog_level: warn\n"
            f"smtp: {{ spool_dir: \"{self.tmp / 'spool'}\" }}\n"
            "listeners:\n  - name: imap\n    role: imap\n"
            f"    bind: [\"127.0.0.1:{self.port}\"]\n"
            "    allow_plaintext_auth: true\n    max_connections: 10000\n"
            f"stores:\n  data: {{ postgres: \"{self.db.url_nopw}\", password: \"${{PGPW}}\"{pool} }}\n"
            f"  blob: {{ fs: {{ path: \"{blobs}\" }} }}\n")
        self.env = harness._clean_env({"PGPW": self.db.password})
        self.log = self.tmp / "mailbox.log"
        self.proc = None

    def cli(self, *args, input=None):
        r = subprocess.run([str(self.exe)] + list(args) + ["-c", str(self.cfg)], input=input,
                           capture_output=True, text=True, env=self.env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{args}: {r.stdout}{r.stderr}")

    def setup(self, users, hash_):
        self.cli("migrate")
        self.cli("domain", "add", DOMAIN)
        for i in range(users):
            self.cli("account", "add", user(i), "--hash", input=hash_ + "\n")

    def start(self):
        self.proc = harness.spawn([self.exe, "serve", "-c", self.cfg], self.log, env=self.env,
                                  cwd=self.tmp)
        harness.wait_port("127.0.0.1", self.port, timeout=30, proc=self.proc)

    def pids(self):
        return [self.proc.pid]

    def store_pids(self):
        return descendants(self.pg.proc.pid)

    def stop(self):
        harness.stop(self.proc)
        self.pg.drop_database(self.db.name)


# --- Dovecot ------------------------------------------------------------------------


class Dovecot:
    name = "dovecot"

    def __init__(self, tmp):
        self.base = pathlib.Path(tmp)
        self.port = harness.free_port()
        self.proc = None

    def setup(self, users, hash_):
        nobody = pwd.getpwnam("nobody")
        for d in ("run", "state", "home"):
            (self.base / d).mkdir(mode=0o755)
        os.chown(self.base / "home", nobody.pw_uid, nobody.pw_gid)
        with open(self.base / "passwd", "w") as f:
            for i in range(users):
                f.write(f"{user(i)}:{{SHA512-CRYPT}}{hash_}::::::\n")
        self.conf = self.base / "dovecot.conf"
        self.conf.write_text(f"""\
base_dir = {self.base}/run
state_dir = {self.base}/state
instance_name = tailpost-imapbench-{self.port}
log_path = {self.base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_process_limit = 2000
default_client_limit = 4000
passdb {{
  driver = passwd-file
  args = username_format=%u {self.base}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={self.base}/home/%u
}}
mail_location = maildir:~/Maildir
protocol imap {{
  mail_max_userip_connections = 1000
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")

    def start(self):
        self.proc = harness.spawn([DOVECOT, "-F", "-c", self.conf], self.base / "dovecot.out",
                                  cwd=self.base)
        harness.wait_port("127.0.0.1", self.port, timeout=30, proc=self.proc)

    def pids(self):
        return descendants(self.proc.pid)

    def store_pids(self):
        return []

    def stop(self):
        harness.stop(self.proc)


# --- main ---------------------------------------------------------------------------


def busy_jiffies():
    """CPU time the whole machine spent busy so far, in seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK


def server_cpu(t):
    # Dovecot's imap processes exit at LOGOUT; the master reaps them, so
    # their CPU lands in its cutime/cstime (its direct children are all
    # its services).
    if t.name == "tailpost":
        return cpu_seconds(t.pids())
    return cpu_seconds([t.proc.pid] + harness.child_pids(t.proc.pid))


def measure_run(t, load, n, args, pg):
    """One timed run of n clients against t, with the CPU the server, its
    stores, the load generator and everything else on the machine used."""
    cpu0, scpu0 = server_cpu(t), cpu_seconds(t.store_pids())
    gen0 = os.times()
    busy0, wall0 = busy_jiffies(), time.monotonic()
    if args.pg_stats and t.name == "tailpost":
        pg.psql("SELECT pg_stat_statements_reset()", dbname=t.db.name)
    r = load.json("run", "--clients", n, "--seconds", args.seconds, timeout=args.seconds + 180)
    busy, wall = busy_jiffies() - busy0, time.monotonic() - wall0
    gen1 = os.times()
    cpu, scpu = server_cpu(t) - cpu0, cpu_seconds(t.store_pids()) - scpu0
    gen = (gen1.children_user - gen0.children_user) + (gen1.children_system -
                                                       gen0.children_system)
    k = 1000 / max(r["commands"], 1)
    r["cpu_per_1k"], r["store_cpu_per_1k"], r["gen_cpu_per_1k"] = cpu * k, scpu * k, gen * k
    # what the rest of this shared machine used meanwhile (other builds and
    # tests): a noisy run shows here
    r["other_cores"] = max(0.0, busy - cpu - scpu - gen) / wall
    if args.pg_stats and t.name == "tailpost":
        print_pg_stats(pg, t.db.name, r["commands"], args.pg_stats)
    return r


def print_pg_stats(pg, dbname, commands, top):
    """Statements tailpost ran during the last run (pg_stat_statements,
    top-level statements of its database only)."""
    out = pg.psql(
        "SELECT sum(calls), round(sum(total_exec_time)), round(sum(total_plan_time)) "
        "FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()",
        "SELECT calls, round(total_exec_time), round(mean_exec_time::numeric, 3), "
        "round(total_plan_time), "
        "regexp_replace(left(query, 110), '\\s+', ' ', 'g') FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
        f"ORDER BY total_exec_time + total_plan_time DESC LIMIT {int(top)}",
        "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_dead_tup, n_live_tup, "
        "  (SELECT count(*) FILTER (WHERE expunged) FROM messages), "
        "  coalesce(to_char(greatest(last_autovacuum, last_vacuum), 'HH24:MI:SS'), 'never'), "
        "  pg_size_pretty(pg_total_relation_size('messages')) "
        "FROM pg_stat_user_tables WHERE relname = 'messages'", dbname=dbname)
    lines = out.strip().splitlines()
    calls, ms, plan = (int(x or 0) for x in lines[0].split("|"))
    per = 1 / max(commands, 1)
    print(f"  postgres: {calls} statements ({calls * per:.2f} per IMAP command), "
          f"{ms} ms executing ({ms * per:.3f} ms per IMAP command), {plan} ms planning "
          f"({plan * per:.3f} ms per IMAP command)")
    for line in lines[1:-1]:
        c, total, mean, plan, q = line.split("|", 4)
        print(f"  {int(c):7d} calls {int(total):7d} ms {float(mean):7.3f} ms/call "
              f"{int(plan):5d} ms planning  {q}")
    ins, upd, hot, dead, live, tomb, vac, size = lines[-1].split("|")
    print(f"  messages table since start: {ins} inserted, {upd} updated ({hot} HOT); now "
          f"{live} live / {dead} dead row versions, {tomb} rows are expunged tombstones, "
          f"{size} with indexes and TOAST; last vacuum {vac}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="10,50")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--pool-size", type=int, default=0, help="tailpost data.pool_size (0: default)")
    ap.add_argument("--build", default=os.environ.get("IMAP_BENCH_BUILD", "build/bench-imap"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--only", choices=("tailpost", "dovecot"))
    ap.add_argument("--pg-stats", type=int, default=0, metavar="N",
                    help="load pg_stat_statements and print tailpost's top N statements per run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    if max(clients) > args.users:
        sys.exit("--users must be at least the largest --clients (one user per client)")
    if os.geteuid() != 0:
        sys.exit("run as root: the private Dovecot instance starts as root")
    build = ROOT / args.build
    if not args.no_build:
        subprocess.run(["make", f"BUILD={args.build}", "MODE=release", "-j2",
                        f"{args.build}/bin/tailpost-mailbox", f"{args.build}/tools/imap_load"],
                       cwd=ROOT, check=True)
    exe = build / "bin" / "tailpost-mailbox"
    tool = build / "tools" / "imap_load"
    hash_ = sha512_crypt(PASSWORD)
    tmp = tempfile.mkdtemp(prefix="tailpost-imap-bench-", dir=harness._tmp_base())
    os.chmod(tmp, 0o755)
    settings = {"shared_buffers": "128MB"}
    if args.pg_stats:
        settings["shared_preload_libraries"] = "pg_stat_statements"
        settings["pg_stat_statements.track_planning"] = "on"
    pg = harness.PostgresServer(settings=settings)
    targets = []
    results = {}
    fills = {}
    idle = {}
    try:
        pg.start()
        names = [args.only] if args.only else ["tailpost", "dovecot"]
        for name in names:
            d = pathlib.Path(tmp) / name
            d.mkdir(mode=0o755)
            t = Tailpost(d, exe, pg, args.pool_size) if name == "tailpost" else Dovecot(d)
            t.setup(args.users, hash_)
            if args.pg_stats and name == "tailpost":
                pg.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname=t.db.name)
            t.start()
            targets.append(t)
            load = Load(tool, t.port)
            f = load.json("fill", "--users", args.users, "--messages", args.messages,
                          timeout=1800)
            if f["errors"]:
                raise RuntimeError(f"{name}: fill failed: {f}")
            fills[name] = f
            print(f"fill {name:9s} {f['appended']} messages in {f['seconds']:.1f} s "
                  f"({f['rate']:.0f} APPEND/s, 4 clients)", flush=True)
        for rep in range(args.reps):
            for n in clients:
                for t in targets:
                    r = measure_run(t, Load(tool, t.port), n, args, pg)
                    results.setdefault((t.name, n), []).append(r)
                    flag = "" if not r["errors"] and not r["failed_clients"] else \
                        f"  ERRORS {r['errors']} failed {r['failed_clients']}: {r['first_error']}"
                    print(f"rep {rep} {t.name:9s} {n:3d} clients {r['rate']:8.0f} cmd/s  "
                          f"p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:7.2f} ms  "
                          f"cpu {r['cpu_per_1k']:.2f} s/1k cmds  stores "
                          f"{r['store_cpu_per_1k']:.2f}  load generator {r['gen_cpu_per_1k']:.2f}"
                          f"  other processes {r['other_cores']:.2f} cores{flag}", flush=True)
        for t in targets:
            load = Load(tool, t.port)
            rss, pss = load.idle_memory(args.idle, args.users, t.pids)
            idle[t.name] = {"rss_kb": rss / args.idle, "pss_kb": pss / args.idle}
            print(f"idle {t.name:9s} {args.idle} connections: {rss / args.idle:.1f} KB RSS, "
                  f"{pss / args.idle:.1f} KB PSS per connection", flush=True)
    finally:
        for t in targets:
            try:
                t.stop()
            except Exception as e:  # keep stopping the others
                print(f"stop {t.name}: {e}", file=sys.stderr)
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name, n, key):
        return statistics.median(r[key] for r in results[(name, n)])

    def errs(name, n):
        return sum(r["errors"] + r["failed_clients"] for r in results[(name, n)])

    print(f"\n{args.users} users x {args.messages} messages, {args.seconds} s per run, "
          f"{args.reps} rep(s), medians:")
    print("| clients | server | commands/s (range) | p50 ms | p99 ms | p99 ms by kind (fetch "
          "flags / envelope / body / 1:* flags / store / append / expunge / noop) | CPU s / "
          "1000 cmds | errors |")
    print("|---|---|---|---|---|---|---|---|")
    kinds = ("fetch_flags", "fetch_envelope", "fetch_body", "fetch_all_flags", "store", "append",
             "expunge", "noop")
    for n in clients:
        for name in [t.name for t in targets]:
            rs = results[(name, n)]
            by = " / ".join(f"{statistics.median(r['kinds'][k]['p99_us'] for r in rs) / 1000:.1f}"
                            for k in kinds)
            cpu = f"{med(name, n, 'cpu_per_1k'):.2f}"
            if name == "tailpost":
                cpu += f" (+ Postgres {med(name, n, 'store_cpu_per_1k'):.2f})"
            lo, hi = min(r["rate"] for r in rs), max(r["rate"] for r in rs)
            print(f"| {n} | {name} | {med(name, n, 'rate'):.0f} ({lo:.0f}-{hi:.0f}) "
                  f"| {med(name, n, 'p50_us') / 1000:.2f} "
                  f"| {med(name, n, 'p99_us') / 1000:.2f} | {by} | {cpu} | {errs(name, n)} |")
    for name, v in idle.items():
        print(f"idle {name}: {v['rss_kb']:.1f} KB RSS / {v['pss_kb']:.1f} KB PSS per connection "
              f"({args.idle} connections)")
    summary = {"results": {f"{k[0]}@{k[1]}": v for k, v in results.items()}, "idle": idle,
               "fill": fills}
    if len(targets) == 2:
        print()
        for n in clients:
            ratio = med("tailpost", n, "rate") / med("dovecot", n, "rate")
            summary[f"ratio@{n}"] = ratio
            ok = "met" if ratio >= 1.0 else "MISSED"
            print(f"ratio tailpost / dovecot at {n} clients: {ratio:.3f}x (target >= 1.0x: {ok})")
            # each repetition ran both servers back to back: their ratio
            # shows how much of the spread was the machine (information
            # only; the target is judged on the medians above)
            pairs = [a["rate"] / b["rate"] for a, b in
                     zip(results[("tailpost", n)], results[("dovecot", n)])]
            summary[f"pair_ratios@{n}"] = pairs
            print(f"  per repetition: {' '.join(f'{x:.2f}' for x in pairs)} "
                  f"(median {statistics.median(pairs):.2f})")
    if "tailpost" in idle:
        v = idle["tailpost"]["rss_kb"]
        print(f"tailpost RSS per idle connection: {v:.1f} KB (target <= 64 KB: "
              f"{'met' if v <= 64 else 'MISSED'})")
    if any(errs(k[0], k[1]) for k in results):
        print("WARNING: some runs had errors (see above); their figures are not valid")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
