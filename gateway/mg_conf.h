/*
 * Configuration: parse (libconfig: the main file, then each *.conf in the
 * conf.d beside it in lexical order), validate (every error collected,
 * each as "file:line: reason"), build one immutable snapshot.
 * `meshgate -t` and SIGHUP run exactly this.
 */
#ifndef MG_CONF_H
#define MG_CONF_H

#include <sys/socket.h>

#include "mg_core.h"

typedef struct mg_conf_errors_s {
    char **msgs;                  /* each "file:line: reason", malloc'ed */
    unsigned n;
} mg_conf_errors_t;

/*
 * Loads |path| and every *.conf file in the conf.d directory beside it.
 * Returns a snapshot, or NULL with every problem found in |errs| (which the
 * caller zeroes before and frees with mg_conf_errors_free() after). Expands
 * ${NAME} from the environment in string values.
 */
mg_snapshot_t *mg_conf_load(const char *path, mg_conf_errors_t *errs);

/* Flag bits by the names the configuration gives them: what the parser
 * reads is what /config_dump writes. */
typedef struct mg_conf_flag_s {
    const char *name;
    unsigned bit;
} mg_conf_flag_t;

extern const mg_conf_flag_t mg_conf_retry_on[6];      /* MG_RETRY_* */
extern const mg_conf_flag_t mg_conf_trace_formats[3]; /* MG_TRACE_PROP_* */

/* Frees the snapshot's arena. */
void mg_snapshot_free(mg_snapshot_t *snap);

void mg_conf_errors_free(mg_conf_errors_t *errs);

/* Parses "host:port", "[v6]:port" or "*:port" into |ss|. Host names are
 * not resolved (only literal addresses and "localhost"). MG_OK or MG_ERROR. */
int mg_conf_parse_addr(const char *text, struct sockaddr_storage *ss,
                       socklen_t *len);

#endif /* MG_CONF_H */
