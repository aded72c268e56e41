/*
 * tests/unit/unit.h -- a tiny table-free unit test harness.
 *
 * Every test file defines tests with UNIT_TEST(name) { ... }; a constructor
 * registers each one, and unit.c's main() runs them all (or those whose name
 * contains argv[1]) and closes with "unit: N passed, N failed".  A CHECK that
 * fails prints file:line and the expression, marks the test failed and
 * returns from it.
 */
#ifndef TESTS_UNIT_H
#define TESTS_UNIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <inttypes.h>

typedef void unit_fn(void);

void unit_register(const char *name, unit_fn *fn);
void unit_fail(const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
bool unit_failed(void);

#define UNIT_TEST(name)                                                                            \
	static void unit_test_##name(void);                                                        \
	__attribute__((constructor)) static void unit_reg_##name(void)                             \
	{                                                                                          \
		unit_register(#name, unit_test_##name);                                            \
	}                                                                                          \
	static void unit_test_##name(void)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                         \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define CHECK_MSG(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			unit_fail(__FILE__, __LINE__, __VA_ARGS__);                                \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                      \
		if (unit_a_ != unit_b_) {                                                          \
			unit_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, unit_a_,   \
			          unit_b_);                                                        \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *unit_a_ = (a), *unit_b_ = (b);                                         \
		if (unit_a_ == NULL || unit_b_ == NULL || strcmp(unit_a_, unit_b_) != 0) {         \
			unit_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,        \
			          unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)");     \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define CHECK_MEM(a, b, n)                                                                         \
	do {                                                                                       \
		if (memcmp((a), (b), (n)) != 0) {                                                  \
			unit_fail(__FILE__, __LINE__, "memcmp(%s, %s, %s) != 0", #a, #b, #n);      \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#endif
