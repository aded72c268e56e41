/*
 * edge/pipes.h -- a per-worker pool of pipes for splice(2).
 *
 * A connection borrows a pipe only while bytes sit in it (between the
 * splice from one socket and the splice to the other) and gives it back
 * empty, so an idle connection holds no pipe and a worker needs about as
 * many pipes as it has connections moving data at the same instant.  Not
 * thread-safe: each worker owns its pool.
 */
#ifndef EDGE_PIPES_H
#define EDGE_PIPES_H

#include <stddef.h>

struct edge_pipe {
	int rd, wr;
	size_t cap; /* capacity in bytes (F_GETPIPE_SZ) */
};

struct edge_pipes {
	struct edge_pipe *free; /* stack of empty pipes */
	size_t n, max;
	size_t want_size;
	size_t created, live; /* counters for metrics */
};

/* A pool keeping at most max empty pipes of want_size bytes each. */
void edge_pipes_init(struct edge_pipes *p, size_t max, size_t want_size);
/* Close every pooled pipe. */
void edge_pipes_free(struct edge_pipes *p);
/* An empty pipe (pooled or new); 0, or -1 with errno (EMFILE...). */
int edge_pipes_get(struct edge_pipes *p, struct edge_pipe *out);
/* Give back a pipe; dirty (holds bytes) pipes are closed, not pooled. */
void edge_pipes_put(struct edge_pipes *p, struct edge_pipe *pipe, int dirty);

#endif
