/*
 * mailbox/smtp/sasl.c -- base64 decoding and PLAIN splitting for AUTH.
 *
 * The decoder is strict on purpose: a client that sends broken base64 gets
 * "501 5.5.2" (RFC 4954 4) rather than a guess at what it meant, and no
 * credential bytes are ever interpreted from a malformed line.
 */
#include "mailbox/smtp/sasl.h"

#include <string.h>

static int b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int smtp_sasl_b64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t outsz,
                         size_t *out_len_r)
{
	size_t o = 0;

	if (len == 1 && in[0] == '=') {
		*out_len_r = 0;
		return 0;
	}
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		size_t pad = 0;

		for (size_t k = 0; k < 4; k++) {
			if (in[i + k] == '=') {
				/* padding only at the very end, at most two */
				if (i + 4 != len || k < 2)
					return -1;
				pad++;
				v[k] = 0;
				continue;
			}
			if (pad > 0)
				return -1;
			v[k] = b64_value(in[i + k]);
			if (v[k] < 0)
				return -1;
		}
		/* RFC 4648 3.5: the bits below the last character must be
		 * zero, so each message has one encoding. */
		if ((pad == 1 && (v[2] & 0x3)) || (pad == 2 && (v[1] & 0xf)))
			return -1;
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		size_t n = 3 - pad;
		if (outsz - o < n)
			return -1;
		out[o++] = (uint8_t)(w >> 16);
		if (n > 1)
			out[o++] = (uint8_t)(w >> 8);
		if (n > 2)
			out[o++] = (uint8_t)w;
	}
	*out_len_r = o;
	return 0;
}

int smtp_sasl_plain_split(uint8_t *msg, size_t len, const char **authzid_r, const char **authcid_r,
                          const char **passwd_r)
{
	uint8_t *nul1, *nul2;

	nul1 = memchr(msg, '\0', len);
	if (nul1 == NULL)
		return -1;
	nul2 = memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg));
	if (nul2 == NULL || memchr(nul2 + 1, '\0', len - (size_t)(nul2 + 1 - msg)) != NULL)
		return -1;
	if (nul2 == nul1 + 1 || nul2 + 1 == msg + len)
		return -1; /* RFC 4616 2: authcid and passwd are 1*SAFE */
	msg[len] = '\0';
	*authzid_r = (const char *)msg;
	*authcid_r = (const char *)(nul1 + 1);
	*passwd_r = (const char *)(nul2 + 1);
	return 0;
}
