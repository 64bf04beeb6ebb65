/*
 * TLS contexts built from the configuration (OpenSSL 3), and the session
 * ticket keys that every worker shares.
 *
 * A listener's SSL_CTX carries everything a handshake needs: certificates
 * chosen by SNI, ALPN, protocol versions, ciphers, client certificate
 * checks and tickets. The connection code only calls SSL_new() on it. Each
 * SSL_CTX is owned by the snapshot pool it was built in and freed with it.
 *
 * Errors while building are reported through a callback with the position
 * of the offending value (opaque here: mg_conf passes its settings), so the
 * configuration can say "file:line: reason" without this module knowing
 * libconfig.
 */
#ifndef MG_TLS_H
#define MG_TLS_H

#include <openssl/ssl.h>

#include "mg_core.h"

/* Reports |msg| about the configured value at |pos| (an opaque position
 * given with that value, NULL when there is none). */
typedef void (*mg_tls_error_cb)(void *data, const void *pos, const char *msg);

/* One certificate of a listener: a PEM chain (leaf first) and its key. */
typedef struct mg_tls_cert_conf_s {
    const char *cert;
    const void *cert_pos;
    const char *key;
    const void *key_pos;
} mg_tls_cert_conf_t;

/* Settings shared by servers and clients. NULL or 0 counts mean the
 * default; each value has the position used in its error messages. */
typedef struct mg_tls_common_conf_s {
    const char *const *protocols; /* "TLSv1.2", "TLSv1.3"; default both */
    unsigned nprotocols;
    const void *protocols_pos;
    const char *ciphers;          /* TLS 1.2 cipher list; default
                                   * MG_TLS_DEFAULT_CIPHERS */
    const void *ciphers_pos;
    const char *ciphersuites;     /* TLS 1.3 suites; default OpenSSL's */
    const void *ciphersuites_pos;
} mg_tls_common_conf_t;

#define MG_TLS_DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

typedef struct mg_tls_server_conf_s {
    mg_tls_common_conf_t common;
    const char *name;             /* the listener: part of the session id
                                   * context, so sessions stay with it */
    const mg_tls_cert_conf_t *certs; /* >= 1; certs[0] is the default */
    unsigned ncerts;
    const char *const *alpn;      /* "h2", "http/1.1" in preference order;
                                   * none: no ALPN */
    unsigned nalpn;
    const void *alpn_pos;
    const char *client_ca;        /* PEM file, NULL = none */
    const void *client_ca_pos;
    unsigned verify;              /* MG_TLS_VERIFY_* (needs client_ca) */
    unsigned session_tickets:1;   /* resumption by tickets */
    double session_timeout;       /* seconds a session may be resumed */
    mg_tls_error_cb on_error;
    void *data;                   /* for on_error */
} mg_tls_server_conf_t;

typedef struct mg_tls_client_conf_s {
    mg_tls_common_conf_t common;
    const char *ca;               /* PEM file to verify the server against;
                                   * NULL: the system's default CAs */
    const void *ca_pos;
    const char *cert;             /* client certificate for mTLS, or NULL */
    const void *cert_pos;
    const char *key;              /* its key (needed with cert) */
    const void *key_pos;
    const char *sni;              /* server name sent and, when verifying,
                                   * the name the certificate must have */
    unsigned verify:1;            /* check the server certificate */
    unsigned h2:1;                /* offer ALPN "h2", else "http/1.1" */
    mg_tls_error_cb on_error;
    void *data;
} mg_tls_client_conf_t;

/*
 * Builds the SSL_CTX of a TLS listener from |conf|: one SSL_CTX per
 * certificate, all alike, the first returned. A servername callback on it
 * switches a handshake to the context of the certificate that its SNI names
 * (see mg_tls_sni_find()). Every context is freed by a cleanup on |pool|.
 * Returns the default context, or NULL after reporting each problem through
 * conf->on_error.
 */
SSL_CTX *mg_tls_server_create(mg_pool_t *pool,
                              const mg_tls_server_conf_t *conf);

/*
 * Builds the SSL_CTX that talks to a cluster's endpoints: verification
 * against conf->ca with the name conf->sni (when verifying), an optional
 * client certificate, ALPN. The SNI itself is set per connection by the
 * caller (SSL_set_tlsext_host_name). Freed by a cleanup on |pool|.
 * Returns the context, or NULL after reporting through conf->on_error.
 */
SSL_CTX *mg_tls_client_create(mg_pool_t *pool,
                              const mg_tls_client_conf_t *conf);

/*
 * Returns 1 when the peer of the server connection |ssl| sent a
 * certificate and it verified against the listener's client_ca, else 0.
 * Valid once the handshake is done; this is what require_client_cert asks.
 */
int mg_tls_client_verified(const SSL *ssl);

/*
 * Drains the OpenSSL error queue of this thread into a static string for a
 * log line ("" when the queue was empty). Valid until the next call.
 */
const char *mg_tls_error_string(void);

/* SNI ------------------------------------------------------------------ */

/* Names of a listener's certificates, sorted for binary search. */
typedef struct mg_tls_sni_name_s {
    const char *name;             /* lower case; a wildcard without "*." */
    unsigned len;
    unsigned cert;                /* index in the listener's certificates */
} mg_tls_sni_name_t;

typedef struct mg_tls_sni_s {
    mg_tls_sni_name_t *exact;
    unsigned nexact;
    mg_tls_sni_name_t *wild;      /* "*.example.com" is "example.com" */
    unsigned nwild;
    SSL_CTX **ctxs;               /* one per certificate, [0] the default */
    unsigned nctxs;
} mg_tls_sni_t;

/*
 * Builds the lookup table for |n| certificate names: |names[i]| (as in the
 * certificate: "www.example.com", "*.example.com"; any case) belongs to
 * certificate |certs[i]|. When two certificates have the same name the one
 * with the lower index keeps it. Returns NULL when out of memory.
 */
mg_tls_sni_t *mg_tls_sni_build(mg_pool_t *pool, const char *const *names,
                               const unsigned *certs, unsigned n);

/*
 * The certificate for server name |name| (|len| bytes, any case, an ending
 * dot ignored): an exact name first, then a wildcard covering its first
 * label, else 0, the default. No allocation.
 */
unsigned mg_tls_sni_find(const mg_tls_sni_t *sni, const char *name,
                         size_t len);

/* The SNI table of a listener context from mg_tls_server_create(). */
const mg_tls_sni_t *mg_tls_server_sni(SSL_CTX *ctx);

/* Session tickets -------------------------------------------------------- */

/*
 * Creates the ticket key ring in shared memory (MAP_SHARED | MAP_ANONYMOUS),
 * so that workers forked afterwards encrypt and decrypt tickets with the
 * same keys, and fills a random current key. Call it in the master before
 * the first worker forks; calling it again does nothing. Until it is called
 * (meshgate -t, unit tests) contexts use a process-local key without
 * rotation. Returns MG_OK, or MG_ERROR (logged) when mmap or the random
 * generator fails.
 */
int mg_tls_tickets_init(void);

/*
 * Makes the current key the previous one, which still decrypts (and asks
 * for a new ticket), and a new random key current. Called by the master's
 * timer every gateway.tls_ticket_rotation seconds; workers see the change at
 * their next handshake. Does nothing before mg_tls_tickets_init().
 */
void mg_tls_tickets_rotate(void);

#endif /* MG_TLS_H */
