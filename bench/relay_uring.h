/*
 * relay_uring.h - nmf-relay's uring mode (relay_uring.c): copy mode's
 * behaviour on one io_uring instead of epoll and recv()/send().
 */
#ifndef RELAY_URING_H
#define RELAY_URING_H

#include <netinet/in.h>

/* Sets up the ring with its flags and its provided-buffer ring: 0, or -1
 * where the mode cannot run here (built without liburing, a kernel that
 * refuses), having said why on stderr.  single: mode uring1, a single-shot
 * receive per direction instead of a multishot one (relay_uring.c). */
int relay_uring_setup(int single);

/* After relay_uring_setup: relays every connection accepted on lfd to
 * backend until an error of the ring itself, and returns 1 then, having
 * said why on stderr. */
int relay_uring_run(int lfd, const struct sockaddr_in *backend);

#endif
