/*
 * edge/main.c -- tailpost-edge: everything lives in libedge (edge/edge.c)
 * so that it links into the tests.
 */
#include "edge/edge.h"

int main(int argc, char **argv)
{
	return edge_main(argc, argv);
}
