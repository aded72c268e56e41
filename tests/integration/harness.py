"""Shared helpers for the integration tests.

Everything runs on loopback, in temporary directories, on free ports; every
process a test starts is stopped by PID in teardown (never by name).

Besides the small helpers (bin_path, tool_path, free_port, wait_port, stop,
wait_for) this module runs the real stores the daemons talk to:

  PostgresServer  PostgreSQL 15 from /usr/lib/postgresql/15/bin, as an
                  unprivileged user when we are root (Postgres refuses root),
                  TCP on 127.0.0.1 with scram-sha-256, trust on its private
                  unix socket for admin work through psql.
  RedisServer     redis-server without persistence.
  S3Server        s3rver (var/node, installed by deploy/deps.sh).

They share one life cycle (Service): a temp dir, a log file, start on a free
port with a readiness wait, a retry on a new port when the port turns out to
be taken, an error carrying the log tail when the service fails to start,
and stop by PID.  Readiness is proven, not assumed: the service must answer
its own protocol AND the listening socket must belong to the process we
started (another program may have grabbed the port between free_port() and
bind(), and answered PING for us).

Processes are started in their own session (Ctrl-C in the terminal reaches
pytest, which tears down in order) with a parent-death signal, so even a
SIGKILLed pytest leaves nothing running.  Live services are listed in
LIVE_LOGS so conftest.py can print their log tails when a test fails;
daemon fixtures register their own logs there with watch_log().

The pytest fixtures built on these (postgres, postgres_db, redis,
redis_clean, s3, s3_bucket, s3_signed) live in conftest.py.  SigV4Proxy
puts signature checking in front of s3rver, which does not verify them.

Environment knobs: TAILPOST_BUILD (build dir), TAILPOST_TMP (where temp
dirs go), TAILPOST_KEEP_TMP=1 (keep them after close), TAILPOST_TEST_USER
(account for Postgres when root; default nobody), TAILPOST_PG_BIN,
TAILPOST_S3RVER (override binaries), TAILPOST_LOG_TAIL (lines per log in
failure reports).
"""
import atexit
import hashlib
import hmac
import http.client
import http.server
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("TAILPOST_BUILD", "build/asan")


def bin_path(name):
    """Path of a built program: tailpost-edge, tailpost-mailbox, tailpost-acl."""
    return BUILD / "bin" / name


def tool_path(name):
    """Path of a test tool built from tests/tools/NAME.c."""
    return BUILD / "tools" / name


_handed_out = set()


def free_port(family=socket.AF_INET):
    """A currently free TCP port on loopback, never one this process handed
    out before: the kernel may give the same just-closed port to two binds
    in a row, and a test that asks for several ports at once (one per
    listener) must get distinct ones."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no fresh loopback port after 100 tries")


def wait_port(host, port, timeout=10.0, proc=None):
    """Wait until host:port accepts a TCP connection; raise with context."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not accepting after {timeout}s: {last}")


def stop(proc, timeout=10.0, sig=signal.SIGTERM):
    """Stop a process we started, by PID: sig (SIGTERM), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------------------
# Logs and process plumbing


def log_tail(path, lines=60, max_bytes=64 * 1024, since=0):
    """The last `lines` lines of a log file, as text, from byte offset since
    on (0 if the file is now shorter), reading at most max_bytes."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if since > size:
                since = 0
            f.seek(max(since, size - max_bytes))
            data = f.read()
    except OSError as e:
        return f"(no log: {e})"
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def log_sizes():
    """Current size of every watched log, to show only what a test added."""
    out = {}
    for name, path in LIVE_LOGS.items():
        try:
            out[name] = path.stat().st_size
        except OSError:
            out[name] = 0
    return out


# name -> log path of every live service and registered daemon log.
LIVE_LOGS = {}


def watch_log(name, path):
    """List a log for the failure report (conftest prints its tail)."""
    LIVE_LOGS[name] = pathlib.Path(path)


def unwatch_log(name):
    LIVE_LOGS.pop(name, None)


_SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def _with_deathsig(argv, deathsig):
    """Prefix argv so the process gets deathsig when the thread that started
    it (pytest's main thread) dies.  setpriv (util-linux) sets the signal and
    execs, so the PID stays that of the server; it runs after Popen's uid
    switch, which would otherwise clear the setting (prctl(2))."""
    if not deathsig:
        return argv
    if not os.access(_SETPRIV, os.X_OK):
        raise RuntimeError("setpriv (util-linux) is needed to tie test servers to pytest")
    return [_SETPRIV, "--pdeathsig", signal.Signals(deathsig).name[3:], "--"] + argv


def _clean_env(extra=None):
    """Our environment without PG*/REDIS* settings that would redirect tools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "REDISCLI_"))}
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def spawn(argv, log_path, *, cwd=None, env=None, user=None, deathsig=signal.SIGKILL):
    """Start argv with stdin from /dev/null and stdout+stderr appended to
    log_path, in its own session, killed with deathsig if pytest dies.
    user: a pwd entry to run as (only when we are root)."""
    log = open(log_path, "ab")
    kw = {}
    if user is not None:
        kw = dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    try:
        return subprocess.Popen(
            _with_deathsig([str(a) for a in argv], deathsig),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env if env is not None else _clean_env(),
            start_new_session=True,
            **kw,
        )
    finally:
        log.close()


def listener_inodes(port, host="127.0.0.1"):
    """Socket inodes listening on host:port (IPv4 or IPv6), from
    /proc/net/tcp{,6}: addresses there are 32-bit words in host order."""
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host)
        path = "/proc/net/tcp6"
    else:
        raw = socket.inet_pton(socket.AF_INET, host)
        path = "/proc/net/tcp"
    words = "".join("%08X" % int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4))
    want = f"{words}:{port:04X}"
    inodes = set()
    try:
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == "0A":  # TCP_LISTEN
                    inodes.add(parts[9])
    except OSError:
        pass
    return inodes


def owns_listener(pid, port, host="127.0.0.1"):
    """Whether process pid holds the socket listening on host:port (a
    port answering is not proof: another program may have taken it)."""
    inodes = listener_inodes(port, host)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def _pid_gone(pid):
    """True once pid no longer exists or is a zombie (reaped or not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def child_pids(pid):
    """PIDs whose parent is pid (one level)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def _unprivileged_user():
    """The account to run servers as when we are root (they refuse root)."""
    name = os.environ.get("TAILPOST_TEST_USER", "nobody")
    return pwd.getpwnam(name)


def _reachable_by(path, uid):
    """Whether uid can traverse every directory above path."""
    for d in pathlib.Path(path).resolve().parents:
        st = d.stat()
        if st.st_uid == uid:
            if not st.st_mode & 0o100:
                return False
        elif not st.st_mode & 0o001:
            return False
    return True


def _tmp_base():
    return os.environ.get("TAILPOST_TMP") or tempfile.gettempdir()


def _keep_tmp():
    return os.environ.get("TAILPOST_KEEP_TMP", "") not in ("", "0")


class ServiceError(RuntimeError):
    """A service failed to start or answer; the message holds its log tail."""


class _PortBusy(Exception):
    pass


# Every started Service until stopped; the atexit net kills leftovers by PID.
_LIVE = {}


@atexit.register
def _stop_leftovers():
    for svc in list(_LIVE.values()):
        try:
            svc.stop(timeout=5)
        except Exception:  # best effort at interpreter exit
            pass


class Service:
    """One server process in its own temp dir, on a loopback port.

    Subclasses define name, _argv(port), _ready(port) and may override
    _prepare() (one-time setup before the first start), _after_first_start(),
    stop_signal, port_busy_markers and start_timeout.
    """

    name = "service"
    stop_signal = signal.SIGTERM
    deathsig = signal.SIGKILL
    port_busy_markers = ("Address already in use", "EADDRINUSE")
    start_timeout = 30.0
    start_attempts = 5
    run_as = None  # pwd entry, set by subclasses that refuse root

    _seq = 0

    def __init__(self, tmp=None, base=None):
        """tmp: an existing or new dir to use (kept on close); otherwise a
        fresh temp dir under base (default $TAILPOST_TMP or the system's)."""
        self.dir = pathlib.Path(tmp or tempfile.mkdtemp(prefix=f"tailpost-{self.name}-",
                                                        dir=base or _tmp_base()))
        self._own_dir = tmp is None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{self.name}.log"
        self.log_path.touch()
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
        self._prepared = False
        self._started_once = False
        Service._seq += 1
        self._log_name = f"{self.name}#{Service._seq}"

    # -- subclass hooks
    def _argv(self, port):
        raise NotImplementedError

    def _ready(self, port):
        raise NotImplementedError

    def _prepare(self):
        pass

    def _after_first_start(self):
        pass

    def _env(self):
        return _clean_env()

    def __repr__(self):
        state = f"pid {self.pid} port {self.port}" if self.running() else "stopped"
        return f"<{type(self).__name__} {state} {self.dir}>"

    # -- life cycle
    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=60):
        return log_tail(self.log_path, lines)

    def _fail(self, what):
        tail = self.log_tail()
        msg = f"{self.name} {what}; log {self.log_path}:\n{tail}"
        return ServiceError(msg)

    def start(self, port=None, timeout=None):
        """Start on port (or a free port, retrying on collisions); wait until
        ready.  Raises ServiceError with the log tail on failure."""
        if self.running():
            return self
        if not self._prepared:
            try:
                self._prepare()
            except ServiceError:
                raise
            except Exception as e:
                raise self._fail(f"setup failed: {e}") from e
            self._prepared = True
        timeout = self.start_timeout if timeout is None else timeout
        attempts = 1 if port else self.start_attempts
        for _ in range(attempts):
            p = port or free_port()
            mark = self.log_path.stat().st_size
            with open(self.log_path, "ab") as f:
                f.write(f"--- harness: starting {self.name} on port {p}\n".encode())
            self.proc = spawn(self._argv(p), self.log_path, cwd=self.dir, env=self._env(),
                              user=self.run_as, deathsig=self.deathsig)
            _LIVE[id(self)] = self
            watch_log(self._log_name, self.log_path)
            try:
                self._wait_ready(p, timeout, mark)
            except _PortBusy:
                self._kill_now()
                continue
            except ServiceError:
                self._kill_now()
                raise
            except BaseException:  # KeyboardInterrupt too: never leak it
                self._kill_now()
                raise
            self.port = p
            if not self._started_once:
                try:
                    self._after_first_start()
                except BaseException as e:
                    self._kill_now()
                    if isinstance(e, Exception):
                        raise self._fail(f"post-start setup failed: {e}") from e
                    raise
                self._started_once = True
            return self
        raise self._fail(f"could not get a free port in {attempts} attempts")

    def _wait_ready(self, port, timeout, mark):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                with open(self.log_path, "rb") as f:
                    f.seek(mark)
                    new = f.read().decode("utf-8", "replace")
                if any(m in new for m in self.port_busy_markers):
                    raise _PortBusy()
                raise self._fail(f"exited with status {self.proc.returncode} before becoming ready")
            try:
                if self._ready(port) and owns_listener(self.proc.pid, port, self.host):
                    return
            except Exception as e:  # not up yet; keep the reason for the timeout
                last = e
            if time.monotonic() >= deadline:
                if listener_inodes(port, self.host) and not owns_listener(self.proc.pid, port, self.host):
                    raise _PortBusy()
                raise self._fail(f"not ready on port {port} after {timeout}s (last: {last})")
            time.sleep(0.05)

    def _kill_now(self):
        # deathsig: the quickest stop that still takes children along
        # (SIGQUIT for a postmaster), then SIGKILL.
        if self.proc is not None:
            stop(self.proc, timeout=5, sig=self.deathsig)

    def stop(self, timeout=15.0):
        """Stop the process by PID (stop_signal, then SIGKILL); keep the dir."""
        if self.proc is not None:
            stop(self.proc, timeout=timeout, sig=self.stop_signal)
        _LIVE.pop(id(self), None)
        unwatch_log(self._log_name)

    def restart(self, timeout=None):
        """Stop and start again on the same port and data."""
        port = self.port
        self.stop()
        return self.start(port=port, timeout=timeout)

    def close(self):
        """Stop and remove the temp dir (kept with TAILPOST_KEEP_TMP=1)."""
        self.stop()
        if self._own_dir and not _keep_tmp():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# PostgreSQL


def _pg_bindir():
    env = os.environ.get("TAILPOST_PG_BIN")
    if env:
        return pathlib.Path(env)
    for v in ("15", "16", "17"):
        d = pathlib.Path(f"/usr/lib/postgresql/{v}/bin")
        if (d / "postgres").exists():
            return d
    raise ServiceError("no PostgreSQL server binaries (install postgresql-15: deploy/deps.sh)")


def conninfo_quote(value):
    """A libpq conninfo value, quoted when needed (libpq 34.1.1)."""
    value = str(value)
    if value and not any(c in value for c in " '\\\t\n"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_ident(name):
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


class PgDatabase:
    """Where a client connects: host, port, dbname, user, password.

    conninfo/url carry the password; conninfo_nopw/url_nopw leave it out for
    clients that read it from the environment (env() gives PGPASSWORD)."""

    def __init__(self, host, port, dbname, user, password):
        self.host, self.port, self.dbname = host, port, dbname
        self.name = dbname
        self.user, self.password = user, password

    def _kv(self, with_password):
        kv = [("host", self.host), ("port", self.port), ("dbname", self.dbname), ("user", self.user)]
        if with_password:
            kv.append(("password", self.password))
        return " ".join(f"{k}={conninfo_quote(v)}" for k, v in kv)

    @property
    def conninfo(self):
        return self._kv(True)

    @property
    def conninfo_nopw(self):
        return self._kv(False)

    def _url(self, with_password):
        # RFC 3986 userinfo and path: percent-encode everything but unreserved.
        q = lambda v: urllib.parse.quote(str(v), safe="")  # noqa: E731
        cred = q(self.user) + (":" + q(self.password) if with_password else "")
        return f"postgresql://{cred}@{self.host}:{self.port}/{q(self.dbname)}"

    @property
    def url(self):
        return self._url(True)

    @property
    def url_nopw(self):
        return self._url(False)

    def env(self):
        """Environment entries for a password-from-env client."""
        return {"PGPASSWORD": self.password}

    def __repr__(self):
        return f"<PgDatabase {self.url_nopw}>"


class PostgresServer(Service):
    """A private PostgreSQL cluster.

    initdb runs once (locale C.UTF-8, UTF8, superuser `postgres`); the server
    listens on 127.0.0.1 only plus a unix socket in the temp dir.  Host
    connections need scram-sha-256; the unix socket trusts, for psql().  After
    the first start a login role `user` with a random password owns database
    `dbname`.  Durability settings stay at their defaults (fsync, full page
    writes, synchronous commit) so crash tests mean something; only
    shared_buffers is made small.  initdb itself skips its final sync
    (--no-sync): that only matters for an OS crash during the test run.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: do not wait for clients
    deathsig = signal.SIGQUIT  # immediate shutdown if pytest dies
    start_timeout = 60.0

    def __init__(self, tmp=None, *, user="tailpost", dbname="tailpost", settings=None):
        run_as = _unprivileged_user() if os.geteuid() == 0 else None
        base = _tmp_base()
        # The server user must reach its dir, and a unix socket path is at
        # most 107 bytes: fall back to /tmp when the usual base is unfit.
        if len(base) > 60 or (run_as is not None and not _reachable_by(pathlib.Path(base) / "x",
                                                                       run_as.pw_uid)):
            base = "/tmp"
        super().__init__(tmp, base=base)
        self.run_as = run_as
        self.bindir = _pg_bindir()
        self.user, self.dbname = user, dbname
        self.password = secrets.token_urlsafe(18)
        self.admin_user = "postgres"
        self.admin_password = secrets.token_urlsafe(18)
        self.data_dir = self.dir / "data"
        self.settings = {"shared_buffers": "16MB", "max_connections": "100"}
        self.settings.update(settings or {})
        self._db_seq = 0
        # Unix socket paths are limited to 107 bytes.
        self.socket_dir = self.dir
        if len(str(self.socket_dir)) > 80:
            raise ServiceError(f"postgres: temp dir path too long for a unix socket: {self.dir}")

    def _prepare(self):
        uid = self.run_as.pw_uid if self.run_as else os.geteuid()
        if self.run_as is not None:
            if not _reachable_by(self.dir, uid):
                raise ServiceError(
                    f"postgres: {self.dir} is not reachable by user {self.run_as.pw_name}; "
                    "give a world-traversable directory")
            os.chown(self.dir, uid, self.run_as.pw_gid)
        os.chmod(self.dir, 0o755)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        os.chmod(pwfile, 0o600)
        if self.run_as is not None:
            os.chown(pwfile, uid, self.run_as.pw_gid)
        argv = [self.bindir / "initdb", "-D", self.data_dir, "-U", self.admin_user,
                f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"]
        with open(self.log_path, "ab") as f:
            f.write(b"--- harness: initdb\n")
        p = spawn(argv, self.log_path, cwd=self.dir, env=self._env(), user=self.run_as)
        try:
            rc = p.wait(timeout=120)
        except BaseException:
            stop(p, sig=signal.SIGKILL)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        if rc != 0:
            raise self._fail(f"initdb failed with status {rc}")

    def _argv(self, port):
        argv = [self.bindir / "postgres", "-D", self.data_dir,
                "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
                "-c", f"unix_socket_directories={self.socket_dir}",
                "-c", "log_line_prefix=%m [%p] %q%u@%d ",
                "-c", "lc_messages=C"]
        for k, v in self.settings.items():
            argv += ["-c", f"{k}={v}"]
        return argv

    def _ready(self, port):
        # Over our own unix socket: only our postmaster can have made it.
        argv = [self.bindir / "pg_isready", "-q", "-h", self.socket_dir, "-p", port,
                "-U", self.admin_user, "-d", "postgres", "-t", "2"]
        r = subprocess.run([str(a) for a in argv], env=self._env(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        return r.returncode == 0

    def _after_first_start(self):
        self.psql(f"CREATE ROLE {sql_ident(self.user)} LOGIN PASSWORD {sql_literal(self.password)}",
                  dbname="postgres")
        self.psql(f"CREATE DATABASE {sql_ident(self.dbname)} OWNER {sql_ident(self.user)}",
                  dbname="postgres")

    # -- connection details of the main database
    @property
    def db(self):
        return PgDatabase(self.host, self.port, self.dbname, self.user, self.password)

    @property
    def conninfo(self):
        return self.db.conninfo

    @property
    def conninfo_nopw(self):
        return self.db.conninfo_nopw

    @property
    def url(self):
        return self.db.url

    @property
    def url_nopw(self):
        return self.db.url_nopw

    def env(self):
        return self.db.env()

    # -- admin
    def psql(self, *statements, dbname=None, user=None, check=True, timeout=60):
        """Run statements (each its own -c, so CREATE DATABASE works) as the
        superuser over the unix socket; returns stdout (unaligned, tuples
        only, '|' between fields)."""
        argv = [self.bindir / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", self.socket_dir, "-p", str(self.port), "-U", user or self.admin_user,
                "-d", dbname or self.dbname]
        for s in statements:
            argv += ["-c", s]
        r = subprocess.run([str(a) for a in argv], env=self._env(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise ServiceError(f"psql failed ({r.returncode}): {r.stderr.strip()}\n"
                               f"statements: {statements}\npostgres log:\n{self.log_tail(20)}")
        return r.stdout

    def create_database(self, prefix="t", owner=None):
        """A fresh empty database owned by the login role; returns PgDatabase."""
        self._db_seq += 1
        name = f"{prefix}_{self._db_seq}_{secrets.token_hex(3)}"
        self.psql(f"CREATE DATABASE {sql_ident(name)} OWNER {sql_ident(owner or self.user)}",
                  dbname="postgres")
        return PgDatabase(self.host, self.port, name, owner or self.user, self.password)

    def drop_database(self, name):
        self.psql(f"DROP DATABASE IF EXISTS {sql_ident(name)} WITH (FORCE)", dbname="postgres")

    # -- crash simulation
    def crash(self, timeout=10.0):
        """SIGKILL the postmaster and its children, like a power cut for the
        processes (the page cache survives).  start()/restart() recovers."""
        if not self.running():
            return
        pid = self.proc.pid
        # Freeze the postmaster first so it forks no child we would miss.
        os.kill(pid, signal.SIGSTOP)
        kids = child_pids(pid)
        self.proc.kill()
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=timeout)
        wait_for(lambda: all(_pid_gone(k) for k in kids), timeout=timeout,
                 what="postgres children to exit")
        _LIVE.pop(id(self), None)


# ---------------------------------------------------------------------------
# Redis


class RedisError(Exception):
    pass


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis: connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        if len(data) != n + 2:
            raise ConnectionError("redis: short bulk reply")
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RedisError(f"unexpected reply {line!r}")


def redis_command(host, port, *args, timeout=5.0):
    """One command over RESP (redis protocol spec); returns the decoded
    reply (str for status, bytes for bulk, int, list, None) or raises
    RedisError on an error reply."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"".join(out))
        with s.makefile("rb") as f:
            return _resp_read(f)


class RedisServer(Service):
    """redis-server without persistence (--save '' --appendonly no)."""

    name = "redis"
    start_timeout = 20.0

    def _argv(self, port):
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no", "--logfile", ""]

    def _ready(self, port):
        return redis_command(self.host, port, "PING", timeout=1.0) == "PONG"

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"

    def command(self, *args, timeout=5.0):
        return redis_command(self.host, self.port, *args, timeout=timeout)

    def flushall(self):
        return self.command("FLUSHALL")


# ---------------------------------------------------------------------------
# S3 (s3rver)


def _s3rver_path():
    p = os.environ.get("TAILPOST_S3RVER")
    return pathlib.Path(p) if p else ROOT / "var" / "node" / "node_modules" / ".bin" / "s3rver"


class S3Server(Service):
    """s3rver on 127.0.0.1: path-style S3 API with credentials S3RVER/S3RVER.

    s3rver checks that a SigV4 request names a known access key and carries
    x-amz-content-sha256, but does not check the signature itself; put
    SigV4Proxy in front of it to have signatures verified."""

    name = "s3"
    start_timeout = 30.0
    access_key = "S3RVER"
    secret_key = "S3RVER"
    region = "us-east-1"

    def _prepare(self):
        exe = _s3rver_path()
        if not os.access(exe, os.X_OK):
            raise ServiceError(f"s3: {exe} missing: run deploy/deps.sh --test")
        (self.dir / "data").mkdir(exist_ok=True)

    def _argv(self, port):
        return [_s3rver_path(), "--directory", self.dir / "data", "--address", self.host,
                "--port", str(port), "--silent"]

    def _ready(self, port):
        c = http.client.HTTPConnection(self.host, port, timeout=1.0)
        try:
            c.request("GET", "/")
            return c.getresponse().status < 500
        finally:
            c.close()

    @property
    def endpoint(self):
        return f"http://{self.host}:{self.port}"

    def new_bucket_name(self, prefix="t"):
        return f"{prefix}-{secrets.token_hex(6)}"

    def create_bucket(self, name=None):
        """Create a bucket with a signed request (our own SigV4); returns its name."""
        name = name or self.new_bucket_name()
        status, body, _ = s3_request(self.endpoint, self.region, self.access_key, self.secret_key,
                                     "PUT", f"/{name}")
        if status != 200:
            raise ServiceError(f"s3: create bucket {name}: HTTP {status}: {body[:500]!r}")
        return name


# ---------------------------------------------------------------------------
# SigV4 (AWS Signature Version 4, "Authenticating Requests" in the S3 API
# reference): a small independent implementation, used to sign the
# harness's own requests and to verify clients' signatures in SigV4Proxy.


def _sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(s, keep_slash):
    # Unreserved characters stay; everything else is %XX upper case.
    return urllib.parse.quote(s, safe="-_.~" + ("/" if keep_slash else ""))


def sigv4_canonical_request(method, path, query, headers, signed, payload_hash):
    """headers: dict lower-case name -> value; signed: sorted header names.
    S3 does not normalize or double-encode the path: it is encoded once."""
    cpath = _uri_encode(urllib.parse.unquote(path), keep_slash=True) or "/"
    pairs = []
    for item in query.split("&") if query else []:
        k, _, v = item.partition("=")
        # unquote, not unquote_plus: '+' is not a space here.
        pairs.append((_uri_encode(urllib.parse.unquote(k), False),
                      _uri_encode(urllib.parse.unquote(v), False)))
    pairs.sort()
    cquery = "&".join(f"{k}={v}" for k, v in pairs)
    cheaders = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed)
    return "\n".join([method, cpath, cquery, cheaders, ";".join(signed), payload_hash])


def sigv4_signature(secret, date, region, service, amz_date, canonical_request):
    scope = f"{date}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256_hex(canonical_request.encode())])
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    k = _hmac(k, "aws4_request")
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


def s3_request(endpoint, region, access, secret, method, path, body=b"", headers=None, timeout=30):
    """A SigV4-signed path-style request; returns (status, body, headers)."""
    u = urllib.parse.urlsplit(endpoint)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    ph = _sha256_hex(body)
    hdrs = {"host": u.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": ph}
    for k, v in (headers or {}).items():
        hdrs[k.lower()] = v
    p, _, q = path.partition("?")
    signed = sorted(hdrs)
    creq = sigv4_canonical_request(method, p, q, hdrs, signed, ph)
    sig = sigv4_signature(secret, amz_date[:8], region, "s3", amz_date, creq)
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, "
                             f"SignedHeaders={';'.join(signed)}, Signature={sig}")
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=hdrs)
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        c.close()


def sigv4_verify(method, raw_path, headers, body, secret, region, service="s3", access_key=None):
    """Check a request's Authorization header; returns None if valid, else
    the reason.  headers: dict lower-case name -> value."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 Authorization header"
    try:
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        cred = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        given = parts["Signature"]
    except (KeyError, ValueError):
        return f"malformed Authorization: {auth!r}"
    if access_key is not None and cred and cred[0] != access_key:
        return f"unknown access key {cred[0]!r}"
    if len(cred) != 5 or cred[2] != region or cred[3] != service or cred[4] != "aws4_request":
        return f"bad credential scope {parts['Credential']!r}"
    amz_date = headers.get("x-amz-date", "")
    if amz_date[:8] != cred[1]:
        return f"x-amz-date {amz_date!r} does not match scope date {cred[1]!r}"
    if "host" not in signed:
        return "host header not signed"
    if signed != sorted(signed) or any(h not in headers for h in signed):
        return f"SignedHeaders {signed} not sorted or not all present"
    ph = headers.get("x-amz-content-sha256")
    if ph is None:
        return "missing x-amz-content-sha256"
    if ph != "UNSIGNED-PAYLOAD" and ph != _sha256_hex(body):
        return "x-amz-content-sha256 does not match the body"
    p, _, q = raw_path.partition("?")
    creq = sigv4_canonical_request(method, p, q, headers, signed, ph)
    want = sigv4_signature(secret, cred[1], region, service, amz_date, creq)
    if not hmac.compare_digest(want, given):
        return f"signature mismatch; canonical request was:\n{creq}"
    return None


class SigV4Proxy:
    """An HTTP proxy in front of an S3 server that rejects any request whose
    SigV4 signature does not verify (403 SignatureDoesNotMatch), since
    s3rver does not check signatures.  Runs in a thread of the test process;
    rejections are kept in .rejected for assertions."""

    def __init__(self, upstream, access_key, secret_key, region):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.lock = threading.Lock()
        self.rejected = []  # (method, path, reason)
        self.accepted = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    self.send_error(501, "SigV4Proxy: chunked request bodies not supported")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                why = sigv4_verify(self.command, self.path, hdrs, body, proxy.secret_key,
                                   proxy.region, access_key=proxy.access_key)
                with proxy.lock:
                    if why is None:
                        proxy.accepted += 1
                    else:
                        proxy.rejected.append((self.command, self.path, why))
                if why is not None:
                    msg = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch"
                           b"</Code><Message>" + why.split("\n")[0].encode() + b"</Message></Error>")
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(msg)
                    return
                c = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                try:
                    fwd = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "expect", "transfer-encoding")}
                    c.request(self.command, self.path, body=body, headers=fwd)
                    r = c.getresponse()
                    data = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length",
                                             "keep-alive", "date", "server"):
                            self.send_header(k, v)
                    clen = r.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", clen if clen is not None else str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    c.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="sigv4-proxy", daemon=True)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
