/*
 * acl/main.c -- tailpost-acl: generate, check, merge and test the tailnet
 * policy that allows exactly tailpost's mail flows.  Everything lives in
 * acl/cli.c so it links into tests.
 */
#include "acl/cli.h"

int main(int argc, char **argv)
{
	return acl_cli_main(argc, argv);
}
