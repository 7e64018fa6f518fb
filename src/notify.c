/*
 * notify.c - sd_notify(3) through libsystemd, when nettcpd is built with
 * it: the protocol stays libsystemd's, not a copy of it here.
 */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>

#ifdef HAVE_LIBSYSTEMD
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#endif

void
notify_state(const char *state, const char *status_fmt, ...)
{
#ifdef HAVE_LIBSYSTEMD
	char status[256];
	va_list ap;
	int rc;

	va_start(ap, status_fmt);
	vsnprintf(status, sizeof(status), status_fmt, ap);
	va_end(ap);
	/* 0: no NOTIFY_SOCKET, not started by a service manager. */
	if ((rc = sd_notifyf(0, "%s\nSTATUS=%s", state, status)) < 0)
		log_warn("cannot notify the service manager of %s: %s", state,
		    strerror(-rc));
#else
	(void)state;
	(void)status_fmt;
#endif
}
