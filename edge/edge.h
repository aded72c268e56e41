/*
 * edge/edge.h -- the tailpost-edge program: command line and lifecycle.
 *
 *   tailpost-edge [-c FILE] [--check] [--version]
 *
 * The main thread loads the config, builds the first generation (binds
 * every listener, resolves upstreams), starts the admin endpoint, drops
 * privileges, starts the workers and then runs its own loop for signals,
 * health checks, the admin endpoint and housekeeping:
 *  - SIGHUP: load and validate the file again; on any error keep running
 *    on the old configuration and log every error.  Otherwise build a new
 *    generation (new addresses bound, names resolved), hand it to every
 *    worker, and once all have switched retire the old one (its sockets
 *    that the new one does not use are closed).  Established connections
 *    are untouched.
 *  - SIGTERM/SIGINT: stop accepting and close the listening sockets, let
 *    connections finish for up to shutdown_grace, then close what is left
 *    and exit 0.  A second signal exits at once.
 */
#ifndef EDGE_EDGE_H
#define EDGE_EDGE_H

#define EDGE_DEFAULT_CONFIG "/etc/tailpost/edge.yaml"

/* Run the program; returns the process exit status. */
int edge_main(int argc, char **argv);

#endif
