/*
 * mailbox/cli.h -- the tailpost-mailbox command line.
 *
 *   tailpost-mailbox [serve] [-c mailbox.yaml]
 *   tailpost-mailbox check   [-c FILE] [--json]
 *   tailpost-mailbox migrate [-c FILE] [--json]
 *   tailpost-mailbox domain  add NAME | del NAME [--force] | list
 *   tailpost-mailbox account add LOGIN [--role user|admin] [--quota BYTES] [--hash]
 *                            | del LOGIN | list | passwd LOGIN [--hash]
 *   tailpost-mailbox alias   add ADDRESS TARGET... | del ADDRESS | list [DOMAIN]
 *   tailpost-mailbox token   add NAME | del NAME | list
 *   tailpost-mailbox gc      [--grace DURATION] [--batch N]   (mailbox/cli_gc.c)
 *
 * Passwords (and with --hash, ready-made hashes) are read from stdin, or
 * prompted for without echo when stdin is a terminal: never from argv,
 * which other users can read in /proc.  Output is for people; --json
 * prints one JSON document for scripts.  Exit status: 0 success, 1 a
 * failure (store, directory), 2 a usage or configuration error.
 */
#ifndef MAILBOX_CLI_H
#define MAILBOX_CLI_H

#include <stdbool.h>

/* Run the command line; returns the exit status. */
int cli_main(int argc, char **argv);

/* True if the subcommand word of argv is "gc" (it has options of its own,
 * so cli_main hands the whole argv to cli_gc_main before parsing). */
bool cli_gc_wanted(int argc, char **argv);
/* `gc`: remove unreferenced blobs now (mailbox/cli_gc.c); exit status. */
int cli_gc_main(int argc, char **argv);

#endif
