#!/bin/bash
# deploy/netns/topology.sh -- the two-host tailpost topology on one machine,
# built from network namespaces, veth pairs, two bridges and a real
# WireGuard tunnel standing in for the tailnet.
#
#   topology.sh up [--id ID]            build it; prints the run's variables
#                                       (KEY=VALUE, also kept in STATE/ID/env)
#   topology.sh down [--id ID]          tear one run down completely
#   topology.sh exec [--id ID] HOST CMD...
#                                       run CMD inside HOST's namespace
#   topology.sh env [--id ID]           print a run's variables again
#   topology.sh list                    runs that have state or namespaces
#
# ID defaults to $TAILPOST_NETNS_ID; `up` without one makes a random one
# ("tp" + 6 hex digits) and prints it as TAILPOST_NETNS_ID=....  HOST is one
# of client, edge, mailbox, relay.  Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).
#
#   "public" 198.51.100.0/24, 2001:db8:51::/64 (bridge pub)
#     client  .10 / ::10   default route via the edge: a client on the Internet
#     edge    .1  / ::1    the public address the edge listens on
#   underlay 203.0.113.0/24 (bridge lan): carries only WireGuard's UDP
#     edge .1, mailbox .2, relay .3
#   tailnet (WireGuard, full mesh, one interface per host)
#     edge    100.64.0.1  fd7a:115c:a1e0::1
#     mailbox 100.64.0.2  fd7a:115c:a1e0::2   reachable only over the tunnel
#     relay   100.64.0.3  fd7a:115c:a1e0::3   the smarthost, tunnel only
#
# Only documentation ranges (RFC 5737, RFC 3849) and the shared/tailnet
# ranges (RFC 6598, Tailscale's fd7a:115c:a1e0::/48) are used, and only
# inside namespaces this script creates.  The edge does not forward
# (ip_forward=0), so the client, whose default route points at the edge,
# reaches nothing behind it except through a process listening on the
# edge.  The mailbox and the relay have no default route and no public
# address.
#
# Naming: every namespace is ID-HOST (plus ID-sw, which holds the two
# bridges); veth ends are created directly inside their namespaces, so no
# name ever appears in the root namespace.  The WireGuard interfaces are
# IDwe, IDwm, IDwr: with wireguard-go (used when the kernel cannot create
# a wireguard link) the control socket lives in the shared directory
# /var/run/wireguard/IFACE.sock, so these names must be unique across
# namespaces and runs; the ID makes them so.  Parallel runs never collide,
# and `down` removes namespaces, links, sockets and processes of its run
# even when the state directory is gone.
#
# Environment: TAILPOST_NETNS_ID, TAILPOST_NETNS_STATE (state directory,
# default /run/tailpost-netns), TAILPOST_WG=auto|kernel|userspace.
set -euo pipefail

STATE_BASE=${TAILPOST_NETNS_STATE:-/run/tailpost-netns}
WG_MODE=${TAILPOST_WG:-auto}
WG_PORT=51820
HOSTS="client edge mailbox relay"
WG_HOSTS="edge mailbox relay"
WG_SOCK_DIR=/var/run/wireguard

log() { printf 'topology: %s\n' "$*" >&2; }
die() {
	printf 'topology: error: %s\n' "$*" >&2
	exit 1
}
usage() {
	sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# --- addressing ------------------------------------------------------------
tun4() { case $1 in edge) echo 100.64.0.1 ;; mailbox) echo 100.64.0.2 ;; relay) echo 100.64.0.3 ;; esac; }
tun6() { case $1 in edge) echo fd7a:115c:a1e0::1 ;; mailbox) echo fd7a:115c:a1e0::2 ;; relay) echo fd7a:115c:a1e0::3 ;; esac; }
lan4() { case $1 in edge) echo 203.0.113.1 ;; mailbox) echo 203.0.113.2 ;; relay) echo 203.0.113.3 ;; esac; }
wgname() { case $1 in edge) echo "${ID}we" ;; mailbox) echo "${ID}wm" ;; relay) echo "${ID}wr" ;; esac; }
ns() { echo "$ID-$1"; }

check_id() {
	[[ $1 =~ ^[a-z][a-z0-9]{1,11}$ ]] ||
		die "bad run id '$1': 2-12 characters [a-z0-9], starting with a letter (it prefixes 15-byte interface names)"
}

need_root() {
	[ "$(id -u)" = 0 ] || die "needs root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
	command -v ip >/dev/null || die "ip not found (Debian package iproute2)"
}

in_ns() { # HOST CMD...
	local h=$1
	shift
	ip netns exec "$(ns "$h")" "$@"
}

# Namespaces of run ID that exist now (also for runs without state).
run_namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${ID}-(client|edge|mailbox|relay|sw)\$" || true
}

# --- down ------------------------------------------------------------------

# Stop every process inside one of our namespaces: by PID, TERM then KILL.
# They can only be processes of this run (the namespace is ours).
kill_ns_procs() {
	local n=$1 pids pid i
	pids=$(ip netns pids "$n" 2>/dev/null || true)
	[ -n "$pids" ] || return 0
	for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
	for i in $(seq 1 30); do
		pids=$(ip netns pids "$n" 2>/dev/null || true)
		[ -n "$pids" ] || return 0
		sleep 0.1
	done
	for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
	for i in $(seq 1 30); do
		[ -n "$(ip netns pids "$n" 2>/dev/null || true)" ] || return 0
		sleep 0.1
	done
	log "warning: processes still in $n after SIGKILL: $(ip netns pids "$n" 2>/dev/null | tr '\n' ' ')"
}

do_down() {
	local n h pid s
	# wireguard-go daemons recorded at start (they are inside the
	# namespaces too; this also covers one that has lost its namespace).
	if [ -f "$STATE_BASE/$ID/pids" ]; then
		while read -r h pid; do
			if [ -r "/proc/$pid/cmdline" ] &&
				tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "wireguard-go.* ${ID}w"; then
				kill -TERM "$pid" 2>/dev/null || true
			fi
		done <"$STATE_BASE/$ID/pids"
	fi
	for n in $(run_namespaces); do kill_ns_procs "$n"; done
	for n in $(run_namespaces); do
		ip netns del "$n" 2>/dev/null || log "warning: could not delete namespace $n"
	done
	for h in $WG_HOSTS; do
		s="$WG_SOCK_DIR/$(wgname "$h").sock"
		[ -e "$s" ] && rm -f "$s"
	done
	rm -rf "${STATE_BASE:?}/$ID"
	return 0
}

# --- up --------------------------------------------------------------------

wg_kernel_ok() {
	# Probe in a throw-away namespace so nothing touches the root one.
	local probe="$ID-probe" ok=1
	ip netns add "$probe" || return 1
	ip -n "$probe" link add wgprobe type wireguard 2>/dev/null && ok=0
	ip netns del "$probe"
	return $ok
}

wg_create() { # HOST
	local h=$1 ifc i
	ifc=$(wgname "$h")
	if [ "$WG" = kernel ]; then
		ip -n "$(ns "$h")" link add "$ifc" type wireguard
		return
	fi
	# Foreground (-f), so $! is the daemon itself; it exits with SIGTERM.
	in_ns "$h" wireguard-go -f "$ifc" >"$STATE_BASE/$ID/wireguard-go.$h.log" 2>&1 &
	echo "$h $!" >>"$STATE_BASE/$ID/pids"
	for i in $(seq 1 100); do
		[ -S "$WG_SOCK_DIR/$ifc.sock" ] && ip -n "$(ns "$h")" link show "$ifc" >/dev/null 2>&1 && return 0
		kill -0 "$!" 2>/dev/null || break
		sleep 0.05
	done
	cat "$STATE_BASE/$ID/wireguard-go.$h.log" >&2 || true
	die "wireguard-go did not create $ifc in $(ns "$h")"
}

# veth: one end (NAME) in HOST's namespace, the other (PEER) on BRIDGE.
wire() { # HOST NAME BRIDGE PEER
	ip link add "$2" netns "$(ns "$1")" type veth peer name "$4" netns "$(ns sw)"
	ip -n "$(ns sw)" link set "$4" master "$3" up
	ip -n "$(ns "$1")" link set "$2" up
}

# A TCP connection attempt from HOST to ADDR (port 9, nothing listens):
# only to make WireGuard handshake; the outcome does not matter.
poke() { in_ns "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/9" >/dev/null 2>&1 || true; }

handshaked() { # HOST PEERHOST
	local pub t
	pub=$(cat "$STATE_BASE/$ID/$2.pub")
	t=$(in_ns "$1" wg show "$(wgname "$1")" latest-handshakes | awk -v k="$pub" '$1 == k {print $2}')
	[ -n "$t" ] && [ "$t" != 0 ]
}

on_up_exit() {
	local rc=$?
	if [ $rc != 0 ]; then
		log "failed; tearing down run $ID"
		do_down
	fi
}

do_up() {
	local h p i n
	command -v wg >/dev/null || die "wg not found (Debian package wireguard-tools)"
	[ -z "$(run_namespaces)" ] || die "namespaces of run $ID already exist (topology.sh down --id $ID)"
	[ ! -e "$STATE_BASE/$ID" ] || die "state of run $ID already exists in $STATE_BASE/$ID"
	case $WG_MODE in
	kernel) WG=kernel ;;
	userspace) WG=userspace ;;
	auto) if wg_kernel_ok; then WG=kernel; else WG=userspace; fi ;;
	*) die "TAILPOST_WG=$WG_MODE: want auto, kernel or userspace" ;;
	esac
	if [ "$WG" = userspace ]; then
		command -v wireguard-go >/dev/null ||
			die "no WireGuard: the kernel cannot create a wireguard link and wireguard-go is not installed (apt-get install wireguard-go)"
		[ -c /dev/net/tun ] || die "wireguard-go needs /dev/net/tun"
		mkdir -p "$WG_SOCK_DIR"
	fi
	mkdir -p "$STATE_BASE"
	mkdir -m 700 "$STATE_BASE/$ID"
	: >"$STATE_BASE/$ID/pids"
	# From here on a failure removes whatever was built.
	trap on_up_exit EXIT
	trap 'exit 130' INT TERM

	for h in $HOSTS sw; do
		ip netns add "$(ns "$h")"
		ip -n "$(ns "$h")" link set lo up
		# No router anywhere but where we say so.
		in_ns "$h" sysctl -q -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
	done
	ip -n "$(ns sw)" link add pub type bridge
	ip -n "$(ns sw)" link add lan type bridge
	ip -n "$(ns sw)" link set pub up
	ip -n "$(ns sw)" link set lan up

	wire client eth0 pub client
	wire edge eth0 pub edge-pub
	wire edge eth1 lan edge-lan
	wire mailbox eth0 lan mailbox
	wire relay eth0 lan relay

	ip -n "$(ns client)" addr add 198.51.100.10/24 dev eth0
	ip -n "$(ns client)" addr add 2001:db8:51::10/64 dev eth0 nodad
	ip -n "$(ns client)" route add default via 198.51.100.1
	ip -n "$(ns client)" -6 route add default via 2001:db8:51::1
	ip -n "$(ns edge)" addr add 198.51.100.1/24 dev eth0
	ip -n "$(ns edge)" addr add 2001:db8:51::1/64 dev eth0 nodad
	for h in $WG_HOSTS; do
		if [ "$h" = edge ]; then n=eth1; else n=eth0; fi
		ip -n "$(ns "$h")" addr add "$(lan4 "$h")/24" dev $n
	done

	# WireGuard: a key pair per host, a full mesh like a tailnet's.
	for h in $WG_HOSTS; do
		(umask 077 && wg genkey >"$STATE_BASE/$ID/$h.key")
		wg pubkey <"$STATE_BASE/$ID/$h.key" >"$STATE_BASE/$ID/$h.pub"
		wg_create "$h"
	done
	for h in $WG_HOSTS; do
		i=$(wgname "$h")
		in_ns "$h" wg set "$i" private-key "$STATE_BASE/$ID/$h.key" listen-port $WG_PORT
		for p in $WG_HOSTS; do
			[ "$p" = "$h" ] && continue
			in_ns "$h" wg set "$i" peer "$(cat "$STATE_BASE/$ID/$p.pub")" \
				allowed-ips "$(tun4 "$p")/32,$(tun6 "$p")/128" \
				endpoint "$(lan4 "$p"):$WG_PORT"
		done
		ip -n "$(ns "$h")" addr add "$(tun4 "$h")/32" dev "$i"
		ip -n "$(ns "$h")" addr add "$(tun6 "$h")/128" dev "$i" nodad
		ip -n "$(ns "$h")" link set "$i" up
		ip -n "$(ns "$h")" route add 100.64.0.0/10 dev "$i"
		ip -n "$(ns "$h")" -6 route add fd7a:115c:a1e0::/48 dev "$i"
	done

	# Prove each tunnel pair has completed a handshake (5 s at most).
	for pair in edge:mailbox edge:relay mailbox:relay; do
		h=${pair%:*}
		p=${pair#*:}
		i=0
		until handshaked "$h" "$p"; do
			i=$((i + 1))
			[ $i -le 10 ] || die "no WireGuard handshake between $h and $p"
			poke "$h" "$(tun4 "$p")"
		done
	done

	{
		echo "TAILPOST_NETNS_ID=$ID"
		echo "TAILPOST_NETNS_WG=$WG"
		for h in $HOSTS; do
			echo "TAILPOST_NETNS_NS_$(echo "$h" | tr "[:lower:]" "[:upper:]")=$(ns "$h")"
		done
		echo "TAILPOST_NETNS_NS_SW=$(ns sw)"
		echo "TAILPOST_NETNS_CLIENT_IP=198.51.100.10"
		echo "TAILPOST_NETNS_CLIENT_IP6=2001:db8:51::10"
		echo "TAILPOST_NETNS_EDGE_PUBLIC_IP=198.51.100.1"
		echo "TAILPOST_NETNS_EDGE_PUBLIC_IP6=2001:db8:51::1"
		for h in $WG_HOSTS; do
			H=$(echo "$h" | tr "[:lower:]" "[:upper:]")
			echo "TAILPOST_NETNS_${H}_TAILNET_IP=$(tun4 "$h")"
			echo "TAILPOST_NETNS_${H}_TAILNET_IP6=$(tun6 "$h")"
			echo "TAILPOST_NETNS_${H}_UNDERLAY_IP=$(lan4 "$h")"
			echo "TAILPOST_NETNS_${H}_WG_IFACE=$(wgname "$h")"
		done
	} >"$STATE_BASE/$ID/env"
	trap - EXIT INT TERM
	cat "$STATE_BASE/$ID/env"
	log "run $ID is up ($WG WireGuard); tear down with: $0 down --id $ID"
}

# --- main --------------------------------------------------------------------

[ $# -ge 1 ] || usage
cmd=$1
shift
ID=${TAILPOST_NETNS_ID:-}
if [ "${1:-}" = "--id" ]; then
	[ $# -ge 2 ] || usage
	ID=$2
	shift 2
elif [[ ${1:-} == --id=* ]]; then
	ID=${1#--id=}
	shift
fi

case $cmd in
up)
	[ $# = 0 ] || usage
	need_root
	[ -n "$ID" ] || ID=tp$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	check_id "$ID"
	do_up
	;;
down)
	[ $# = 0 ] || usage
	need_root
	[ -n "$ID" ] || die "which run? --id ID or TAILPOST_NETNS_ID (topology.sh list)"
	check_id "$ID"
	do_down
	log "run $ID removed"
	;;
exec)
	[ $# -ge 2 ] || usage
	need_root
	[ -n "$ID" ] || die "which run? --id ID or TAILPOST_NETNS_ID"
	check_id "$ID"
	host=$1
	shift
	case " $HOSTS " in *" $host "*) ;; *) die "unknown host '$host' (one of: $HOSTS)" ;; esac
	exec ip netns exec "$(ns "$host")" "$@"
	;;
env)
	[ -n "$ID" ] || die "which run? --id ID or TAILPOST_NETNS_ID"
	check_id "$ID"
	cat "$STATE_BASE/$ID/env"
	;;
list)
	{
		ls "$STATE_BASE" 2>/dev/null || true
		ip netns list 2>/dev/null | awk '{print $1}' |
			sed -nE 's/^([a-z][a-z0-9]{1,11})-(client|edge|mailbox|relay|sw)$/\1/p'
	} | sort -u
	;;
-h | --help | help) usage ;;
*) usage ;;
esac
