#!/bin/sh
# deploy/deps.sh -- install every Debian package the build, the tests and the
# local stack need, and the pinned S3 test server (s3rver) into the repo.
#
# Idempotent: packages already present are skipped; nothing is started or
# enabled (a policy-rc.d keeps Debian from starting postgresql, redis,
# postfix, dovecot or haproxy on install; tests start private instances).
#
#   deploy/deps.sh            build + local stack (make run)
#   deploy/deps.sh --test     also the test-only peers (make test)
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
S3RVER_VERSION=3.7.1
IMAPFLOW_VERSION=1.0.171

BUILD_PKGS="build-essential pkg-config clang llvm libclang-rt-14-dev clang-format
 libssl-dev libev-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libyaml-dev
 libjansson-dev libargon2-dev libcrypt-dev libc-ares-dev
 postgresql redis-server openssl ca-certificates curl"
TEST_PKGS="python3 python3-pytest python3-botocore haproxy swaks
 dovecot-core dovecot-imapd dovecot-lmtpd postfix isync neomutt
 python3-dkim python3-nacl python3-cryptography python3-yaml dnsmasq-base wireguard-tools wireguard-go iproute2
 systemd util-linux whois argon2 strace
 libnet-ssleay-perl libio-socket-ssl-perl"

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

pkgs=$BUILD_PKGS
[ $want_test = 1 ] && pkgs="$pkgs $TEST_PKGS"

# Node.js and npm: Debian's nodejs+npm, unless a node with npm is already
# present (a NodeSource nodejs bundles npm and conflicts with Debian's npm).
if ! command -v npm >/dev/null 2>&1; then
	pkgs="$pkgs nodejs npm"
fi

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing packages:$missing" >&2
		echo "deps: run as root: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
		exit 1
	fi
	# Keep Debian from starting (or enabling) the services we install:
	# tests and make run start private instances on loopback.
	prc=/usr/sbin/policy-rc.d
	created_prc=0
	if [ ! -e $prc ]; then
		printf '#!/bin/sh\nexit 101\n' > $prc
		chmod 755 $prc
		created_prc=1
	fi
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	# postfix asks questions on install; answer them up front.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
	[ $created_prc = 1 ] && rm -f $prc
	# Stop anything that slipped through and keep it off at boot.
	for s in postgresql redis-server postfix dovecot haproxy; do
		if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
			systemctl disable --now "$s" >/dev/null 2>&1 || true
		fi
	done
fi

# s3rver, pinned, into the repo (ignored by git), never globally.
if [ ! -x "$ROOT/var/node/node_modules/.bin/s3rver" ]; then
	mkdir -p "$ROOT/var/node"
	echo "deps: installing s3rver@$S3RVER_VERSION into var/node"
	(cd "$ROOT/var/node" && npm install --no-audit --no-fund --silent \
		--prefix "$ROOT/var/node" "s3rver@$S3RVER_VERSION" >/dev/null)
fi
# imapflow (a Node IMAP client, as webmail uses), pinned, for the tests only.
if [ $want_test = 1 ] && [ ! -d "$ROOT/var/node/node_modules/imapflow" ]; then
	mkdir -p "$ROOT/var/node"
	echo "deps: installing imapflow@$IMAPFLOW_VERSION into var/node"
	(cd "$ROOT/var/node" && npm install --no-audit --no-fund --silent \
		--prefix "$ROOT/var/node" "imapflow@$IMAPFLOW_VERSION" >/dev/null)
fi
echo "deps: ok"
