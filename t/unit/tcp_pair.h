/*
 * tcp_pair.h - for the unit tests that need the kernel's TCP (the pump's
 * partial writes, the fast path's sockmap): a connected pair of loopback
 * sockets.
 */
#ifndef NETTCPD_T_TCP_PAIR_H
#define NETTCPD_T_TCP_PAIR_H

#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

/* fds[0] connected to fds[1], Nagle off (each write its own segment),
 * non-blocking if asked. */
static inline void
tcp_pair(int fds[2], int nonblocking)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	ck_assert_int_ge(lfd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(lfd, 1), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fds[0], (struct sockaddr *)&sin, sizeof(sin)), 0);
	fds[1] = accept(lfd, NULL, NULL);
	ck_assert_int_ge(fds[1], 0);
	close(lfd);
	for (int i = 0; i < 2; i++) {
		if (nonblocking)
			ck_assert_int_eq(fcntl(fds[i], F_SETFL, O_NONBLOCK), 0);
		(void)setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
}

#endif
