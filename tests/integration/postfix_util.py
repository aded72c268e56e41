"""A private Postfix instance for tests: its own config, queue and data
directories in a temp dir, one smtpd on a loopback port, run in the
foreground by its master as root (Postfix's daemons then run as user
postfix); the system's Postfix service is never touched.
"""
import os
import shutil
import subprocess
import tempfile

import pytest

import harness

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
DAEMON_DIR = "/usr/lib/postfix/sbin"

# Every service a small relay or sink needs; unused ones cost nothing.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def start_postfix(name, main_cf, smtpd_options=()):
    """Start a private Postfix named NAME whose smtpd listens on a free
    127.0.0.1 port.  main_cf: the instance's own main.cf lines (hostnames,
    routing, restrictions); paths, owners and logging are added here.
    smtpd_options: "-o key=value" overrides for that smtpd.  Returns a dict
    with port, log, proc and base; stop it with stop_postfix()."""
    if not os.access(POSTFIX, os.X_OK) or not os.access(f"{DAEMON_DIR}/master", os.X_OK):
        pytest.fail("postfix not installed: install the Debian package postfix (deploy/deps.sh --test)")
    if os.geteuid() != 0:
        pytest.fail("a private Postfix instance needs root (its master starts as root)")
    # Postfix daemons run as user postfix: the tree must be traversable.
    base = tempfile.mkdtemp(prefix=f"tailpost-{name}-", dir=harness._tmp_base())
    os.chmod(base, 0o755)
    conf, queue, data = (os.path.join(base, d) for d in ("conf", "queue", "data"))
    for d in (conf, queue, data):
        os.mkdir(d, 0o755)
    shutil.chown(data, "postfix")
    port = harness.free_port()
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = {DAEMON_DIR}
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
maillog_file = /dev/stdout
local_recipient_maps =
alias_maps =
alias_database =
syslog_name = {name}
biff = no
""" + main_cf)
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write(f"127.0.0.1:{port} inet n - n - - smtpd\n")
        for opt in smtpd_options:
            f.write(f"  -o {opt}\n")
        f.write(_SERVICES)
    env = harness._clean_env({"MAIL_CONFIG": conf})
    # creates the queue directories with their owners and modes
    r = subprocess.run([POSTFIX, "-c", conf, "check"], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 0, f"postfix check failed:\n{r.stdout}{r.stderr}"
    log = os.path.join(base, "postfix.log")
    proc = harness.spawn([f"{DAEMON_DIR}/master", "-c", conf, "-s"], log, cwd=base, env=env)
    harness.watch_log(name, log)
    try:
        harness.wait_port("127.0.0.1", port, timeout=20, proc=proc)
    except BaseException:
        harness.stop(proc)
        harness.unwatch_log(name)
        raise
    return {"name": name, "port": port, "log": log, "proc": proc, "base": base}


def stop_postfix(pf):
    harness.stop(pf["proc"])
    harness.unwatch_log(pf["name"])
    shutil.rmtree(pf["base"], ignore_errors=True)


def postfix_log(pf):
    with open(pf["log"], errors="replace") as f:
        return f.read()
