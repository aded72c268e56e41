/*
 * acl/cli.h -- the tailpost-acl command line.
 *
 *   tailpost-acl [--format text|json|github] COMMAND [ARGS]
 *
 *   fmt [-w | --check | --diff] FILE...
 *   check [--snippet [--against BASE]] [--no-tests] [--topology T] FILE
 *   test [--topology T] FILE
 *   query [--topology T] [--proto P] FILE SRC DST:PORT
 *   explain [--topology T] [--proto P] FILE SRC DST:PORT
 *   merge [--id ID] [-w | --check | --diff] [--on-conflict=MODE]
 *         [--topology T] [--no-tests] BASE SNIPPET
 *   merge --remove [--id ID] [-w | --check | --diff] BASE
 *   gen [--env FILE] [--syntax grants|acls] [--with-tests] [-o OUT]
 *
 * Exit codes are enum acl_exit (acl/diag.h).  main() only calls
 * acl_cli_main() so every command is reachable from tests.
 */
#ifndef ACL_CLI_H
#define ACL_CLI_H

/* Run the command line; returns the process exit code. */
int acl_cli_main(int argc, char **argv);

#endif
