"""A private Postfix instance for tests: its own config, queue and data
directories in a temp dir, one smtpd on a loopback port (more with
extra_smtpds), run in the foreground by its master as root (Postfix's
daemons then run as user postfix); the system's Postfix service is never
touched.

start_smarthost() is the same Postfix as a relay for outbound tests: SMTP
AUTH against a private Dovecot auth socket (smtpd_sasl_type = dovecot),
STARTTLS and implicit-TLS (smtpd_tls_wrappermode) listeners with a test
certificate, a plain MX listener, and every recipient delivered into one
Maildir (smarthost_messages() reads it, strip_postfix_headers() removes
the fields Postfix adds, for byte comparisons).
"""
import os
import pwd
import re
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
virtual   unix  -       n       n       -       -       virtual
"""


def start_postfix(name, main_cf, smtpd_options=(), extra_smtpds=None, base=None):
    """Start a private Postfix named NAME whose smtpd listens on a free
    127.0.0.1 port.  main_cf: the instance's own main.cf lines (hostnames,
    routing, restrictions); paths, owners and logging are added here.
    smtpd_options: "-o key=value" overrides for that smtpd.
    extra_smtpds: {key: [options]} more smtpd listeners, each on its own
    free port, returned as result[key].  base: a directory made by
    _make_base() (when the caller writes files into it first).  Returns a
    dict with port, log, proc and base; stop it with stop_postfix()."""
    if not os.access(POSTFIX, os.X_OK) or not os.access(f"{DAEMON_DIR}/master", os.X_OK):
        pytest.fail("postfix not installed: install the Debian package postfix (deploy/deps.sh --test)")
    if os.geteuid() != 0:
        pytest.fail("a private Postfix instance needs root (its master starts as root)")
    if base is None:
        base = _make_base(name)
    conf, queue, data = (os.path.join(base, d) for d in ("conf", "queue", "data"))
    for d in (queue, data):
        os.mkdir(d, 0o755)
    shutil.chown(data, "postfix")
    port = harness.free_port()
    extra_ports = {}
    for key in extra_smtpds or {}:
        p = harness.free_port()
        while p == port or p in extra_ports.values():
            p = harness.free_port()
        extra_ports[key] = p
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
        for key, opts in (extra_smtpds or {}).items():
            f.write(f"127.0.0.1:{extra_ports[key]} inet n - n - - smtpd\n")
            for opt in opts:
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
        for p in extra_ports.values():
            harness.wait_port("127.0.0.1", p, timeout=20, proc=proc)
    except BaseException:
        harness.stop(proc)
        harness.unwatch_log(name)
        raise
    return dict({"name": name, "port": port, "log": log, "proc": proc, "base": base},
                **extra_ports)


def _make_base(name):
    # Postfix daemons run as user postfix: the tree must be traversable.
    base = tempfile.mkdtemp(prefix=f"tailpost-{name}-", dir=harness._tmp_base())
    os.chmod(base, 0o755)
    os.mkdir(os.path.join(base, "conf"), 0o755)
    return base


def stop_postfix(pf):
    harness.stop(pf["proc"])
    harness.unwatch_log(pf["name"])
    if pf.get("dovecot") is not None:
        harness.stop(pf["dovecot"])
        harness.unwatch_log(pf["name"] + "-auth")
    shutil.rmtree(pf["base"], ignore_errors=True)


def postfix_log(pf):
    with open(pf["log"], errors="replace") as f:
        return f.read()


# --- smarthost mode ---------------------------------------------------------

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _start_dovecot_auth(name, base, users):
    """A private Dovecot that only serves its auth socket to Postfix
    (smtpd_sasl_type = dovecot): users from a passwd-file, PLAIN and LOGIN.
    Returns (proc, socket path)."""
    if not os.access(DOVECOT, os.X_OK):
        pytest.fail("dovecot not installed: install dovecot-core (deploy/deps.sh --test)")
    d = os.path.join(base, "dovecot")
    for sub in ("", "run", "state"):
        os.makedirs(os.path.join(d, sub), 0o755, exist_ok=True)
    with open(os.path.join(d, "passwd"), "w") as f:
        for u, pw in users.items():
            f.write(f"{u}:{{PLAIN}}{pw}::::::\n")
    sock = os.path.join(d, "auth-postfix")
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""\
base_dir = {d}/run
state_dir = {d}/state
instance_name = {name}-auth
log_path = /dev/stderr
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {sock} {{
    mode = 0666
  }}
}}
""")
    log = os.path.join(d, "dovecot.log")
    proc = harness.spawn([DOVECOT, "-F", "-c", conf], log, cwd=d)
    harness.watch_log(name + "-auth", log)
    try:
        harness.wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, timeout=20,
                         what="dovecot auth socket")
        if proc.poll() is not None:
            pytest.fail("dovecot exited:\n" + open(log, errors="replace").read()[-4000:])
    except BaseException:
        harness.stop(proc)
        harness.unwatch_log(name + "-auth")
        raise
    return proc, sock


def start_smarthost(name, cert, key, users=None, reject=(), defer=(), main_cf=""):
    """A private Postfix as a smarthost (a relay with SMTP AUTH) that
    delivers every recipient of every domain into one Maildir,
    result["maildir"]/all/ (Postfix's virtual agent; smarthost_messages()
    picks a recipient's messages by their Delivered-To field).

    Listeners (all 127.0.0.1, keys of the result):
      port      STARTTLS offered, AUTH only after STARTTLS, and AUTH required
                (unauthenticated recipients are refused 554);
      tls_port  implicit TLS (smtpd_tls_wrappermode), AUTH required;
      mx_port   an MX: STARTTLS offered, no AUTH needed.
    cert/key: the server certificate (PEM chain and key, e.g. from
    mailbox_util.Certs.issue).  users: {user: password} for AUTH (Dovecot's
    auth socket).  reject / defer: local parts refused at RCPT with
    550 5.1.1 / 450 4.2.0.  Stop with stop_postfix()."""
    users = users if users is not None else {"relayuser": "relaypass"}
    base = _make_base(name)
    conf = os.path.join(base, "conf")
    maildir = os.path.join(base, "mail")
    os.mkdir(maildir, 0o755)
    pw = pwd.getpwnam("nobody")
    os.chown(maildir, pw.pw_uid, pw.pw_gid)
    # the key must be readable by smtpd (runs as postfix): copy it in
    tls_dir = os.path.join(base, "tls")
    os.mkdir(tls_dir, 0o755)
    shutil.copy(cert, os.path.join(tls_dir, "cert.pem"))
    shutil.copy(key, os.path.join(tls_dir, "key.pem"))
    os.chmod(os.path.join(tls_dir, "key.pem"), 0o644)
    with open(os.path.join(conf, "rcpt_access"), "w") as f:
        for lp in reject:
            f.write(f"/^{re.escape(lp)}@/ 550 5.1.1 no such user here\n")
        for lp in defer:
            f.write(f"/^{re.escape(lp)}@/ 450 4.2.0 try again later\n")
    dovecot = None
    try:
        dovecot, sock = _start_dovecot_auth(name, base, users)
        need_auth = "smtpd_recipient_restrictions=check_recipient_access,regexp:" + \
            f"{conf}/rcpt_access,permit_sasl_authenticated,reject"
        pf = start_postfix(name, f"""\
myhostname = {name}.test
mydomain = {name}.test
myorigin = {name}.test
mydestination =
inet_protocols = ipv4
local_header_rewrite_clients =
mynetworks =
virtual_mailbox_domains = static:all
virtual_mailbox_base = {maildir}
virtual_mailbox_maps = static:all/
virtual_uid_maps = static:{pw.pw_uid}
virtual_gid_maps = static:{pw.pw_gid}
virtual_minimum_uid = 1
smtpd_recipient_restrictions = check_recipient_access regexp:{conf}/rcpt_access, permit
smtpd_relay_restrictions = reject_unauth_destination
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sock}
smtpd_tls_cert_file = {tls_dir}/cert.pem
smtpd_tls_key_file = {tls_dir}/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_banner = $myhostname ESMTP {name}
queue_run_delay = 1s
""" + main_cf, smtpd_options=(
            "smtpd_sasl_auth_enable=yes",
            "smtpd_tls_auth_only=yes",
            need_auth,
        ), extra_smtpds={
            "tls_port": ["smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt",
                         "smtpd_sasl_auth_enable=yes", need_auth],
            "mx_port": [],
        }, base=base)
    except BaseException:
        if dovecot is not None:
            harness.stop(dovecot)
            harness.unwatch_log(name + "-auth")
        shutil.rmtree(base, ignore_errors=True)
        raise
    pf["dovecot"] = dovecot
    pf["maildir"] = maildir
    pf["users"] = users
    return pf


def smarthost_messages(pf, addr=None):
    """The messages delivered (bytes, oldest first), all or those whose
    Delivered-To is addr.  Every recipient shares one Maildir (the virtual
    agent refuses $1 substitutions in its maps), so the first
    Delivered-To field names the recipient."""
    d = os.path.join(pf["maildir"], "all")
    out = []
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        if os.path.isdir(p):
            for n in os.listdir(p):
                fp = os.path.join(p, n)
                with open(fp, "rb") as f:
                    m = f.read()
                if addr is not None:
                    dt = re.search(rb"^Delivered-To: *([^\r\n]*)", m, re.M | re.I)
                    if dt is None or dt.group(1).decode().lower() != addr.lower():
                        continue
                out.append((os.stat(fp).st_mtime_ns, n, m))
    return [m for _, _, m in sorted(out)]


def strip_postfix_headers(msg):
    """msg without the header fields Postfix adds on delivery at the top
    (Return-Path, X-Original-To, Delivered-To, Received), for byte comparison."""
    while True:
        m = re.match(rb"(?:Return-Path|X-Original-To|Delivered-To|Received):[^\n]*\n(?:[ \t][^\n]*\n)*", msg,
                     re.I)
        if m is None:
            return msg
        msg = msg[m.end():]
