"""Helpers for the tailpost-mailbox integration tests.

Mailbox   tailpost-mailbox with a private mailbox.yaml in a temp dir, on
          real stores (a fresh Postgres database from the postgres_db
          fixture, an fs blob dir or s3, the in-process or Redis memory
          store): write the config, run CLI subcommands, start `serve`,
          reload with SIGHUP, stop, and read its key=value log lines.
Certs     a throwaway CA and server certificates made with `openssl`.
Conn      a small line client (PROXY header first, if asked).

Everything binds 127.0.0.1 on free ports, every process is stopped by PID,
and every wait is bounded.
"""
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import time

import harness

TIMEOUT = 10.0
PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def parse_line(line):
    """A key=value log line as a dict (values may be double-quoted)."""
    out = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[m.group(1)] = v
    return out


def pp_v2(src, dst, local=False):
    """A PROXY v2 header (TCP over IPv4) from (ip, port) src to dst."""
    if local:
        return PP2_SIG + bytes([0x20, 0x00]) + (0).to_bytes(2, "big")
    body = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + src[1].to_bytes(2, "big") + \
        dst[1].to_bytes(2, "big")
    return PP2_SIG + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big") + body


def pp_v1(src, dst):
    return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


class Certs:
    """A CA and server certificates for 127.0.0.1/localhost, made with the
    openssl command line (what an operator would do)."""

    def __init__(self, d):
        self.dir = pathlib.Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = self.dir / "ca.key"
        self.ca = self.dir / "ca.pem"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                  "-subj", "/CN=tailpost test CA")

    def _run(self, *args):
        r = subprocess.run(["openssl"] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, f"openssl {args}: {r.stderr}"
        return r

    def issue(self, name, cn="localhost"):
        """Write name.pem (leaf + CA) and name.key; return (cert, key)."""
        key = self.dir / f"{name}.key"
        csr = self.dir / f"{name}.csr"
        leaf = self.dir / f"{name}.leaf.pem"
        cert = self.dir / f"{name}.pem"
        ext = self.dir / f"{name}.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        self._run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-CAcreateserial", "-out", leaf, "-days", "2", "-extfile", ext)
        cert.write_bytes(leaf.read_bytes() + self.ca.read_bytes())
        return cert, key

    def client_context(self):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def cert_cn(pem_bytes):
    """The subject CN of a PEM certificate, via openssl x509."""
    r = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem_bytes,
                       capture_output=True, timeout=30)
    m = re.search(rb"CN\s*=\s*([^,/\n]+)", r.stdout)
    return m.group(1).strip().decode() if m else None


class Conn:
    """A blocking line client with a timeout."""

    def __init__(self, port, host="127.0.0.1", header=b"", timeout=TIMEOUT, source=None):
        self.s = socket.create_connection((host, port), timeout=timeout,
                                          source_address=source)
        self.buf = b""
        if header:
            self.s.sendall(header)

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        """One reply line (without CRLF); '' on EOF."""
        while b"\n" not in self.buf:
            try:
                d = self.s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                d = b""
            if not d:
                out, self.buf = self.buf, b""
                return out.decode(errors="replace")
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode(errors="replace")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def closed(self, timeout=TIMEOUT):
        """True if the server closes (EOF or reset) within timeout without
        sending anything more; raises if it sends data."""
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(4096)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        if d:
            raise AssertionError(f"expected close, got {d!r}")
        return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Mailbox:
    """tailpost-mailbox in a temp dir with its own config and log."""

    def __init__(self, tmp, db, *, name="mailbox", redis=None, s3=None, s3_bucket=None,
                 env=None):
        self.dir = pathlib.Path(tmp) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.db = db
        self.redis = redis
        self.s3 = s3
        self.s3_bucket = s3_bucket
        self.blobs = self.dir / "blobs"
        self.blobs.mkdir(exist_ok=True)
        self.path = self.dir / "mailbox.yaml"
        self.log = self.dir / "mailbox.log"
        self.log.touch()
        self.proc = None
        self.extra_env = env or {}
        self.exe = harness.bin_path("tailpost-mailbox")
        assert self.exe.exists(), f"{self.exe} not built"

    # -- config
    def stores_yaml(self, memory=None, blob=None, data=None):
        data = data or (f'  data: {{ postgres: "{self.db.url_nopw}", '
                        f'password: "${{TAILPOST_DB_PASSWORD}}", connect_timeout: 2s }}\n')
        if blob is None:
            if self.s3 is not None:
                blob = (f'  blob: {{ s3: {{ endpoint: "{self.s3.endpoint}", region: {self.s3.region}, '
                        f'bucket: {self.s3_bucket}, access_key: "${{TAILPOST_S3_ACCESS_KEY}}", '
                        f'secret_key: "${{TAILPOST_S3_SECRET_KEY}}", timeout: 5s, retries: 1 }} }}\n')
            else:
                blob = f'  blob: {{ fs: {{ path: "{self.blobs}" }} }}\n'
        if memory is None:
            memory = (f'  memory: {{ redis: "{self.redis.url}", timeout: 2s }}\n'
                      if self.redis is not None else "")
        return "stores:\n" + data + blob + memory

    def write_config(self, listeners, extra="", stores=None):
        text = "hostname: mail.test\nlog_level: debug\nshutdown_grace: 5s\n" + extra + \
            "listeners:\n" + listeners + (stores if stores is not None else self.stores_yaml())
        self.path.write_text(text)
        return text

    # -- processes
    def env(self):
        e = harness._clean_env({"TAILPOST_DB_PASSWORD": self.db.password,
                                "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                                "TAILPOST_MAILBOX_CONFIG": str(self.path)})
        if self.s3 is not None:
            e["TAILPOST_S3_ACCESS_KEY"] = self.s3.access_key
            e["TAILPOST_S3_SECRET_KEY"] = self.s3.secret_key
        e.update(self.extra_env)
        return e

    def cli(self, *args, input=None, env=None, timeout=60):
        e = self.env()
        if env:
            e.update(env)
        return subprocess.run([str(self.exe)] + [str(a) for a in args] + ["-c", str(self.path)],
                              input=input, capture_output=True, text=True, env=e,
                              timeout=timeout)

    def migrate(self):
        r = self.cli("migrate")
        assert r.returncode == 0, f"migrate failed: {r.stdout}{r.stderr}"
        return r

    def start(self, wait=True, env=None):
        e = self.env()
        if env:
            e.update(env)
        self._mark = self.log.stat().st_size
        self.proc = harness.spawn([self.exe, "serve", "-c", self.path], self.log, env=e,
                                  cwd=self.dir)
        harness.watch_log(f"mailbox:{self.name}", self.log)
        if wait:
            self.wait_log(lambda d: d.get("msg") == "ready", what="ready")
        return self

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def reload(self, expect="reloaded"):
        n = len([d for d in self.lines() if d.get("msg", "").startswith(expect)])
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log(lambda d: d.get("msg", "").startswith(expect), count=n + 1,
                      what=f"'{expect}' after SIGHUP")

    def stop(self, timeout=20):
        if self.proc is not None and self.proc.poll() is None:
            harness.stop(self.proc, timeout=timeout)
        rc = self.proc.returncode if self.proc is not None else None
        harness.unwatch_log(f"mailbox:{self.name}")
        return rc

    # -- logs
    def text(self):
        return self.log.read_text(errors="replace")

    def lines(self):
        return [parse_line(l) for l in self.text().splitlines() if "msg=" in l]

    def wait_log(self, pred, count=1, timeout=TIMEOUT * 2, what="log line"):
        def ok():
            exited = self.proc is not None and self.proc.poll() is not None
            got = [d for d in self.lines() if pred(d)]
            if len(got) >= count:
                return got
            if exited:
                raise AssertionError(f"tailpost-mailbox exited ({self.proc.returncode}) while "
                                     f"waiting for {what}:\n{harness.log_tail(self.log, 40)}")
            return None
        return harness.wait_for(ok, timeout=timeout, what=what)

    def listener_line(self, msg, **kv):
        return [d for d in self.lines() if d.get("msg") == msg and
                all(d.get(k) == v for k, v in kv.items())]


def listener(name, role, port, extra="", host="127.0.0.1"):
    """One listeners: entry as YAML."""
    s = f"  - name: {name}\n    role: {role}\n    bind: [\"{host}:{port}\"]\n"
    for line in extra.strip("\n").splitlines():
        s += "    " + line + "\n"
    return s


def http(port, method, path, body=None, headers=None, header=b"", tls_ctx=None, timeout=TIMEOUT,
         source=None):
    """One HTTP/1.1 request on a fresh connection (PROXY header first if
    given); returns (status, headers dict lower-case, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=source)
    try:
        if header:
            s.sendall(header)
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost")
        h = {"Host": "mailbox", "Connection": "close"}
        if body is not None:
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        s.sendall(req.encode() + (body or b""))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, rest
