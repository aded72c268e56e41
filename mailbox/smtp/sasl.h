/*
 * mailbox/smtp/sasl.h -- the pure pieces of SMTP AUTH: base64 and PLAIN.
 *
 * RFC 4954 carries SASL (RFC 4422) messages as base64 (RFC 4648 4) on
 * command and continuation lines.  The session needs to decode them and to
 * split a PLAIN message (RFC 4616 2) into its three fields; both are here,
 * without I/O or allocation, so they can be tested and fuzzed alone.
 * Buffers that held credentials are the caller's to wipe.
 */
#ifndef MAILBOX_SMTP_SASL_H
#define MAILBOX_SMTP_SASL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Decode strict base64 (the RFC 4648 alphabet, padding required, no white
 * space) from in[0..len) into out (outsz bytes).  The single string "="
 * decodes to the empty message (RFC 4954 4).  Returns 0 with *out_len_r
 * set, or -1 if the input is not base64 or does not fit.
 */
int smtp_sasl_b64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t outsz,
                         size_t *out_len_r);

/*
 * Split a PLAIN message [authzid] NUL authcid NUL passwd held in
 * msg[0..len), where msg has room for one more byte, into three
 * NUL-terminated strings pointing into msg.  authcid and passwd must be
 * non-empty and no field may hold another NUL.  Returns 0, or -1 if the
 * message is malformed.
 */
int smtp_sasl_plain_split(uint8_t *msg, size_t len, const char **authzid_r, const char **authcid_r,
                          const char **passwd_r);

#endif
