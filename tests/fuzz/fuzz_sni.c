/*
 * tests/fuzz/fuzz_sni.c -- libFuzzer target for the SNI peek parser.
 *
 * Properties, checked with abort():
 *  - no input crashes or reads past its end (ASan);
 *  - an OK name is NUL-terminated, at most 253 bytes, lower-case host
 *    name characters only;
 *  - NEED_MORE always asks for more than it was given, and feeding that
 *    many bytes (when the input has them) makes progress;
 *  - streaming consistency: every prefix answers NEED_MORE or exactly what
 *    the whole input answers (same name), since the edge peeks a growing
 *    prefix of the same stream.
 * Prefixes are checked for inputs up to 4 KB so the run stays fast.
 */
#include "edge/sni.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static void check_name(const char *name)
{
	size_t n = strlen(name);

	REQUIRE(n >= 1 && n <= EDGE_SNI_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		REQUIRE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
	}
	REQUIRE(name[0] != '.' && name[n - 1] != '.');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[EDGE_SNI_NAME_MAX + 1], name2[EDGE_SNI_NAME_MAX + 1];
	size_t need = 0;
	enum edge_sni_status st;
	uint8_t *copy;

	/* An exact-size heap copy, so ASan sees any read past the end. */
	copy = malloc(size > 0 ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	st = edge_sni_parse(copy, size, name, sizeof(name), &need);
	if (st == EDGE_SNI_OK)
		check_name(name);
	if (st == EDGE_SNI_NEED_MORE)
		REQUIRE(need > size);
	if (size <= 4096) {
		for (size_t k = 0; k < size; k++) {
			size_t need2 = 0;
			enum edge_sni_status s2 =
			        edge_sni_parse(copy, k, name2, sizeof(name2), &need2);

			if (s2 == EDGE_SNI_NEED_MORE) {
				REQUIRE(need2 > k);
				if (need2 <= size) {
					size_t need3 = 0;
					enum edge_sni_status s3 = edge_sni_parse(
					        copy, need2, name2, sizeof(name2), &need3);
					REQUIRE(s3 != EDGE_SNI_NEED_MORE || need3 > need2);
				}
				continue;
			}
			REQUIRE(s2 == st);
			if (s2 == EDGE_SNI_OK)
				REQUIRE(strcmp(name, name2) == 0);
		}
	}
	free(copy);
	return 0;
}
