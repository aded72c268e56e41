"""The operator-facing deploy files: systemd units, compose files, the
Dockerfile, the daemon configs under deploy/compose/config and .env.example.

systemd  `systemd-analyze verify` on both units (ExecStart pointed at the
         built binaries in a temp copy) must print nothing; the same check
         on copies with a typo'd directive and a bad value must complain (so
         the check can fail); the hardening the units promise is there, and
         `systemd-analyze security --offline` rates each at most 2.5.  Both
         daemons really speak the notify protocol the units rely on
         (Type=notify, ExecReload=kill -HUP): READY=1, RELOADING=1 + READY=1
         on SIGHUP, STOPPING=1 on SIGTERM, on a real NOTIFY_SOCKET.
compose  Both files parse as YAML and have the promised shape (Tailscale
         sidecar, the mailbox in its network namespace, no published ports
         on the mailbox host, the edge on the host network, optional stores
         behind profiles); every writable mount is a named volume declared
         at top level, there is no anonymous volume, every bind is read-only
         configuration; every ${VAR} the compose files and the daemon
         configs use is documented in .env.example and passed to the service
         whose config reads it; `docker compose config` accepts both files
         (skipped, saying so, when the compose plugin is absent).
configs  The daemon configs load with the values of .env.example
         (`tailpost-edge --check`, `tailpost-mailbox check`) and carry them
         into the effective configuration.
image    The Dockerfile has a Debian 12 build stage running make MODE=release
         and a debian:12-slim runtime stage with a non-root user, whose
         package list provides every shared library the binaries need
         (DT_NEEDED, mapped to Debian packages with dpkg) and nothing else.
.env     Every assignment has a comment; secrets are empty; the variables
         tailpost-acl gen reads (acl/gen.c) are all there and gen accepts
         the file.
"""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import harness

try:
    import yaml
except ImportError:  # a missing package is a failure, not a reason to skip
    pytest.fail("python3-yaml is needed: apt-get install python3-yaml", pytrace=False)

ROOT = harness.ROOT
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
COMPOSE = DEPLOY / "compose"
ENV_EXAMPLE = ROOT / ".env.example"
UNITS = {"tailpost-edge.service": "tailpost-edge", "tailpost-mailbox.service": "tailpost-mailbox"}
COMPOSE_FILES = ["compose.mailbox.yaml", "compose.edge.yaml"]
SECRET_RE = re.compile(r"(PASSWORD|SECRET|AUTHKEY|ACCESS_KEY|RECOVERY_ADMIN)")


# ---------------------------------------------------------------------------
# helpers


def parse_unit(path):
    """[(section, key, value)] of a unit file (keys may repeat)."""
    out, section = [], None
    for line in pathlib.Path(path).read_text().splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def unit_values(entries, key, section="Service"):
    return [v for sec, k, v in entries if sec == section and k == key]


def parse_env_file(path):
    """{KEY: value} and the raw lines of a KEY=VALUE file."""
    lines = pathlib.Path(path).read_text().splitlines()
    env = {}
    for line in lines:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            v = m.group(2)
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            env[m.group(1)] = v
    return env, lines


def env_for_daemons(tmp):
    """.env.example's values, secrets filled with dummies, TLS paths to a
    fresh self-signed pair: what an operator's filled-in .env gives."""
    env, _ = parse_env_file(ENV_EXAMPLE)
    for k, v in env.items():
        if v == "":
            env[k] = f"dummy-{k.lower()}"
    cert, key = tmp / "fullchain.pem", tmp / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={env['TAILPOST_MAIL_HOSTNAME']}", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    env["TAILPOST_TLS_CERT"], env["TAILPOST_TLS_KEY"] = str(cert), str(key)
    return env


VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)|(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


def strip_comments(text):
    """Text without # comments (whole lines and trailing ' # ...')."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith(("#", ";")):
            continue
        out.append(re.sub(r"\s+#.*$", "", line))
    return "\n".join(out)


def variables_in(text):
    """Names referenced as ${NAME...} or $NAME outside comments ($$ escapes
    excluded)."""
    return {a or b for a, b in VAR_RE.findall(strip_comments(text))}


INTERP_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}"
                       r"|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text, env):
    """Compose's variable substitution: $$, ${V}, ${V:-d}, ${V-d}, ${V:?e},
    ${V?e}, $V.  A failing :? / ? raises, as `docker compose` would stop."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(5)
        val = env.get(name)
        colon, op, arg = m.group(2), m.group(3), m.group(4)
        missing = val is None or (colon and val == "")
        if op == "-" and missing:
            return arg
        if op == "?" and missing:
            raise ValueError(f"required variable {name}: {arg}")
        return val or ""
    return INTERP_RE.sub(sub, text)


def operator_env():
    """.env.example as a filled-in .env: secrets get dummy values."""
    env, _ = parse_env_file(ENV_EXAMPLE)
    return {k: (v if v != "" or not SECRET_RE.search(k) else f"dummy-{k.lower()}")
            for k, v in env.items()}


def load_compose(name, env):
    return yaml.safe_load(interpolate((COMPOSE / name).read_text(), env))


def mounts(service):
    """(source or None, target, read_only) of every volume entry."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out.append((v.get("source"), v.get("target"), bool(v.get("read_only"))))
            continue
        parts = v.split(":")
        if len(parts) == 1:
            out.append((None, parts[0], False))
        else:
            mode = parts[2] if len(parts) > 2 else ""
            out.append((parts[0], parts[1], "ro" in mode.split(",")))
    return out


def is_bind(source):
    return source.startswith(("/", "./", "../", "~", "${", "$"))


# ---------------------------------------------------------------------------
# systemd


def verify_unit(tmp, text, name):
    """systemd-analyze verify on text saved as tmp/name; returns its output."""
    p = tmp / name
    p.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(p)],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, (r.stdout + r.stderr).strip()


def unit_with_built_binaries(name):
    text = (SYSTEMD / name).read_text()
    exe = harness.bin_path(UNITS[name])
    if not exe.exists():
        pytest.fail(f"{exe} is not built (make BUILD=... all)")
    assert f"/usr/local/bin/{UNITS[name]}" in text
    return text.replace(f"/usr/local/bin/{UNITS[name]}", str(exe))


@pytest.fixture(scope="module")
def systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze not found (Debian package systemd)")


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_verifies_clean(systemd_analyze, tmp_path, name):
    rc, out = verify_unit(tmp_path, unit_with_built_binaries(name), name)
    assert rc == 0 and out == "", f"systemd-analyze verify {name} (rc {rc}):\n{out}"


@pytest.mark.parametrize("name", sorted(UNITS))
@pytest.mark.parametrize("mutation", [
    ("ProtectSystem=strict", "ProtectSystm=strict"),          # unknown directive
    ("ProtectSystem=strict", "ProtectSystem=strictly"),       # bad value
    ("Type=notify", "Type=notfy"),                            # bad value
    ("[Service]", "[Servce]"),                                # unknown section
])
def test_unit_verify_catches_typos(systemd_analyze, tmp_path, name, mutation):
    """The check above can fail: a typo'd copy of the unit is reported."""
    text = unit_with_built_binaries(name)
    assert mutation[0] in text
    rc, out = verify_unit(tmp_path, text.replace(mutation[0], mutation[1], 1), name)
    assert rc != 0 or out != "", f"systemd-analyze verify accepted {mutation[1]!r}"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_hardening(systemd_analyze, tmp_path, name):
    u = parse_unit(SYSTEMD / name)
    one = lambda k: (unit_values(u, k) or [None])[-1]  # noqa: E731
    assert one("Type") == "notify"
    assert one("ExecReload") in ("/bin/kill -HUP $MAINPID", "/usr/bin/kill -HUP $MAINPID")
    assert unit_values(u, "EnvironmentFile"), "secrets come from an EnvironmentFile"
    assert one("ExecStart").startswith(f"/usr/local/bin/{UNITS[name]} ")
    assert one("DynamicUser") == "yes" or (one("User") not in (None, "root", "0"))
    for key, want in [("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                      ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                      ("MemoryDenyWriteExecute", "yes"), ("LockPersonality", "yes"),
                      ("RestrictNamespaces", "yes"), ("RestrictSUIDSGID", "yes"),
                      ("SystemCallArchitectures", "native"), ("PrivateDevices", "yes")]:
        assert one(key) == want, f"{name}: {key}={one(key)}, want {want}"
    assert "@system-service" in unit_values(u, "SystemCallFilter")
    fams = set(" ".join(unit_values(u, "RestrictAddressFamilies")).split())
    assert fams and fams <= {"AF_INET", "AF_INET6", "AF_UNIX"}, fams
    # No capability but binding low ports, in the bounding set and ambient.
    for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
        caps = set(" ".join(unit_values(u, key)).split())
        assert caps <= {"CAP_NET_BIND_SERVICE"}, f"{name}: {key}={caps}"
    assert unit_values(u, "CapabilityBoundingSet"), "an explicit (small) bounding set"
    if name == "tailpost-edge.service":
        assert one("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    else:
        assert "tailpost" in (one("StateDirectory") or "").split(), "fs blob store state"
    # systemd's own rating of the sandbox (0 best .. 10 worst).
    p = tmp_path / name
    p.write_text(unit_with_built_binaries(name))
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(p)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, f"no exposure level in:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    assert float(m.group(1)) <= 2.5, f"{name}: exposure {m.group(1)}"


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tp-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.sock.settimeout(0.2)
        self.got = []

    def wait(self, state, timeout=30.0, after=0):
        """Wait for a message (from index after on) with a line == state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, msg in enumerate(self.got[after:], after):
                if state in msg.split("\n"):
                    return i
            try:
                self.got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        raise AssertionError(f"no {state} within {timeout}s; got {self.got}")

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_edge_speaks_notify_protocol(tmp_path):
    exe = harness.bin_path("tailpost-edge")
    port, up = harness.free_port(), harness.free_port()
    cfg = tmp_path / "edge.yaml"
    cfg.write_text("workers: 1\nshutdown_grace: 1s\nlisteners:\n"
                   f'  - {{ name: smtp, bind: ["127.0.0.1:{port}"], upstreams: ["127.0.0.1:{up}"],'
                   " health_check: { enabled: false } }\n")
    ns = NotifySocket()
    log = tmp_path / "edge.log"
    p = harness.spawn([exe, "-c", cfg], log, env=harness._clean_env({"NOTIFY_SOCKET": ns.path}))
    try:
        i = ns.wait("READY=1")
        harness.wait_port("127.0.0.1", port, proc=p)
        p.send_signal(signal.SIGHUP)
        i = ns.wait("RELOADING=1", after=i + 1)
        assert any(line.startswith("MONOTONIC_USEC=") for line in ns.got[i].split("\n"))
        i = ns.wait("READY=1", after=i + 1)
        p.send_signal(signal.SIGTERM)
        ns.wait("STOPPING=1", after=i + 1)
        assert p.wait(timeout=15) == 0, harness.log_tail(log)
    finally:
        harness.stop(p)
        ns.close()


def test_mailbox_speaks_notify_protocol(tmp_path, postgres_db):
    import mailbox_util

    if not harness.bin_path("tailpost-mailbox").exists():
        pytest.fail("tailpost-mailbox is not built")
    m = mailbox_util.Mailbox(tmp_path, postgres_db)
    m.write_config(mailbox_util.listener("t", "test", harness.free_port()))
    m.migrate()
    ns = NotifySocket()
    try:
        m.start(env={"NOTIFY_SOCKET": ns.path})
        i = ns.wait("READY=1")
        m.proc.send_signal(signal.SIGHUP)
        i = ns.wait("RELOADING=1", after=i + 1)
        i = ns.wait("READY=1", after=i + 1)
        m.proc.send_signal(signal.SIGTERM)
        ns.wait("STOPPING=1", after=i + 1)
        assert m.wait_exit(timeout=30) == 0, harness.log_tail(m.log)
    finally:
        m.stop()
        ns.close()


# ---------------------------------------------------------------------------
# .env.example


def test_env_example_documents_every_setting():
    env, lines = parse_env_file(ENV_EXAMPLE)
    seen = set()
    for n, line in enumerate(lines):
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not m:
            assert line == "" or line.startswith("#"), \
                f".env.example:{n + 1}: not KEY=VALUE: {line!r}"
            continue
        key, val = m.groups()
        assert key not in seen, f".env.example:{n + 1}: {key} twice"
        seen.add(key)
        # A comment in the block of lines right above (no blank line between).
        j = n - 1
        while j >= 0 and lines[j] != "" and not lines[j].startswith("#"):
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), f".env.example:{n + 1}: {key} has no comment"
        # Values systemd, compose and tailpost-acl all read the same way.
        assert " #" not in val and not val.startswith(" "), f"{key}: trailing comment or space"
        if SECRET_RE.search(key):
            assert val == "", f"{key} is a secret: name it, leave it empty"


def test_env_example_has_acl_gen_variables():
    src = (ROOT / "acl" / "gen.c").read_text()
    wanted = set(re.findall(r'get\(env,\s*"([A-Z0-9_]+)"', src))
    assert len(wanted) >= 9, f"acl/gen.c reads fewer variables than expected: {wanted}"
    env, _ = parse_env_file(ENV_EXAMPLE)
    assert wanted <= set(env), f"not in .env.example: {sorted(wanted - set(env))}"
    r = subprocess.run([str(harness.bin_path("tailpost-acl")), "gen", "--env", str(ENV_EXAMPLE),
                        "--with-tests"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert env["TAILPOST_MAILBOX_TAG"] in r.stdout and env["TAILPOST_EDGE_TAG"] in r.stdout


def test_env_example_documents_every_variable_used():
    env, _ = parse_env_file(ENV_EXAMPLE)
    used = {}
    files = [COMPOSE / f for f in COMPOSE_FILES] + sorted((COMPOSE / "config").glob("*.yaml")) \
        + [SYSTEMD / u for u in UNITS]
    for f in files:
        names = variables_in(f.read_text())
        if f.suffix == ".service":
            names -= {"MAINPID"}  # systemd's own
        for name in names:
            used.setdefault(name, []).append(f.relative_to(ROOT).as_posix())
    assert used, "no variables found: the scan is broken"
    missing = {k: v for k, v in used.items() if k not in env}
    assert not missing, f"used but not documented in .env.example: {missing}"


# ---------------------------------------------------------------------------
# compose


@pytest.fixture(scope="module")
def compose():
    """Both compose files as `docker compose` sees them with the operator's
    .env (.env.example, secrets filled in)."""
    env = operator_env()
    return {name: load_compose(name, env) for name in COMPOSE_FILES}


def test_compose_refuses_missing_secrets():
    """The :? guards work: without the auth keys compose would stop."""
    env = operator_env()
    for name, key in [("compose.mailbox.yaml", "TS_AUTHKEY_MAILBOX"),
                      ("compose.edge.yaml", "TS_AUTHKEY_EDGE"),
                      ("compose.mailbox.yaml", "TAILPOST_DB_PASSWORD")]:
        with pytest.raises(ValueError, match=key):
            load_compose(name, {**env, key: ""})


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_volumes_named_or_readonly_config(compose, name):
    doc = compose[name]
    declared = set((doc.get("volumes") or {}).keys())
    used = set()
    for sname, svc in doc["services"].items():
        for source, target, ro in mounts(svc):
            assert source, f"{name}: {sname}: anonymous volume at {target}"
            if is_bind(source):
                # a bind is configuration: read-only, a file or dir we ship or name
                assert ro, f"{name}: {sname}: bind {source}:{target} is writable"
                if source.startswith("./"):
                    assert (COMPOSE / source).exists(), f"{name}: {sname}: {source} missing"
            else:
                assert source in declared, f"{name}: {sname}: volume {source} not declared"
                used.add(source)
        for t in svc.get("tmpfs", []) or []:
            assert t.split(":")[0] in ("/tmp", "/run"), f"{sname}: tmpfs {t} holds state?"
    assert declared == used, f"{name}: declared but unused volumes {declared - used}"


def test_compose_mailbox_shape(compose):
    svcs = compose["compose.mailbox.yaml"]["services"]
    ts, mb = svcs["tailscale"], svcs["mailbox"]
    assert ts["image"].split(":")[0].endswith("tailscale/tailscale")
    assert mb["network_mode"] == "service:tailscale"
    assert mb["depends_on"]["tailscale"]["condition"] == "service_healthy"
    for sname, svc in svcs.items():
        assert "ports" not in svc, f"{sname} publishes ports on the mailbox host"
    for store in ("postgres", "redis", "garage"):
        assert svcs[store].get("profiles"), f"{store} must be optional (a profile)"
    assert "profiles" not in mb and "profiles" not in ts
    assert mb.get("user") not in (None, "root", "0", "0:0")
    assert mb.get("read_only") is True and "ALL" in mb.get("cap_drop", [])
    assert "no-new-privileges:true" in mb.get("security_opt", [])
    assert "TS_AUTHKEY" in ts["environment"] and "/dev/net/tun:/dev/net/tun" in ts["devices"]
    # The config reads every ${VAR} from the mailbox's environment.
    passed = set(mb["environment"])
    for cfg in ("mailbox.yaml", "mailbox-fs.yaml"):
        need = variables_in((COMPOSE / "config" / cfg).read_text())
        assert need <= passed, f"{cfg} needs {sorted(need - passed)} in mailbox.environment"


def test_compose_edge_shape(compose):
    svcs = compose["compose.edge.yaml"]["services"]
    ts, edge = svcs["tailscale"], svcs["edge"]
    assert ts["image"].split(":")[0].endswith("tailscale/tailscale")
    if edge.get("network_mode") == "host":
        assert ts.get("network_mode") == "host", "the sidecar's tailscale0 must be the edge's"
        assert "ports" not in edge
    else:
        published = {str(p).split(":")[-1].split("/")[0] for p in edge.get("ports", [])}
        assert {"25", "465", "587", "143", "993", "80"} <= published
    assert set(edge.get("cap_add", [])) <= {"NET_BIND_SERVICE", "SETUID", "SETGID"}
    assert "ALL" in edge.get("cap_drop", [])
    assert "no-new-privileges:true" in edge.get("security_opt", [])
    need = variables_in((COMPOSE / "config" / "edge.yaml").read_text())
    assert need <= set(edge["environment"]), sorted(need - set(edge["environment"]))
    # Running as root is only for binding: the config must switch user.
    if str(edge.get("user", "")).split(":")[0] in ("0", "root"):
        assert yaml.safe_load((COMPOSE / "config" / "edge.yaml").read_text()).get("user")


def _compose_plugin():
    docker = shutil.which("docker")
    if docker is None:
        return None, "no docker client"
    r = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        said = ((r.stderr or r.stdout).strip().splitlines() or ["?"])[0]
        return None, f"the docker compose plugin is absent ({said})"
    return docker, None


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_docker_compose_config(tmp_path, name):
    docker, why = _compose_plugin()
    if docker is None:
        pytest.skip(f"docker compose config not run: {why}; the YAML checks above still ran")
    env, _ = parse_env_file(ENV_EXAMPLE)
    envf = tmp_path / "env"
    envf.write_text("".join(f"{k}={v or 'dummy'}\n" for k, v in env.items()))
    r = subprocess.run([docker, "compose", "--env-file", str(envf), "-f", str(COMPOSE / name),
                        "--profile", "postgres", "--profile", "redis", "--profile", "s3",
                        "config", "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "tailscale" in doc["services"]


# ---------------------------------------------------------------------------
# daemon configs with .env.example's values


def test_edge_config_loads_with_env_example(tmp_path):
    env = env_for_daemons(tmp_path)
    r = subprocess.run([str(harness.bin_path("tailpost-edge")), "-c",
                        str(COMPOSE / "config" / "edge.yaml"), "--check"],
                       capture_output=True, text=True, timeout=30, env=harness._clean_env(env))
    assert r.returncode == 0, r.stderr
    for k in ("TAILPOST_MAILBOX_ADDR_MX", "TAILPOST_MAILBOX_ADDR_IMAPS"):
        assert f'"{env[k]}"' in r.stdout, f"{k} not in the effective config"


@pytest.mark.parametrize("cfg", ["mailbox.yaml", "mailbox-fs.yaml"])
def test_mailbox_config_loads_with_env_example(tmp_path, cfg):
    exe = harness.bin_path("tailpost-mailbox")
    if not exe.exists():
        pytest.fail(f"{exe} is not built")
    env = env_for_daemons(tmp_path)
    # Stores nobody answers at, so that `check` stops after the config.
    env.update(TAILPOST_POSTGRES_URL="postgres://tailpost@127.0.0.1:1/tailpost",
               TAILPOST_REDIS_URL="redis://127.0.0.1:1/0",
               TAILPOST_S3_ENDPOINT="http://127.0.0.1:1")
    r = subprocess.run([str(exe), "check", "-c", str(COMPOSE / "config" / cfg)],
                       capture_output=True, text=True, timeout=120, env=harness._clean_env(env))
    out = r.stdout + r.stderr
    # 2: the configuration itself is invalid; 1: a store did not answer.
    assert r.returncode != 2 and "configuration is valid" in out, out
    for k in ("TAILPOST_MAILBOX_ADDR_MX", "TAILPOST_MAILBOX_ADDR_ADMIN", "TAILPOST_MAIL_HOSTNAME"):
        assert env[k] in out, f"{k}={env[k]} not in the effective config"
    assert f"{env['TAILPOST_EDGE_TAILNET_IP']}/32" in out, "PROXY trust is the edge's address"
    for secret in ("TAILPOST_DB_PASSWORD", "TAILPOST_REDIS_PASSWORD", "TAILPOST_S3_SECRET_KEY"):
        assert env[secret] not in out, f"{secret} printed"
    assert "127.0.0.1:1" in out, "store endpoints from the environment"


# ---------------------------------------------------------------------------
# Dockerfile


def dockerfile_stages():
    stages, cur = [], None
    text = (COMPOSE / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word, _, rest = s.partition(" ")
        if word.upper() == "FROM":
            cur = {"from": rest.split()[0], "name": rest.split()[-1] if " AS " in rest.upper()
                   else None, "run": [], "copy": [], "user": None}
            stages.append(cur)
        elif word.upper() == "RUN":
            cur["run"].append(rest)
        elif word.upper() == "COPY":
            cur["copy"].append(rest.split())
        elif word.upper() == "USER":
            cur["user"] = rest.strip()
    return stages


def apt_packages(runs):
    pkgs = set()
    for r in runs:
        for m in re.finditer(r"apt-get install ([^&;|]*)", r):
            pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def package_of_soname(soname):
    """The Debian package holding the library the loader finds for soname."""
    r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30)
    paths = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and m.group(1) == soname:
            # this machine's own ABI first (x86-64 here; 32-bit copies last)
            paths.insert(0 if "64" in m.group(2) else len(paths), m.group(3))
    for p in paths:
        real = os.path.realpath(p)
        cands = [p, real] + [c[4:] if c.startswith("/usr/") else "/usr" + c for c in (p, real)]
        for cand in cands:
            d = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True, timeout=30)
            if d.returncode == 0:
                return d.stdout.split(":")[0].strip()
    return None


def test_dockerfile_stages():
    st = dockerfile_stages()
    assert len(st) == 2, [s["from"] for s in st]
    build, run = st
    assert build["from"] in ("debian:12", "debian:bookworm") and build["name"]
    assert any("make MODE=release" in r for r in build["run"]), build["run"]
    assert run["from"] in ("debian:12-slim", "debian:bookworm-slim")
    assert run["user"] and run["user"].split(":")[0] not in ("root", "0")
    assert any(f"--from={build['name']}" in c for cp in run["copy"] for c in cp)
    # Every source the build stage copies exists.
    for cp in build["copy"]:
        for src in [c for c in cp[1:-1] if not c.startswith("--")]:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    # The build stage installs the same -dev libraries as deploy/deps.sh.
    deps = (DEPLOY / "deps.sh").read_text()
    m = re.search(r'BUILD_PKGS="([^"]*)"', deps)
    want_dev = {p for p in m.group(1).split() if p.startswith("lib") and p.endswith("-dev")
                and not p.startswith("libclang-rt")}  # the fuzzer runtime, not a library we link
    assert want_dev <= apt_packages(build["run"]), want_dev - apt_packages(build["run"])


def test_dockerfile_runtime_libraries_match_binaries():
    """The slim stage installs exactly the packages that provide the
    binaries' DT_NEEDED libraries (ca-certificates aside; libc6 is in the
    base image; the sanitizer runtimes only come with MODE=asan)."""
    runtime = apt_packages(dockerfile_stages()[1]["run"])
    assert not {p for p in runtime if p.endswith("-dev")}, "no -dev package at run time"
    sonames = set()
    for b in ("tailpost-edge", "tailpost-mailbox", "tailpost-acl"):
        exe = harness.bin_path(b)
        if not exe.exists():
            pytest.fail(f"{exe} is not built")
        r = subprocess.run(["objdump", "-p", str(exe)], capture_output=True, text=True, timeout=60)
        sonames |= set(re.findall(r"NEEDED\s+(\S+)", r.stdout))
    sonames = {s for s in sonames if not s.startswith(("libasan", "libubsan"))}
    need = {}
    for s in sorted(sonames):
        pkg = package_of_soname(s)
        assert pkg, f"no Debian package found for {s}"
        need[s] = pkg
    base = {"libc6", "libgcc-s1"}
    missing = {s: p for s, p in need.items() if p not in runtime and p not in base}
    assert not missing, f"runtime stage lacks {missing}"
    extra = runtime - set(need.values()) - {"ca-certificates"}
    assert not extra, f"runtime stage installs packages no binary needs: {extra}"
