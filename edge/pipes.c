/*
 * edge/pipes.c -- the pipe pool.
 *
 * Pipes are made non-blocking and close-on-exec (pipe2), and grown to the
 * configured size once at creation: a bigger pipe moves more bytes per
 * splice(2) pair, and its pages are only touched while data is in flight.
 * If F_SETPIPE_SZ is refused (an unprivileged user over
 * /proc/sys/fs/pipe-user-pages-soft) the pipe keeps its default size.
 */
#include "edge/pipes.h"

#include "shared/xmalloc.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

void edge_pipes_init(struct edge_pipes *p, size_t max, size_t want_size)
{
	p->free = max > 0 ? xcalloc(max, sizeof(*p->free)) : NULL;
	p->n = 0;
	p->max = max;
	p->want_size = want_size;
	p->created = p->live = 0;
}

void edge_pipes_free(struct edge_pipes *p)
{
	for (size_t i = 0; i < p->n; i++) {
		close(p->free[i].rd);
		close(p->free[i].wr);
	}
	free(p->free);
	p->free = NULL;
	p->n = p->max = 0;
}

int edge_pipes_get(struct edge_pipes *p, struct edge_pipe *out)
{
	int fds[2], sz;

	if (p->n > 0) {
		*out = p->free[--p->n];
		p->live++;
		return 0;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	if (p->want_size > 0)
		(void)fcntl(fds[1], F_SETPIPE_SZ, (int)p->want_size);
	sz = fcntl(fds[1], F_GETPIPE_SZ);
	out->rd = fds[0];
	out->wr = fds[1];
	out->cap = sz > 0 ? (size_t)sz : 65536;
	p->created++;
	p->live++;
	return 0;
}

void edge_pipes_put(struct edge_pipes *p, struct edge_pipe *pipe, int dirty)
{
	if (pipe->rd < 0)
		return;
	p->live--;
	if (!dirty && p->n < p->max) {
		p->free[p->n++] = *pipe;
	} else {
		close(pipe->rd);
		close(pipe->wr);
	}
	pipe->rd = pipe->wr = -1;
	pipe->cap = 0;
}
