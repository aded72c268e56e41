/*
 * mailbox/main.c -- tailpost-mailbox: everything lives in libmailbox
 * (mailbox/cli.c) so that it links into the tests.
 */
#include "mailbox/cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
