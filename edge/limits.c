/*
 * edge/limits.c -- token buckets and the per-source table.
 *
 * The bucket counts thousandths of a token so that a rate of a few tokens
 * per second refills smoothly with millisecond timestamps, and it is
 * refilled lazily when used: no timers, no per-source work while idle.
 *
 * The table is a chained hash keyed by the client IP (IPv4-mapped addresses
 * are already IPv4, shared/net.h), seeded at random so that the bucket a
 * source lands in cannot be predicted.  One mutex guards it: the critical
 * section is a lookup and two integer updates, far below the cost of the
 * accept(2) that precedes it.
 */
#include "edge/limits.h"

#include "shared/xmalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

void edge_bucket_init(struct edge_bucket *b, int64_t burst, uint64_t now_ms)
{
	b->milli = burst * 1000;
	b->last_ms = now_ms;
}

static void bucket_refill(struct edge_bucket *b, int64_t rate, int64_t burst, uint64_t now_ms)
{
	int64_t cap = burst * 1000;

	if (now_ms > b->last_ms) {
		uint64_t dt = now_ms - b->last_ms;
		/* rate tokens/s = rate thousandths per ms; cap dt so the product
		 * cannot overflow however long the bucket slept. */
		if (dt > 86400000ULL)
			dt = 86400000ULL;
		b->milli += (int64_t)dt * rate;
		if (b->milli > cap)
			b->milli = cap;
	}
	/* A clock that went backwards refills nothing but re-bases. */
	b->last_ms = now_ms;
}

bool edge_bucket_take(struct edge_bucket *b, int64_t rate, int64_t burst, uint64_t now_ms)
{
	bucket_refill(b, rate, burst, now_ms);
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

bool edge_bucket_full(const struct edge_bucket *b, int64_t rate, int64_t burst, uint64_t now_ms)
{
	struct edge_bucket tmp = *b;

	bucket_refill(&tmp, rate, burst, now_ms);
	return tmp.milli >= burst * 1000;
}

/* --- the table ---------------------------------------------------------- */

struct src_entry {
	struct src_entry *next;
	uint8_t family;
	uint8_t ip[16];
	int64_t conns;
	struct edge_bucket bucket;
	bool has_bucket;
};

struct edge_limits {
	pthread_mutex_t mu;
	struct src_entry **slots;
	size_t nslots; /* a power of two */
	size_t n;
	uint64_t seed;
};

#define LIMITS_INITIAL_SLOTS 64

struct edge_limits *edge_limits_new(void)
{
	struct edge_limits *t = xcalloc(1, sizeof(*t));

	pthread_mutex_init(&t->mu, NULL);
	t->nslots = LIMITS_INITIAL_SLOTS;
	t->slots = xcalloc(t->nslots, sizeof(*t->slots));
	if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed))
		t->seed = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ULL;
	return t;
}

void edge_limits_free(struct edge_limits **tp)
{
	struct edge_limits *t = *tp;

	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nslots; i++) {
		struct src_entry *e = t->slots[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->slots);
	pthread_mutex_destroy(&t->mu);
	free(t);
	*tp = NULL;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static bool key_of(const struct net_addr *a, uint8_t *family, uint8_t ip[16])
{
	size_t n;
	const uint8_t *p = net_addr_bytes(a, &n);

	if (p == NULL || n > 16)
		return false;
	memset(ip, 0, 16);
	memcpy(ip, p, n);
	*family = (uint8_t)(n == 4 ? 4 : 6);
	return true;
}

static size_t slot_of(const struct edge_limits *t, uint8_t family, const uint8_t ip[16])
{
	uint64_t a, b;

	memcpy(&a, ip, 8);
	memcpy(&b, ip + 8, 8);
	return (size_t)(mix(a ^ t->seed ^ mix(b ^ family)) & (t->nslots - 1));
}

static struct src_entry **find(struct edge_limits *t, uint8_t family, const uint8_t ip[16])
{
	struct src_entry **pp = &t->slots[slot_of(t, family, ip)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->family == family && memcmp((*pp)->ip, ip, 16) == 0)
			return pp;
	return pp;
}

static void grow(struct edge_limits *t)
{
	size_t old = t->nslots;
	struct src_entry **slots = t->slots;

	t->nslots = old * 2;
	t->slots = xcalloc(t->nslots, sizeof(*t->slots));
	for (size_t i = 0; i < old; i++) {
		struct src_entry *e = slots[i], *next;
		for (; e != NULL; e = next) {
			size_t s = slot_of(t, e->family, e->ip);
			next = e->next;
			e->next = t->slots[s];
			t->slots[s] = e;
		}
	}
	free(slots);
}

enum edge_limit_result edge_limits_acquire(struct edge_limits *t, const struct net_addr *src,
                                           int64_t max_conc, int64_t rate, int64_t burst,
                                           uint64_t now_ms)
{
	enum edge_limit_result r = EDGE_LIMIT_OK;
	struct src_entry **pp, *e;
	uint8_t family, ip[16];

	if (!key_of(src, &family, ip))
		return EDGE_LIMIT_OK;
	pthread_mutex_lock(&t->mu);
	pp = find(t, family, ip);
	e = *pp;
	if (e == NULL) {
		e = xcalloc(1, sizeof(*e));
		e->family = family;
		memcpy(e->ip, ip, 16);
		*pp = e;
		t->n++;
	}
	if (max_conc > 0 && e->conns >= max_conc) {
		r = EDGE_LIMIT_CONNECTIONS;
		goto out;
	}
	if (rate > 0) {
		if (!e->has_bucket) {
			edge_bucket_init(&e->bucket, burst, now_ms);
			e->has_bucket = true;
		}
		if (!edge_bucket_take(&e->bucket, rate, burst, now_ms)) {
			r = EDGE_LIMIT_RATE;
			goto out;
		}
	}
	e->conns++;
out:
	/* A refused first contact leaves no entry behind unless it has a
	 * bucket to remember. */
	if (e->conns == 0 && !e->has_bucket) {
		*find(t, family, ip) = e->next;
		free(e);
		t->n--;
	} else if (t->n > t->nslots) {
		grow(t);
	}
	pthread_mutex_unlock(&t->mu);
	return r;
}

void edge_limits_release(struct edge_limits *t, const struct net_addr *src)
{
	struct src_entry **pp, *e;
	uint8_t family, ip[16];

	if (!key_of(src, &family, ip))
		return;
	pthread_mutex_lock(&t->mu);
	pp = find(t, family, ip);
	e = *pp;
	if (e != NULL && e->conns > 0) {
		e->conns--;
		if (e->conns == 0 && !e->has_bucket) {
			*pp = e->next;
			free(e);
			t->n--;
		}
	}
	pthread_mutex_unlock(&t->mu);
}

void edge_limits_sweep(struct edge_limits *t, int64_t rate, int64_t burst, uint64_t now_ms)
{
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->nslots; i++) {
		struct src_entry **pp = &t->slots[i];
		while (*pp != NULL) {
			struct src_entry *e = *pp;
			if (e->conns == 0 && (!e->has_bucket || rate <= 0 ||
			                      edge_bucket_full(&e->bucket, rate, burst, now_ms))) {
				*pp = e->next;
				free(e);
				t->n--;
				continue;
			}
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&t->mu);
}

size_t edge_limits_size(struct edge_limits *t)
{
	size_t n;

	pthread_mutex_lock(&t->mu);
	n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}

int64_t edge_limits_count(struct edge_limits *t, const struct net_addr *src)
{
	struct src_entry *e;
	uint8_t family, ip[16];
	int64_t n = 0;

	if (!key_of(src, &family, ip))
		return 0;
	pthread_mutex_lock(&t->mu);
	e = *find(t, family, ip);
	if (e != NULL)
		n = e->conns;
	pthread_mutex_unlock(&t->mu);
	return n;
}

const char *edge_limit_result_name(enum edge_limit_result r)
{
	switch (r) {
	case EDGE_LIMIT_OK:
		return "ok";
	case EDGE_LIMIT_CONNECTIONS:
		return "per_source_connections";
	case EDGE_LIMIT_RATE:
		return "per_source_rate";
	}
	return "?";
}
