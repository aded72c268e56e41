/*
 * acl/diag.c -- collecting and printing diagnostics.
 *
 * GitHub workflow commands need '%', CR and LF escaped in the message and,
 * in property values, ':' and ',' too (the runner's own escaping rules).
 */
#include "acl/diag.h"
#include "shared/xmalloc.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void acl_diags_init(struct acl_diags *d)
{
	memset(d, 0, sizeof(*d));
}

void acl_diags_free(struct acl_diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	free(d->v);
	memset(d, 0, sizeof(*d));
}

void acl_diag_add(struct acl_diags *d, enum acl_severity sev, const char *file, int line, int col,
                  const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (msg == NULL)
		msg = xstrdup("(out of memory formatting message)");
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->v = xreallocarray(d->v, d->cap, sizeof(*d->v));
	}
	d->v[d->n].file = file ? xstrdup(file) : NULL;
	d->v[d->n].line = line;
	d->v[d->n].col = col;
	d->v[d->n].sev = sev;
	d->v[d->n].msg = msg;
	d->n++;
	if (sev == ACL_SEV_ERROR)
		d->nerrors++;
}

int acl_format_parse(const char *s)
{
	if (strcmp(s, "text") == 0)
		return ACL_FMT_TEXT;
	if (strcmp(s, "json") == 0)
		return ACL_FMT_JSON;
	if (strcmp(s, "github") == 0)
		return ACL_FMT_GITHUB;
	return -1;
}

static const char *sev_name(enum acl_severity s)
{
	switch (s) {
	case ACL_SEV_ERROR:
		return "error";
	case ACL_SEV_WARNING:
		return "warning";
	default:
		return "notice";
	}
}

static void gh_escape(FILE *out, const char *s, bool property)
{
	for (; *s; s++) {
		switch (*s) {
		case '%':
			fputs("%25", out);
			break;
		case '\r':
			fputs("%0D", out);
			break;
		case '\n':
			fputs("%0A", out);
			break;
		case ':':
			fputs(property ? "%3A" : ":", out);
			break;
		case ',':
			fputs(property ? "%2C" : ",", out);
			break;
		default:
			fputc(*s, out);
		}
	}
}

void acl_diags_print(const struct acl_diags *d, enum acl_format fmt, FILE *out)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct acl_diag *g = &d->v[i];

		if (fmt == ACL_FMT_GITHUB) {
			fprintf(out, "::%s", sev_name(g->sev));
			if (g->file != NULL) {
				fputs(" file=", out);
				gh_escape(out, g->file, true);
				if (g->line > 0)
					fprintf(out, ",line=%d", g->line);
				if (g->col > 0)
					fprintf(out, ",col=%d", g->col);
			}
			fputs("::", out);
			gh_escape(out, g->msg, false);
			fputc('\n', out);
			continue;
		}
		if (g->file != NULL) {
			fputs(g->file, out);
			if (g->line > 0)
				fprintf(out, ":%d:%d", g->line, g->col);
			fputs(": ", out);
		}
		if (g->sev != ACL_SEV_ERROR)
			fprintf(out, "%s: ", sev_name(g->sev));
		fprintf(out, "%s\n", g->msg);
	}
}

void acl_json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

void acl_diags_json(const struct acl_diags *d, FILE *out)
{
	fputc('[', out);
	for (size_t i = 0; i < d->n; i++) {
		const struct acl_diag *g = &d->v[i];

		fputs(i ? ",{" : "{", out);
		fputs("\"file\":", out);
		if (g->file)
			acl_json_str(out, g->file);
		else
			fputs("null", out);
		fprintf(out, ",\"line\":%d,\"col\":%d,\"severity\":\"%s\",\"message\":", g->line,
		        g->col, sev_name(g->sev));
		acl_json_str(out, g->msg);
		fputc('}', out);
	}
	fputc(']', out);
}
