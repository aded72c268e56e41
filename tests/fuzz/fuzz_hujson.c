/*
 * tests/fuzz/fuzz_hujson.c -- round trip and formatter properties of the
 * HuJSON parser (acl/hujson*.c).
 *
 * For every input the parser accepts:
 *   - pack(parse(x)) == x, byte for byte (the whole point of the tree);
 *   - the formatted text parses again, means the same, and formatting it
 *     again changes nothing (hujson's Format is idempotent);
 *   - a deep clone packs identically.
 * Rejected inputs must report an error offset inside the input.
 */
#include "acl/hujson.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hujson_value v, c, f;
	struct hujson_error e;
	const char *in = (const char *)data;
	char *out, *cl, *fmt1, *fmt2;
	size_t len, clen, flen1, flen2;

	if (hujson_parse(in, size, &v, &e) != HUJSON_OK) {
		if (e.off > size || e.line < 1 || e.col < 1)
			abort();
		return 0;
	}
	out = hujson_pack_str(&v, &len);
	if (len != size || memcmp(out, in, size) != 0)
		abort();
	hujson_clone(&c, &v);
	cl = hujson_pack_str(&c, &clen);
	if (clen != size || memcmp(cl, in, size) != 0)
		abort();
	hujson_format(&v);
	fmt1 = hujson_pack_str(&v, &flen1);
	if (hujson_parse(fmt1, flen1, &f, &e) != HUJSON_OK)
		abort();
	if (!hujson_equal(&f, &c))
		abort();
	hujson_format(&f);
	fmt2 = hujson_pack_str(&f, &flen2);
	if (flen1 != flen2 || memcmp(fmt1, fmt2, flen1) != 0)
		abort();
	free(out);
	free(cl);
	free(fmt1);
	free(fmt2);
	hujson_free(&v);
	hujson_free(&c);
	hujson_free(&f);
	return 0;
}
