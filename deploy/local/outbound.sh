# shellcheck shell=bash
# deploy/local/outbound.sh -- sourced by deploy/local/up before anything
# starts: the outbound route of the local stack's tailpost-mailbox, from the
# environment, checked here so that a bad setting stops `make run` at once.
# Sets ROUTE_YAML (the routes: entry for mailbox.sh), OUTBOUND_ROUTE (relay
# or mx, for stack.env) and OUTBOUND_DESC (for the banner).
# Uses the variables up defines (VAR, die).
#
# TAILPOST_SMARTHOST=host:port (or [v6]:port) relays every
# non-local message there (TLS from TAILPOST_SMARTHOST_TLS: starttls, or
# implicit for port 465; AUTH with TAILPOST_SMARTHOST_USER and
# TAILPOST_SMARTHOST_PASSWORD, which goes to var/local/secrets (mode 600)
# and is referenced as file: from the config; TAILPOST_SMARTHOST_CA for a
# private CA, TAILPOST_SMARTHOST_VERIFY=false to skip verification).
# Without it, mail goes straight to each domain's MX on port 25, which
# leaves this machine only if it can reach the internet on port 25.
if [ -n "${TAILPOST_SMARTHOST:-}" ]; then
	case "$TAILPOST_SMARTHOST" in
	\[*\]:*) SH_HOST=${TAILPOST_SMARTHOST%:*}; SH_HOST=${SH_HOST#[}; SH_HOST=${SH_HOST%]} ;;
	*:*:*) die "TAILPOST_SMARTHOST=$TAILPOST_SMARTHOST: write an IPv6 address as [addr]:port" ;;
	*:*) SH_HOST=${TAILPOST_SMARTHOST%:*} ;;
	*) die "TAILPOST_SMARTHOST=$TAILPOST_SMARTHOST: expected host:port (e.g. smtp.example.net:587)" ;;
	esac
	SH_PORT=${TAILPOST_SMARTHOST##*:}
	case "$SH_PORT" in
	'' | *[!0-9]*) die "TAILPOST_SMARTHOST=$TAILPOST_SMARTHOST: the port must be a number" ;;
	esac
	[ "$SH_PORT" -ge 1 ] && [ "$SH_PORT" -le 65535 ] ||
		die "TAILPOST_SMARTHOST=$TAILPOST_SMARTHOST: port out of range"
	[ -n "$SH_HOST" ] && [ "${SH_HOST//[\"\\ ]/}" = "$SH_HOST" ] ||
		die "TAILPOST_SMARTHOST=$TAILPOST_SMARTHOST: bad host name"
	SH_TLS=${TAILPOST_SMARTHOST_TLS:-}
	if [ -z "$SH_TLS" ]; then
		SH_TLS=starttls
		[ "$SH_PORT" != 465 ] || SH_TLS=implicit
	fi
	case "$SH_TLS" in
	implicit | starttls | opportunistic | none) ;;
	*) die "TAILPOST_SMARTHOST_TLS=$SH_TLS: expected implicit, starttls, opportunistic or none" ;;
	esac
	SH_VERIFY=${TAILPOST_SMARTHOST_VERIFY:-true}
	case "$SH_VERIFY" in
	true | false) ;;
	*) die "TAILPOST_SMARTHOST_VERIFY=$SH_VERIFY: expected true or false" ;;
	esac
	ROUTE_YAML="    - { name: smarthost, domains: [\"*\"], type: relay, host: \"$SH_HOST\", port: $SH_PORT, tls: $SH_TLS"
	case "$SH_TLS" in implicit | starttls) ROUTE_YAML="$ROUTE_YAML, verify: $SH_VERIFY" ;; esac
	if [ -n "${TAILPOST_SMARTHOST_CA:-}" ]; then
		[ -r "$TAILPOST_SMARTHOST_CA" ] || die "TAILPOST_SMARTHOST_CA=$TAILPOST_SMARTHOST_CA: not readable"
		ROUTE_YAML="$ROUTE_YAML, ca_file: \"$TAILPOST_SMARTHOST_CA\""
	fi
	OUTBOUND_DESC="every message to another domain is relayed to $TAILPOST_SMARTHOST (tls $SH_TLS"
	if [ -n "${TAILPOST_SMARTHOST_USER:-}" ]; then
		[ -n "${TAILPOST_SMARTHOST_PASSWORD:-}" ] ||
			die "TAILPOST_SMARTHOST_USER is set: export TAILPOST_SMARTHOST_PASSWORD too"
		mkdir -p "$VAR/secrets"
		(umask 077 && printf '%s\n' "$TAILPOST_SMARTHOST_PASSWORD" > "$VAR/secrets/smarthost-password")
		ROUTE_YAML="$ROUTE_YAML, auth: { user: \"$TAILPOST_SMARTHOST_USER\", password: \"file:$VAR/secrets/smarthost-password\" }"
		OUTBOUND_DESC="$OUTBOUND_DESC, AUTH as $TAILPOST_SMARTHOST_USER"
	else
		rm -f "$VAR/secrets/smarthost-password"
	fi
	ROUTE_YAML="$ROUTE_YAML }"
	OUTBOUND_DESC="$OUTBOUND_DESC)"
	OUTBOUND_ROUTE=relay
else
	rm -f "$VAR/secrets/smarthost-password"
	ROUTE_YAML='    - { name: internet, domains: ["*"], type: mx }'
	OUTBOUND_DESC="mail to other domains goes straight to their MX hosts on port 25: it
                leaves only if this machine can reach the internet on port 25 (many
                home and cloud networks block it; undelivered mail is retried, then
                bounced after 5 days).  To relay through a smarthost instead:
                  TAILPOST_SMARTHOST=smtp.example.net:587 TAILPOST_SMARTHOST_USER=me \\
                  TAILPOST_SMARTHOST_PASSWORD=... make run"
	OUTBOUND_ROUTE="mx"
fi
