/*
 * shared/fdio.h -- blocking file descriptor helpers.
 */
#ifndef SHARED_FDIO_H
#define SHARED_FDIO_H

#include <stddef.h>

/* write(2) all n octets of p, again after EINTR and short writes.  0, or
 * -1 with errno (EIO for a write that wrote nothing). */
int fd_write_all(int fd, const void *p, size_t n);

#endif
