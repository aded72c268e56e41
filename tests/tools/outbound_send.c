/*
 * tests/tools/outbound_send.c -- send a file through the outbound
 * transport (mailbox/outbound/transport.h), for the integration tests that
 * prove the transport against a real Postfix before the queue engine uses
 * it.
 *
 *   outbound_send -c mailbox.yaml --from a@b --to x@y [--to ...]
 *                 [--repeat N] [--parallel] [--prefix TEXT] [--cancel-after-ms MS]
 *                 [--reconfigure] [--no-linger] [-v] FILE
 *
 * The route is the config's route for the first recipient's domain (none:
 * mx for that domain).  The file is sent N times (default 1), one after the
 * other (connection reuse applies), or all at once with --parallel;
 * --reconfigure calls outbound_transport_reconfigure() after each result
 * (as SIGHUP would), --cancel-after-ms cancels the send in flight.  Each
 * result is printed as
 *
 *   result MSG RCPT delivered|tempfail|permfail CODE ESC host=MX_HOST TEXT
 *
 * and at the end one line "stats connections=N reused=N tls=N delivered=N
 * tempfail=N permfail=N active=N" (after waiting for idle connections to be
 * closed unless --no-linger).  Exit 0 when every recipient was delivered, 1
 * otherwise, 2 on usage or config errors.
 */
#include "mailbox/config.h"
#include "mailbox/outbound/transport.h"
#include "shared/log.h"
#include "shared/xmalloc.h"

#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_RCPTS 64

struct run {
	struct ev_loop *loop;
	struct outbound_transport *t;
	struct outbound_job job;
	int repeat, started, done;
	bool parallel, all_ok, reconfigure;
	const struct mailbox_config *cfg;
	struct outbound_send *pending;
	ev_timer cancel_timer;
};

static void usage(void)
{
	fprintf(stderr, "usage: outbound_send -c CONFIG --from ADDR --to ADDR [--to ADDR...] "
	                "[--repeat N] [--parallel] [--prefix TEXT] [--cancel-after-ms MS] "
	                "[--reconfigure] [--no-linger] [-v] FILE\n");
	exit(2);
}

static const char *outcome_name(enum smtp_client_outcome o)
{
	switch (o) {
	case SMTP_CLIENT_DELIVERED:
		return "delivered";
	case SMTP_CLIENT_PERMFAIL:
		return "permfail";
	default:
		return "tempfail";
	}
}

static void start_one(struct run *r);

static void on_done(void *arg, const struct smtp_client_result *res, size_t n, const char *mx_host)
{
	struct run *r = arg;
	int id = ++r->done;

	r->pending = NULL;
	for (size_t i = 0; i < n; i++) {
		char text[1024];
		size_t k;

		snprintf(text, sizeof(text), "%s", res[i].text != NULL ? res[i].text : "");
		for (k = 0; text[k] != '\0'; k++)
			if (text[k] == '\n' || text[k] == '\r')
				text[k] = ' ';
		printf("result %d %s %s %d %s host=%s %s\n", id, r->job.msg.rcpts[i].addr,
		       outcome_name(res[i].outcome), res[i].code,
		       res[i].esc != NULL && res[i].esc[0] ? res[i].esc : "-",
		       mx_host != NULL ? mx_host : "-", text);
		if (res[i].outcome != SMTP_CLIENT_DELIVERED)
			r->all_ok = false;
	}
	fflush(stdout);
	if (r->reconfigure) /* as on SIGHUP: idle connections are closed */
		outbound_transport_reconfigure(r->t, r->cfg);
	if (!r->parallel && r->started < r->repeat)
		start_one(r);
	else if (r->done == r->repeat)
		ev_break(r->loop, EVBREAK_ONE);
}

static void start_one(struct run *r)
{
	r->started++;
	r->pending = outbound_transport_send(r->t, &r->job, on_done, r);
}

static void on_cancel(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct run *r = w->data;

	(void)revents;
	if (r->pending != NULL) {
		outbound_send_cancel(&r->pending);
		printf("cancelled\n");
		fflush(stdout);
		r->all_ok = false;
		ev_break(loop, EVBREAK_ONE);
	}
}

static void on_linger(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ONE);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"from", required_argument, NULL, 'f'},
	        {"to", required_argument, NULL, 't'},
	        {"repeat", required_argument, NULL, 'n'},
	        {"parallel", no_argument, NULL, 'p'},
	        {"prefix", required_argument, NULL, 'P'},
	        {"cancel-after-ms", required_argument, NULL, 'C'},
	        {"no-linger", no_argument, NULL, 'L'},
	        {"reconfigure", no_argument, NULL, 'R'},
	        {"verbose", no_argument, NULL, 'v'},
	        {NULL, 0, NULL, 0},
	};
	struct smtp_client_rcpt rcpts[MAX_RCPTS];
	struct mailbox_config cfg;
	struct conf_ctx ctx = {0};
	struct outbound_transport_stats st;
	struct run r = {.repeat = 1, .all_ok = true};
	const char *config = NULL, *from = NULL, *prefix = NULL, *domain;
	size_t nrcpts = 0;
	long cancel_ms = -1;
	bool linger = true;
	struct stat sb;
	int opt, fd;
	ev_timer linger_timer;

	log_init("outbound_send", LOG_L_WARN);
	signal(SIGPIPE, SIG_IGN); /* as serve does: a dropped peer is an error, not a signal */
	while ((opt = getopt_long(argc, argv, "c:v", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 't':
			if (nrcpts == MAX_RCPTS)
				usage();
			rcpts[nrcpts++] = (struct smtp_client_rcpt){.addr = optarg};
			break;
		case 'n':
			r.repeat = atoi(optarg);
			if (r.repeat < 1)
				usage();
			break;
		case 'p':
			r.parallel = true;
			break;
		case 'P':
			prefix = optarg;
			break;
		case 'C':
			cancel_ms = atol(optarg);
			break;
		case 'L':
			linger = false;
			break;
		case 'R':
			r.reconfigure = true;
			break;
		case 'v':
			log_set_level(LOG_L_DEBUG);
			break;
		default:
			usage();
		}
	}
	if (config == NULL || from == NULL || nrcpts == 0 || optind + 1 != argc)
		usage();
	if (mailbox_config_load(config, &cfg, &ctx) < 0) {
		conf_errors_print(&ctx, stderr);
		conf_ctx_free(&ctx);
		mailbox_config_free(&cfg);
		return 2;
	}
	conf_ctx_free(&ctx);
	log_set_level(cfg.log_level < LOG_L_INFO ? LOG_L_DEBUG : LOG_L_INFO);
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		perror(argv[optind]);
		return 2;
	}
	domain = strrchr(rcpts[0].addr, '@');
	if (domain == NULL) {
		fprintf(stderr, "recipient without a domain: %s\n", rcpts[0].addr);
		return 2;
	}
	domain++;

	r.cfg = &cfg;
	r.loop = ev_default_loop(0);
	r.t = outbound_transport_new(r.loop, &cfg);
	if (r.t == NULL)
		return 2;
	r.job.route = mailbox_route_for(&cfg, domain);
	r.job.domain = domain;
	r.job.msg.from = from;
	r.job.msg.rcpts = rcpts;
	r.job.msg.nrcpts = nrcpts;
	r.job.prefix = prefix;
	r.job.prefix_len = prefix != NULL ? strlen(prefix) : 0;
	r.job.fd = fd;
	r.job.offset = 0;
	r.job.length = (uint64_t)sb.st_size;
	r.job.msg.size = r.job.prefix_len + r.job.length;
	printf("route %s\n", r.job.route != NULL ? r.job.route->name : "(default mx)");
	fflush(stdout);
	if (r.parallel)
		for (int i = 0; i < r.repeat; i++)
			start_one(&r);
	else
		start_one(&r);
	if (cancel_ms >= 0) {
		ev_timer_init(&r.cancel_timer, on_cancel, (double)cancel_ms / 1000.0, 0.);
		r.cancel_timer.data = &r;
		ev_timer_start(r.loop, &r.cancel_timer);
	}
	ev_run(r.loop, 0);
	if (cancel_ms >= 0)
		ev_timer_stop(r.loop, &r.cancel_timer);
	if (linger) {
		/* let idle connections time out (QUIT) when reuse is short */
		ev_timer_init(&linger_timer, on_linger,
		              (double)cfg.outbound.connection_reuse_ms / 1000.0 + 0.5, 0.);
		ev_timer_start(r.loop, &linger_timer);
		ev_run(r.loop, 0);
		ev_timer_stop(r.loop, &linger_timer);
	}
	outbound_transport_stats(r.t, &st);
	printf("stats connections=%llu reused=%llu tls=%llu delivered=%llu tempfail=%llu "
	       "permfail=%llu active=%u\n",
	       (unsigned long long)st.connections, (unsigned long long)st.reused,
	       (unsigned long long)st.tls, (unsigned long long)st.delivered,
	       (unsigned long long)st.tempfail, (unsigned long long)st.permfail, st.active);
	outbound_transport_free(&r.t);
	close(fd);
	mailbox_config_free(&cfg);
	ev_loop_destroy(r.loop);
	return r.all_ok ? 0 : 1;
}
