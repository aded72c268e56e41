/*
 * mailbox/imap/listmatch.c -- wildcard matching by dynamic programming.
 *
 * cur[j] says "pattern[0..i) matches name[0..j)"; each pattern character
 * turns one row into the next.  "*" extends a match over any suffix,
 * "%" only while no delimiter is crossed.  Names and patterns are
 * bounded by the command line length, so the row is small.
 */
#include "mailbox/imap/listmatch.h"

#include "shared/xmalloc.h"

#include <stdlib.h>
#include <string.h>

bool imap_listmatch(const char *pattern, const char *name, char delim)
{
	size_t n = strlen(name);
	bool *cur = xcalloc(n + 1, sizeof(*cur));
	bool *nxt = xcalloc(n + 1, sizeof(*nxt));
	bool res;

	cur[0] = true;
	for (const char *p = pattern; *p; p++) {
		if (*p == '*' || *p == '%') {
			bool carry = false;

			for (size_t j = 0; j <= n; j++) {
				/* a wildcard continues a match over name[j-1]
				 * unless it is "%" meeting the delimiter */
				if (j > 0 && carry && (*p == '*' || name[j - 1] != delim))
					carry = true;
				else
					carry = cur[j];
				if (cur[j])
					carry = true;
				nxt[j] = carry;
			}
		} else {
			nxt[0] = false;
			for (size_t j = 1; j <= n; j++)
				nxt[j] = cur[j - 1] && name[j - 1] == *p;
		}
		{
			bool *t = cur;
			cur = nxt;
			nxt = t;
		}
	}
	res = cur[n];
	free(cur);
	free(nxt);
	return res;
}
