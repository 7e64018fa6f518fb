/*
 * notify.h - telling the service manager what nettcpd is doing
 * (sd_notify(3): READY=1 once it serves, RELOADING=1 for a SIGHUP,
 * STOPPING=1 when it drains), with a STATUS= line for systemctl status.
 * Built without libsystemd, or started without NOTIFY_SOCKET, it does
 * nothing.
 */
#ifndef NETTCPD_NOTIFY_H
#define NETTCPD_NOTIFY_H

/*
 * Send state ("READY=1", "RELOADING=1", "STOPPING=1") and STATUS= the
 * formatted text, in one message.
 */
void notify_state(const char *state, const char *status_fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
