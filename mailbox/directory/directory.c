/*
 * mailbox/directory/directory.c -- names and roles shared by the
 * directory's administration functions and lookups (see directory.h).
 *
 * Pure: no database here.  Addresses are lower-cased as a whole (RFC 5321
 * 2.4 allows case-sensitive local parts, but no deployment our operators
 * meet relies on it, and one rule everywhere beats surprises).  Domains
 * are checked as LDH host names (RFC 1035 2.3.1 as relaxed by RFC 1123
 * 2.1); internationalised domains must be given in A-label form.
 */
#include "mailbox/directory/directory.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

const char *dir_role_name(enum dir_role r)
{
	return r == DIR_ROLE_ADMIN ? "admin" : "user";
}

int dir_role_parse(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "user") == 0)
		return DIR_ROLE_USER;
	if (strcmp(s, "admin") == 0)
		return DIR_ROLE_ADMIN;
	return -1;
}

static int domain_check(const char *d, size_t n, const char **errstr_r)
{
	size_t label = 0;

	if (n == 0) {
		*errstr_r = "empty domain";
		return -1;
	}
	if (n > 253) {
		*errstr_r = "domain longer than 253 bytes";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0 || d[i - 1] == '-') {
				*errstr_r = "empty domain label or label ending in '-'";
				return -1;
			}
			label = 0;
			continue;
		}
		if (!(isalnum((unsigned char)c) || c == '-' || c == '_') ||
		    (unsigned char)c >= 0x80) {
			*errstr_r =
			        "domain must be letters, digits, '-' and '.' (IDNs as A-labels)";
			return -1;
		}
		if (label == 0 && c == '-') {
			*errstr_r = "domain label starting with '-'";
			return -1;
		}
		if (++label > 63) {
			*errstr_r = "domain label longer than 63 bytes";
			return -1;
		}
	}
	if (label == 0) {
		*errstr_r = "domain ends with '.'";
		return -1;
	}
	return 0;
}

static void lower_copy(const char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = '\0';
}

int dir_domain_normalize(const char *in, char *out, size_t outsz, const char **errstr_r)
{
	size_t n = in != NULL ? strlen(in) : 0;

	if (domain_check(in != NULL ? in : "", n, errstr_r) < 0)
		return -1;
	if (n >= outsz) {
		*errstr_r = "domain too long";
		return -1;
	}
	lower_copy(in, n, out);
	return 0;
}

int dir_address_normalize(const char *in, bool allow_catchall, char *out, size_t outsz,
                          const char **errstr_r)
{
	const char *at;
	size_t n, local;

	if (in == NULL || in[0] == '\0') {
		*errstr_r = "empty address";
		return -1;
	}
	n = strlen(in);
	/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including < >,
	 * so an address is at most 254 */
	if (n > 254) {
		*errstr_r = "address longer than 254 bytes";
		return -1;
	}
	at = strrchr(in, '@');
	if (at == NULL) {
		*errstr_r = "address without '@'";
		return -1;
	}
	local = (size_t)(at - in);
	if (local == 0 && !allow_catchall) {
		*errstr_r = "empty local part";
		return -1;
	}
	if (local > 64) {
		/* RFC 5321 4.5.3.1.1 */
		*errstr_r = "local part longer than 64 bytes";
		return -1;
	}
	for (size_t i = 0; i < local; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c <= ' ' || c == 0x7f || c == '@' || c == '<' || c == '>' || c == '"' ||
		    c == '\\' || c == ',' || c == ';' || c == ':' || c == '(' || c == ')' ||
		    c == '[' || c == ']') {
			*errstr_r = "invalid character in the local part";
			return -1;
		}
	}
	if (domain_check(at + 1, strlen(at + 1), errstr_r) < 0)
		return -1;
	if (n >= outsz) {
		*errstr_r = "address too long";
		return -1;
	}
	lower_copy(in, n, out);
	return 0;
}
