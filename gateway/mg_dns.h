/*
 * Endpoints and front proxies addressed by host name ("users.internal:8080").
 *
 * The control process looks each distinct name up every dns_refresh
 * seconds (plus up to a tenth more, at random) with getaddrinfo_a(), so its
 * loop never waits for a resolver, and publishes up to MG_DNS_ADDRS
 * addresses per name in a shared table that the master maps before it
 * forks; the port always comes from the configuration. A failed or empty
 * answer keeps the last good one. Proxy workers and health checks take an
 * address for each new connection, round robin over the whole instance,
 * without a lock: each entry holds two copies of its list and a sequence
 * counter, so a reader never waits for the writer.
 *
 * Nothing resolves in the master or in a proxy worker, and the
 * configuration loader (so `meshgate -t`) never resolves at all.
 */
#ifndef MG_DNS_H
#define MG_DNS_H

#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "mg_core.h"

#define MG_DNS_SLOTS     1024     /* distinct host names per instance */
#define MG_DNS_ADDRS     16       /* addresses kept per name */
#define MG_DNS_NAME_MAX  256      /* 253 bytes, a final dot and a NUL */
#define MG_DNS_PEER_LEN  56       /* "[v6 address]:65535" and a NUL */
/* mg_dns_log_name(): "host:port (address)" */
#define MG_DNS_LOG_NAME_LEN (MG_DNS_NAME_MAX + 8 + MG_DNS_PEER_LEN)

typedef struct mg_dns_s mg_dns_t;
typedef struct mg_dns_table_s mg_dns_table_t;

/* One address of a name; the bytes past the first 4 of an IPv4 address are
 * zero, so two entries compare with memcmp(). */
typedef struct mg_dns_ip_s {
    uint32_t family;              /* AF_INET or AF_INET6 */
    uint8_t addr[16];             /* network order */
} mg_dns_ip_t;

/* Where one connection to an endpoint went. */
typedef struct mg_dns_peer_s {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint32_t version;             /* of the name's list it came from */
    char text[MG_DNS_PEER_LEN];   /* "127.0.0.2:8080", "[::1]:8080"; "" for
                                   * an endpoint with a literal address */
} mg_dns_peer_t;

/* NULL until mg_dns_table_create(): then no host name has an address. */
extern mg_dns_table_t *mg_dns_table;

/* Maps the shared table. Master, once, before forking. MG_OK/MG_ERROR. */
int mg_dns_table_create(void);

/*
 * Gives every endpoint of |snap| that has a host name the table entry of
 * that name (ep->dns_slot), keeping the answers the previous generation
 * had, and frees the entries no generation since |oldest_live| uses.
 * Master. MG_OK, or MG_ERROR when the table is full (the names past it
 * never get an address, so connections to them fail).
 */
int mg_dns_assign(mg_snapshot_t *snap, unsigned long generation,
                  unsigned long oldest_live);

/*
 * The address for a new connection to |ep| into |peer|: its literal
 * address, or the next one of its host name's current list. MG_OK, or
 * MG_AGAIN when no address is known for the name yet (take it as a
 * failed connect: the request goes on to another endpoint or region).
 * Lock-free; for proxy workers and the control process.
 */
int mg_dns_addr(const mg_endpoint_conf_t *ep, mg_dns_peer_t *peer);

/*
 * Whether |peer|, which mg_dns_addr() gave for |ep|, is still one of its
 * addresses, so a pooled connection to it may serve another request.
 * Always true for a literal address, and while nothing better is known.
 * Cheap when the list has not changed; updates peer->version.
 */
int mg_dns_peer_valid(const mg_endpoint_conf_t *ep, mg_dns_peer_t *peer);

/* Whether |ep|'s host name is still waiting for its first lookup to end
 * (in this generation or an earlier one): a connection failing for want
 * of an address says nothing about the endpoint yet. */
int mg_dns_pending(const mg_endpoint_conf_t *ep);

/* For logs: "users.internal:8080 (127.0.0.2:8080)" for an endpoint reached
 * by host name once |peer| (may be NULL) has an address, else its address
 * as configured. Returns |buf| (MG_DNS_LOG_NAME_LEN bytes) or that. */
const char *mg_dns_log_name(const mg_endpoint_conf_t *ep,
                            const mg_dns_peer_t *peer, char *buf, size_t len);

/* Formats |ip| as "127.0.0.2" or "::1", or with a |port| (not 0) as
 * "127.0.0.2:80" or "[::1]:80", into |buf|. */
void mg_dns_ip_text(const mg_dns_ip_t *ip, uint16_t port, char *buf,
                    size_t len);

/*
 * Replaces the address list of entry |slot| by the |n| (<= MG_DNS_ADDRS)
 * in |ips| (the control process). MG_OK, or MG_AGAIN while another process
 * is writing it.
 */
int mg_dns_publish(unsigned slot, const mg_dns_ip_t *ips, unsigned n);

/* Copies the current list of entry |slot| into |ips| (MG_DNS_ADDRS of
 * room). Returns its length: 0 when nothing is known (yet). */
unsigned mg_dns_read(unsigned slot, mg_dns_ip_t *ips);

/* The number of distinct host names |snap| resolves (0: none). |snap| must
 * have been through mg_dns_assign(). */
unsigned mg_dns_count(const mg_snapshot_t *snap);

/*
 * Starts resolving every host name of |snap| on |loop| (control process):
 * each at once, then every dns_refresh (the smallest among the endpoints
 * that share it) plus jitter. |snap| must outlive the resolver. Returns it,
 * or NULL when out of memory.
 */
mg_dns_t *mg_dns_start(struct ev_loop *loop, const mg_snapshot_t *snap);

/* Stops resolving and frees |d|; a lookup the resolver thread has already
 * begun is left to it, as the process is about to exit. */
void mg_dns_stop(mg_dns_t *d);

#endif /* MG_DNS_H */
