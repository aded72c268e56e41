/*
 * acl/diff.h -- unified diffs of two texts, for fmt --diff and merge --diff.
 *
 * Lines are compared exactly.  Common leading and trailing lines are cut
 * first; the middle is aligned by longest common subsequence (bounded: a
 * middle too large to align is shown as one removed and one added block).
 * The output is what `diff -u` prints, three lines of context.
 */
#ifndef ACL_DIFF_H
#define ACL_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Print the diff of a -> b to out; returns true if they differ. */
bool acl_diff_unified(FILE *out, const char *aname, const char *a, size_t alen, const char *bname,
                      const char *b, size_t blen);

#endif
