#!/usr/bin/env python3
"""Benchmark tailpost-edge against a direct connection and HAProxy.

One command, one interleaved run on loopback:

  tests/bench/edge/run.sh [--reps 7] [--threads 1] [--seconds 2] ...

Three targets serve the same backend (edgebench server, a server that
speaks first):
  direct   the client talks to the backend itself (no proxy)
  edge     tailpost-edge, release build, PROXY v2, N workers
  haproxy  Debian's HAProxy, tcp mode, send-proxy-v2, nbthread N, its
           default buffers (no splice options)
Both proxies run without per-connection logging and without health
checks, so they do the same work; a separate row measures the edge with
its connection log on.

Measured, each repetition cycling through the targets in turn (so a noisy
neighbour hits all of them alike), and reported as medians:
  - short connections: connect, read the "220 ..." banner, close, with C
    connections in flight for S seconds: conn/s, p50 and p99 latency, and
    the proxy's CPU time per connection (utime+stime from /proc);
  - bulk: one connection moving B MB upstream->client and client->upstream,
    with the proxy's CPU seconds per GB moved;
  - memory: a fresh proxy's RSS (base), then RSS with K idle connections
    held open through it; (RSS - base) / K per idle connection.

The CPU figures (utime+stime of the proxy process over the run) say how
much work each proxy does per connection or per byte; on a small shared
machine they are much steadier than the wall-clock rates, which also depend
on what else the CPUs are doing.

Everything is bounded: fixed durations, fixed counts, timeouts on every
child process, and every process we start is stopped by PID at the end.
"""
import argparse
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

TARGETS_MEM = {"base_rss_mb": 5.0, "per_conn_kb": 2.0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not open after {timeout}s")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def proc_cpu_s(pid):
    """utime + stime of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Proc:
    def __init__(self, argv, log, cwd=None):
        self.log = open(log, "ab")
        self.p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        self.log.close()


class Bench:
    def __init__(self, args):
        self.a = args
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="tailpost-edge-bench-"))
        self.build = ROOT / args.build
        self.edge_bin = self.build / "bin" / "tailpost-edge"
        self.tool = self.build / "edgebench"
        self.procs = []
        self.p = {k: free_port() for k in ("banner", "down", "up")}

    # --- setup -----------------------------------------------------------
    def build_all(self):
        if not self.a.no_build:
            subprocess.run(["make", "-s", "MODE=release", f"BUILD={self.a.build}",
                            f"{self.a.build}/bin/tailpost-edge"], cwd=ROOT, check=True, timeout=900)
        self.build.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-g", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                        "-pthread", "-o", str(self.tool), str(HERE / "edgebench.c")],
                       check=True, timeout=300)
        if not self.edge_bin.exists():
            sys.exit(f"{self.edge_bin} missing")
        if not os.access(HAPROXY, os.X_OK):
            sys.exit(f"haproxy not found at {HAPROXY} (Debian package haproxy)")

    def start(self, argv, name, port=None):
        pr = Proc(argv, self.tmp / f"{name}.log", cwd=self.tmp)
        self.procs.append(pr)
        if port:
            wait_port(port, pr.p)
        return pr

    def start_backend(self):
        self.backend = self.start([self.tool, "server", "--banner", self.p["banner"], "--down",
                                   self.p["down"], "--up", self.p["up"], "--down-bytes",
                                   self.a.bulk_mb * 1000000], "backend", self.p["banner"])

    def edge_config(self, ports, log_connections=False):
        listeners = []
        for kind, port in ports.items():
            listeners.append({"name": kind, "bind": [f"127.0.0.1:{port}"],
                              "upstreams": [f"127.0.0.1:{self.p[kind]}"], "proxy_protocol": "v2",
                              "max_connections": 100000, "idle_timeout": "10m",
                              "health_check": {"enabled": False}})
        return json.dumps({"workers": self.a.threads, "log_connections": log_connections,
                           "log_level": "warn" if not log_connections else "info",
                           "listeners": listeners}, indent=1)

    def start_edge(self, log_connections=False, name="edge"):
        ports = {k: free_port() for k in ("banner", "down", "up")}
        cfg = self.tmp / f"{name}.yaml"
        cfg.write_text(self.edge_config(ports, log_connections))
        pr = self.start([self.edge_bin, "-c", cfg], name)
        for port in ports.values():
            wait_port(port, pr.p)
        return pr, ports

    def start_haproxy(self, name="haproxy"):
        ports = {k: free_port() for k in ("banner", "down", "up")}
        cfg = self.tmp / f"{name}.cfg"
        lines = ["global", f"    nbthread {self.a.threads}", "    maxconn 9000",
                 "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 10m",
                 "    timeout server 10m"]
        for kind, port in ports.items():
            lines += [f"frontend fe_{kind}", f"    bind 127.0.0.1:{port}", f"    default_backend be_{kind}",
                      f"backend be_{kind}", f"    server s 127.0.0.1:{self.p[kind]} send-proxy-v2"]
        cfg.write_text("\n".join(lines) + "\n")
        pr = self.start([HAPROXY, "-f", cfg, "-db"], name)
        for port in ports.values():
            wait_port(port, pr.p)
        return pr, ports

    # --- measurements ------------------------------------------------------
    def tool_json(self, argv, timeout):
        r = subprocess.run([str(self.tool)] + [str(a) for a in argv], capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"edgebench {argv[0]} failed: {r.stderr}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def rate(self, port, pid=None, seconds=None):
        seconds = seconds or self.a.seconds
        cpu0 = proc_cpu_s(pid) if pid else 0
        r = self.tool_json(["rate", "--target", f"127.0.0.1:{port}", "--seconds", seconds,
                            "--concurrency", self.a.concurrency, "--threads", self.a.client_threads],
                           timeout=seconds + 30)
        if pid:
            r["cpu_us_per_conn"] = (proc_cpu_s(pid) - cpu0) * 1e6 / max(r["conns"], 1)
        return r

    def bulk(self, direction, port, pid=None):
        cmd = ["bulk-down" if direction == "down" else "bulk-up", "--target", f"127.0.0.1:{port}",
               "--bytes", self.a.bulk_mb * 1000000]
        cpu0 = proc_cpu_s(pid) if pid else 0
        r = self.tool_json(cmd, timeout=120)
        if pid:
            r["cpu_s_per_gb"] = (proc_cpu_s(pid) - cpu0) / (r["bytes"] / 1e9)
        return r

    def idle_rss(self, starter):
        proc, ports = starter()
        time.sleep(0.5)
        base = proc_rss_kb(proc.pid)
        idle = subprocess.Popen([str(self.tool), "idle", "--target", f"127.0.0.1:{ports['banner']}",
                                 "--count", str(self.a.idle)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            line = idle.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"idle client: {line!r}")
            time.sleep(1.0)
            held = proc_rss_kb(proc.pid)
        finally:
            idle.stdin.close()
            idle.wait(timeout=60)
        proc.stop()
        self.procs.remove(proc)
        return base, held

    def run(self):
        a = self.a
        self.build_all()
        raise_nofile()
        self.start_backend()
        edge, eports = self.start_edge()
        ha, hports = self.start_haproxy()
        edgelog, lports = self.start_edge(log_connections=True, name="edge_log")
        targets = {"direct": (self.p, None), "edge": (eports, edge.pid), "haproxy": (hports, ha.pid),
                   "edge_log": (lports, edgelog.pid)}
        order = ["direct", "edge", "haproxy", "edge_log"]
        res = {t: {"rate": [], "p50": [], "p99": [], "cpu": [], "down": [], "up": [],
                   "cpu_down": [], "cpu_up": [], "errors": 0} for t in order}
        # warm up every path once
        for t in order:
            self.rate(targets[t][0]["banner"], seconds=1)
        t_start = time.monotonic()
        for rep in range(a.reps):
            rot = order[rep % len(order):] + order[:rep % len(order)]
            for t in rot:
                ports, pid = targets[t]
                r = self.rate(ports["banner"], pid)
                res[t]["rate"].append(r["rate"])
                res[t]["p50"].append(r["p50_us"])
                res[t]["p99"].append(r["p99_us"])
                res[t]["errors"] += r["errors"]
                if pid:
                    res[t]["cpu"].append(r["cpu_us_per_conn"])
                print(f"  rate rep {rep + 1} {t:9s} {r['rate']:9.0f} conn/s p50 {r['p50_us']} us "
                      f"p99 {r['p99_us']} us errors {r['errors']}", file=sys.stderr)
            for t in rot:
                if t == "edge_log":
                    continue
                ports, pid = targets[t]
                for d in ("down", "up"):
                    r = self.bulk(d, ports[d], pid)
                    res[t][d].append(r["mbps"])
                    if pid:
                        res[t]["cpu_" + d].append(r["cpu_s_per_gb"])
                    print(f"  bulk rep {rep + 1} {t:9s} {d:4s} {r['mbps']:9.0f} MB/s", file=sys.stderr)
        edge.stop()
        ha.stop()
        edgelog.stop()
        for p in (edge, ha, edgelog):
            self.procs.remove(p)
        mem = {"edge": [], "haproxy": []}
        for rep in range(a.reps):
            for t in (("edge", "haproxy") if rep % 2 == 0 else ("haproxy", "edge")):
                base, held = self.idle_rss(self.start_edge if t == "edge" else self.start_haproxy)
                mem[t].append((base, held))
                print(f"  idle rep {rep + 1} {t:9s} base {base} kB, with {a.idle} idle {held} kB",
                      file=sys.stderr)
        self.report(res, mem, time.monotonic() - t_start)

    # --- output ------------------------------------------------------------
    def report(self, res, mem, elapsed):
        a = self.a
        med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
        rows = []

        def ratio(x, y):
            return x / y if y else float("nan")

        e, h, d, el = res["edge"], res["haproxy"], res["direct"], res["edge_log"]
        rate_ratio = ratio(med(e["rate"]), med(h["rate"]))
        rows.append(("short conn/s (banner)", f"{med(d['rate']):.0f}", f"{med(e['rate']):.0f}",
                     f"{med(h['rate']):.0f}", f"{rate_ratio:.2f}x", ">= 1.15x",
                     rate_ratio >= 1.15))
        rows.append(("  p50 latency (us)", f"{med(d['p50']):.0f}", f"{med(e['p50']):.0f}",
                     f"{med(h['p50']):.0f}", f"{ratio(med(e['p50']), med(h['p50'])):.2f}x", "", None))
        rows.append(("  p99 latency (us)", f"{med(d['p99']):.0f}", f"{med(e['p99']):.0f}",
                     f"{med(h['p99']):.0f}", f"{ratio(med(e['p99']), med(h['p99'])):.2f}x", "", None))
        rows.append(("  proxy CPU per conn (us)", "-", f"{med(e['cpu']):.1f}", f"{med(h['cpu']):.1f}",
                     f"{ratio(med(e['cpu']), med(h['cpu'])):.2f}x", "", None))
        rows.append(("  conns per proxy CPU-second", "-", f"{1e6 / med(e['cpu']):.0f}",
                     f"{1e6 / med(h['cpu']):.0f}", f"{ratio(med(h['cpu']), med(e['cpu'])):.2f}x", "", None))
        rows.append(("  edge with conn log: conn/s", "-", f"{med(el['rate']):.0f}", "-",
                     f"{ratio(med(el['rate']), med(h['rate'])):.2f}x", "", None))
        for dname, label in (("down", "bulk upstream->client (MB/s)"), ("up", "bulk client->upstream (MB/s)")):
            r = ratio(med(e[dname]), med(h[dname]))
            rows.append((label, f"{med(d[dname]):.0f}", f"{med(e[dname]):.0f}", f"{med(h[dname]):.0f}",
                         f"{r:.2f}x", ">= 1.5x", r >= 1.5))
            c = "cpu_" + dname
            rows.append(("  proxy CPU seconds per GB", "-", f"{med(e[c]):.2f}", f"{med(h[c]):.2f}",
                         f"{ratio(med(e[c]), med(h[c])):.2f}x", "", None))
        eb = med([b for b, _ in mem["edge"]]) / 1024
        hb = med([b for b, _ in mem["haproxy"]]) / 1024
        ep = med([(x - b) / a.idle for b, x in mem["edge"]])
        hp = med([(x - b) / a.idle for b, x in mem["haproxy"]])
        rows.append(("base RSS (MB)", "-", f"{eb:.2f}", f"{hb:.2f}", f"{ratio(eb, hb):.2f}x", "<= 5 MB",
                     eb <= TARGETS_MEM["base_rss_mb"]))
        rows.append((f"RSS per idle conn (KB, {a.idle} held)", "-", f"{ep:.2f}", f"{hp:.2f}",
                     f"{ratio(ep, hp):.2f}x", "<= 2 KB", ep <= TARGETS_MEM["per_conn_kb"]))
        head = ("metric", "direct", "edge", "haproxy", "edge/haproxy", "target", "met")
        table = [head] + [r[:6] + ("-" if r[6] is None else ("yes" if r[6] else "NO"),) for r in rows]
        widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]
        out = []
        out.append(f"tailpost-edge benchmark: {a.reps} reps (medians), {a.threads} proxy thread(s), "
                   f"{a.concurrency} conns in flight x {a.seconds}s, bulk {a.bulk_mb} MB, "
                   f"{a.idle} idle conns; {os.cpu_count()} CPUs; {elapsed:.0f}s")
        out.append("| " + " | ".join(str(h_).ljust(w) for h_, w in zip(head, widths)) + " |")
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in table[1:]:
            out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
        errs = {t: res[t]["errors"] for t in res}
        out.append(f"client errors: {errs}")
        print("\n".join(out))
        if a.json:
            pathlib.Path(a.json).write_text(json.dumps({"args": vars(a), "results": res, "mem": mem},
                                                       indent=1))

    def close(self):
        for p in self.procs:
            p.stop()
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="edge workers = haproxy nbthread")
    ap.add_argument("--client-threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bulk-mb", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--build", default=os.environ.get("EDGE_BENCH_BUILD", "build/bench-edge"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", help="also write raw results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with logs")
    a = ap.parse_args()
    if a.reps < 1 or a.reps > 50 or a.seconds > 60 or a.idle > 8000:
        sys.exit("bounds: reps 1..50, seconds <= 60, idle <= 8000 (fd limits)")
    b = Bench(a)
    try:
        b.run()
    finally:
        b.close()


if __name__ == "__main__":
    main()
