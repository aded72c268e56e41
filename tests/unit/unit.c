/*
 * tests/unit/unit.c -- registry and main() for the unit tests.
 */
#include "tests/unit/unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct unit_case {
	const char *name;
	unit_fn *fn;
};

static struct unit_case *cases;
static size_t ncases, capcases;
static bool current_failed;

void unit_register(const char *name, unit_fn *fn)
{
	if (ncases == capcases) {
		capcases = capcases ? capcases * 2 : 64;
		cases = realloc(cases, capcases * sizeof(*cases));
		if (cases == NULL)
			abort();
	}
	cases[ncases].name = name;
	cases[ncases].fn = fn;
	ncases++;
}

void unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stdout, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	current_failed = true;
}

bool unit_failed(void)
{
	return current_failed;
}

static int case_cmp(const void *a, const void *b)
{
	const struct unit_case *x = a, *y = b;
	return strcmp(x->name, y->name);
}

int main(int argc, char **argv)
{
	size_t passed = 0, failed = 0;
	const char *filter = argc > 1 ? argv[1] : NULL;

	qsort(cases, ncases, sizeof(*cases), case_cmp);
	for (size_t i = 0; i < ncases; i++) {
		if (filter != NULL && strstr(cases[i].name, filter) == NULL)
			continue;
		current_failed = false;
		cases[i].fn();
		if (current_failed) {
			printf("FAIL %s\n", cases[i].name);
			failed++;
		} else {
			printf("ok   %s\n", cases[i].name);
			passed++;
		}
		fflush(stdout);
	}
	free(cases);
	printf("unit: %zu passed, %zu failed\n", passed, failed);
	return failed == 0 && passed > 0 ? 0 : 1;
}
