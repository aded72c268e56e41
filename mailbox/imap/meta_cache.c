/*
 * mailbox/imap/meta_cache.c -- encoding of one cached metadata entry.
 *
 * Layout: "TPm1", have (4 octets), internaldate (8), size (8), then five
 * strings (blob, envelope, bodystructure, body, parts), each a 4-octet
 * length (0xffffffff: NULL) and its octets followed by a NUL, so decoded
 * strings point straight into the cached value.  Integers little-endian.
 */
#include "mailbox/imap/meta_cache.h"

#include "mailbox/imap/store_ops.h"

#include <stdio.h>
#include <string.h>

#define MAGIC    "TPm1"
#define NSTR     5
#define NULL_LEN UINT32_MAX

void imap_meta_key(char *key, size_t keysz, int64_t mailbox, uint32_t uid)
{
	snprintf(key, keysz, "meta/%lld/%u", (long long)mailbox, (unsigned)uid);
}

static void put_u64(struct buf *out, uint64_t v, int n)
{
	uint8_t b[8];

	for (int i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	buf_append(out, b, (size_t)n);
}

static uint64_t get_u64(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

void imap_meta_encode(const struct imap_meta_entry *e, struct buf *out)
{
	const char *s[NSTR] = {e->blob, e->envelope, e->bodystructure, e->body, e->parts};

	buf_append(out, MAGIC, 4);
	put_u64(out, e->have, 4);
	put_u64(out, (uint64_t)e->internaldate, 8);
	put_u64(out, e->size, 8);
	for (int i = 0; i < NSTR; i++) {
		size_t len = s[i] != NULL ? strlen(s[i]) : 0;

		if (s[i] == NULL || len >= NULL_LEN) {
			put_u64(out, NULL_LEN, 4);
			continue;
		}
		put_u64(out, len, 4);
		buf_append(out, s[i], len + 1);
	}
}

int imap_meta_decode(const uint8_t *p, size_t n, struct imap_meta_entry *e)
{
	const char **s[NSTR] = {&e->blob, &e->envelope, &e->bodystructure, &e->body, &e->parts};
	size_t off = 24;

	memset(e, 0, sizeof(*e));
	if (n < off || memcmp(p, MAGIC, 4) != 0)
		return -1;
	e->have = (unsigned)get_u64(p + 4, 4);
	e->internaldate = (int64_t)get_u64(p + 8, 8);
	e->size = get_u64(p + 16, 8);
	for (int i = 0; i < NSTR; i++) {
		uint64_t len;

		if (n - off < 4)
			return -1;
		len = get_u64(p + off, 4);
		off += 4;
		if (len == NULL_LEN)
			continue;
		if (n - off < len + 1 || p[off + len] != '\0' || memchr(p + off, '\0', len) != NULL)
			return -1;
		*s[i] = (const char *)(p + off);
		off += len + 1;
	}
	if (off != n || e->blob == NULL)
		return -1;
	return 0;
}

void imap_meta_merge(struct imap_meta_entry *into, const struct imap_meta_entry *add)
{
	into->internaldate = add->internaldate;
	into->size = add->size;
	if (add->blob != NULL)
		into->blob = add->blob;
	if (add->have & IMAP_META_ENVELOPE)
		into->envelope = add->envelope;
	if (add->have & IMAP_META_BODYSTRUCTURE)
		into->bodystructure = add->bodystructure;
	if (add->have & IMAP_META_BODY)
		into->body = add->body;
	if (add->have & (IMAP_META_PARTS | IMAP_META_HEADER))
		into->parts = add->parts;
	into->have |= add->have;
}
