/*
 * Readiness for a service manager: the sd_notify(3) datagram protocol,
 * spoken directly (a line to the unix socket in $NOTIFY_SOCKET), so that
 * Type=notify works without linking libsystemd. Without $NOTIFY_SOCKET
 * every call does nothing.
 */
#ifndef MG_NOTIFY_H
#define MG_NOTIFY_H

/* Reads and forgets $NOTIFY_SOCKET, so that no child inherits it. Master,
 * once, before forking. */
void mg_notify_init(void);

/* Sends |state| ("READY=1\nSTATUS=..."); failures are logged once. */
void mg_notify(const char *state);

#endif /* MG_NOTIFY_H */
