/*
 * mailbox/server/echo.c -- the `test` role's line protocol (see echo.h).
 *
 * Stateless apart from the connection: each complete line is answered at
 * once, a partial line is left unconsumed for the connection layer to
 * keep (which is what exercises its command timer and input bound).
 */
#include "mailbox/server/echo.h"

#include "mailbox/server/abuse.h"
#include "mailbox/server/server.h"
#include "shared/tls.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *hostname(struct conn *c)
{
	return server_config(conn_server(c))->hostname;
}

static int echo_open(struct conn *c)
{
	return conn_printf(c, "220 %s tailpost-test listener=%s client=%s\r\n", hostname(c),
	                   conn_listener_name(c), conn_client_ip(c));
}

/* Answer one line; true when no further line may be read now (STARTTLS,
 * QUIT). */
static bool answer(struct conn *c, const char *line, size_t n)
{
	char a[NET_ADDRSTRLEN], b[NET_ADDRSTRLEN];
	struct tls_info ti;

	if (n >= 4 && (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0)) {
		conn_printf(c, "250-%s hello %s\r\n", hostname(c), conn_client_ip(c));
		if (conn_starttls_available(c))
			conn_printf(c, "250-STARTTLS\r\n");
		conn_printf(c, "250 OK\r\n");
	} else if (n == 8 && strncasecmp(line, "STARTTLS", 8) == 0) {
		if (!conn_starttls_available(c)) {
			conn_printf(c, "454 4.7.0 TLS not available\r\n");
			return false;
		}
		conn_printf(c, "220 2.0.0 ready to start TLS\r\n");
		conn_starttls(c);
		return true;
	} else if (n == 6 && strncasecmp(line, "CLIENT", 6) == 0) {
		bool tls = conn_tls_active(c, &ti);
		conn_printf(c, "250 client=%s peer=%s proxied=%s local=%s tls=%s\r\n",
		            net_addr_str(conn_client(c), a, sizeof(a)),
		            net_addr_str(conn_peer(c), b, sizeof(b)),
		            conn_via_proxy(c) ? "yes" : "no", conn_no_client(c) ? "yes" : "no",
		            tls ? ti.version : "no");
	} else if (n == 8 && strncasecmp(line, "AUTHFAIL", 8) == 0) {
		abuse_auth_failed(conn_server(c), conn_listener_name(c), conn_client(c),
		                  conn_no_client(c));
		conn_printf(c, "535 5.7.8 authentication failed (test)\r\n");
	} else if (n == 4 && strncasecmp(line, "QUIT", 4) == 0) {
		conn_printf(c, "221 2.0.0 bye\r\n");
		conn_close(c, CONN_CLOSE_DONE);
		return true;
	} else {
		conn_printf(c, "250 echo %.*s\r\n", (int)n, line);
	}
	return false;
}

static ssize_t echo_input(struct conn *c, const uint8_t *p, size_t n)
{
	size_t used = 0;

	while (used < n && !conn_out_high(c)) {
		const uint8_t *start = p + used;
		const uint8_t *nl = memchr(start, '\n', n - used);
		size_t len;

		if (nl == NULL) {
			if (n - used > ECHO_LINE_MAX)
				goto too_long;
			break;
		}
		len = (size_t)(nl - start);
		used += len + 1;
		if (len > 0 && start[len - 1] == '\r')
			len--;
		if (len > ECHO_LINE_MAX)
			goto too_long;
		/* STARTTLS and QUIT end the batch: what follows STARTTLS is
		 * discarded by the connection (RFC 3207 6). */
		if (answer(c, (const char *)start, len))
			break;
	}
	return (ssize_t)used;
too_long:
	conn_printf(c, "500 5.5.2 line too long\r\n");
	conn_close(c, CONN_CLOSE_PROTOCOL);
	return (ssize_t)n;
}

static void echo_timeout(struct conn *c)
{
	conn_printf(c, "421 4.4.2 %s timeout\r\n", hostname(c));
	conn_close(c, CONN_CLOSE_TIMEOUT);
}

static void echo_shutdown(struct conn *c)
{
	conn_printf(c, "421 4.3.2 %s shutting down\r\n", hostname(c));
	conn_close(c, CONN_CLOSE_SHUTDOWN);
}

const struct conn_proto echo_proto = {
        .name = "test",
        .on_open = echo_open,
        .on_input = echo_input,
        .on_timeout = echo_timeout,
        .on_shutdown = echo_shutdown,
};
