/*
 * tests/unit/test_edge_conn.c -- the per-connection memory budget and the
 * pipe pool.
 */
#include "tests/unit/unit.h"

#include "edge/conn.h"
#include "edge/pipes.h"

#include <fcntl.h>
#include <unistd.h>

/* An idle connection is this struct plus libev's per-fd entries; the
 * budget is 2 KB per idle connection, measured (edge/README.md). */
UNIT_TEST(edge_conn_struct_budget)
{
	CHECK(edge_conn_size() <= 512);
}

UNIT_TEST(edge_pipes_pool)
{
	struct edge_pipes p;
	struct edge_pipe a, b, c;
	int rd;

	edge_pipes_init(&p, 1, 65536);
	CHECK_INT(edge_pipes_get(&p, &a), 0);
	CHECK(a.rd >= 0 && a.wr >= 0);
	CHECK(a.cap >= 4096);
	CHECK(fcntl(a.rd, F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(a.wr, F_GETFD) & FD_CLOEXEC);
	CHECK_INT(edge_pipes_get(&p, &b), 0);
	CHECK_INT(p.live, 2);
	rd = a.rd;
	/* a clean pipe goes back to the pool and comes out again */
	edge_pipes_put(&p, &a, 0);
	CHECK_INT(a.rd, -1);
	CHECK_INT(p.n, 1);
	/* the pool holds one: the second clean pipe is closed */
	edge_pipes_put(&p, &b, 0);
	CHECK_INT(p.n, 1);
	CHECK_INT(edge_pipes_get(&p, &c), 0);
	CHECK_INT(c.rd, rd);
	/* a pipe with bytes in it is never reused */
	CHECK_INT(write(c.wr, "x", 1), 1);
	edge_pipes_put(&p, &c, 1);
	CHECK_INT(p.n, 0);
	CHECK(fcntl(rd, F_GETFD) < 0);
	CHECK_INT(p.live, 0);
	edge_pipes_free(&p);
}
