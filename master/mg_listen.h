/*
 * Listening sockets, owned by the master. A reload keeps the fd of every
 * listener whose address stays in the config, so no connection waiting in an
 * accept queue is lost; removed ones are closed once the new generation runs.
 */
#ifndef MG_LISTEN_H
#define MG_LISTEN_H

#include "mg_core.h"

/*
 * Returns an array of snap->nlisteners fds for |snap|: an fd already open for
 * the same address is reused, others are bound now. On failure logs the
 * reason with the listener's file:line, closes what it opened and returns
 * NULL (the caller keeps the running generation).
 */
int *mg_listen_open(const mg_snapshot_t *snap);

/* Closes every open socket that no fd array in |keep| (|nkeep| arrays, each
 * for its snapshot) uses any more. */
void mg_listen_close_unused(const mg_snapshot_t **snaps, int **fds,
                            unsigned n);

/* Closes every listening socket (stop). */
void mg_listen_close_all(void);

/* All listening fds the master holds (a worker closes those it does not
 * serve). Returns the count and points |*out| at them. */
unsigned mg_listen_all_fds(const int **out);

#endif /* MG_LISTEN_H */
