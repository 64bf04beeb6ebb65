/*
 * xDS messages to and from protobuf, with the code protoc-c generates from
 * proto/. The generated headers are included here and in the unit tests
 * only.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"

#include "mg_xds_proto.h"

typedef Envoy__Service__Discovery__V3__DiscoveryRequest xds_request_pb_t;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse xds_response_pb_t;
typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment xds_cla_pb_t;
typedef Envoy__Config__Endpoint__V3__LocalityLbEndpoints xds_locality_pb_t;
typedef Envoy__Config__Endpoint__V3__LbEndpoint xds_lb_endpoint_pb_t;
typedef Envoy__Config__Core__V3__SocketAddress xds_socket_address_pb_t;

#define XDS_UA_VERSION                                                         \
    ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_VERSION
#define XDS_HOST_ENDPOINT                                                      \
    ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT
#define XDS_SOCKET_ADDRESS                                                     \
    ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS
#define XDS_PORT_VALUE                                                         \
    ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE
#define XDS_TCP ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PROTOCOL__TCP
#define XDS_UDP ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PROTOCOL__UDP

/* Bytes of a name quoted in an error message, so the line stays short,
 * and the buffer that holds them quoted: each may take 4 ("\xNN"), then
 * "...", the quotes and the NUL. */
#define XDS_QUOTE_MAX 128
#define XDS_QUOTE_BUF (1 + 4 * XDS_QUOTE_MAX + 3 + 1 + 1)

/*
 * Where the decoder is, for the error message: cluster "users", endpoint
 * "10.0.0.1" (endpoints[0].lb_endpoints[2]): ... A control plane operator
 * finds the offending entry by address or by its place in the message.
 */
typedef struct xds_where_s {
    char *err;
    size_t errlen;
    unsigned resource;
    const char *cluster; /* NULL: not in a resource, or name unknown */
    int in_resource;
    long locality;       /* -1: not in a locality */
    long endpoint;       /* -1: not in an endpoint */
    const char *address; /* NULL: not known yet */
} xds_where_t;

static char *
xds_str(const char *s)
{
    /* protobuf-c's structs hold char *, but packing only reads them. */
    return (char *)(s != NULL ? s : "");
}

uint8_t *
mg_xds_request_encode(const mg_xds_request_t *r, size_t *len)
{
    xds_request_pb_t rq =
        ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    Envoy__Config__Core__V3__Locality loc =
        ENVOY__CONFIG__CORE__V3__LOCALITY__INIT;
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    uint8_t *b;
    size_t n;

    rq.version_info = xds_str(r->version_info);
    rq.type_url = xds_str(r->type_url);
    rq.response_nonce = xds_str(r->response_nonce);
    rq.n_resource_names = r->nresource_names;
    rq.resource_names = (char **)r->resource_names;

    if (r->node_id != NULL) {
        node.id = xds_str(r->node_id);
        node.cluster = xds_str(r->node_cluster);
        node.user_agent_name = xds_str(PACKAGE_NAME);
        if (r->user_agent_version != NULL) {
            node.user_agent_version_type_case = XDS_UA_VERSION;
            node.user_agent_version = xds_str(r->user_agent_version);
        }
        if ((r->region != NULL && r->region[0] != '\0') ||
            (r->zone != NULL && r->zone[0] != '\0')) {
            loc.region = xds_str(r->region);
            loc.zone = xds_str(r->zone);
            node.locality = &loc;
        }
        rq.node = &node;
    }

    if (r->error_code != 0) {
        status.code = r->error_code;
        status.message = xds_str(r->error_message);
        rq.error_detail = &status;
    }

    n = envoy__service__discovery__v3__discovery_request__get_packed_size(&rq);
    if (n > MG_XDS_MAX_MESSAGE) {
        return NULL;
    }

    b = malloc(MG_XDS_GRPC_PREFIX + n);
    if (b == NULL) {
        return NULL;
    }

    /* gRPC over HTTP/2: Compressed-Flag 0, then the length, big-endian. */
    b[0] = 0;
    b[1] = (uint8_t)(n >> 24);
    b[2] = (uint8_t)(n >> 16);
    b[3] = (uint8_t)(n >> 8);
    b[4] = (uint8_t)n;
    envoy__service__discovery__v3__discovery_request__pack(
        &rq, b + MG_XDS_GRPC_PREFIX);

    *len = MG_XDS_GRPC_PREFIX + n;
    return b;
}

/*
 * Writes |s| quoted into |buf|, bytes outside printable ASCII as \xNN and
 * cut after XDS_QUOTE_MAX bytes: names come from the wire and the reason
 * must stay one readable line.
 */
static const char *
xds_quote(char buf[XDS_QUOTE_BUF], const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, n;
    unsigned char c;

    buf[i++] = '"';
    for (n = 0; s[n] != '\0'; n++) {
        if (n == XDS_QUOTE_MAX) {
            memcpy(&buf[i], "...", 3);
            i += 3;
            break;
        }
        c = (unsigned char)s[n];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            buf[i++] = '\\';
            buf[i++] = 'x';
            buf[i++] = hex[c >> 4];
            buf[i++] = hex[c & 0xf];
        } else {
            buf[i++] = (char)c;
        }
    }
    buf[i++] = '"';
    buf[i] = '\0';
    return buf;
}

static int xds_error(xds_where_t *w, const char *fmt, ...) MG_PRINTF(2, 3);

/* Writes the reason, after where it is, and returns MG_ERROR. */
static int
xds_error(xds_where_t *w, const char *fmt, ...)
{
    char q1[XDS_QUOTE_BUF], q2[XDS_QUOTE_BUF];
    char reason[XDS_QUOTE_BUF + 128];
    va_list ap;
    int n = 0;

    if (w->errlen == 0) {
        return MG_ERROR;
    }
    w->err[0] = '\0';

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);

    if (!w->in_resource) {
        n = snprintf(w->err, w->errlen, "DiscoveryResponse: ");
    } else if (w->cluster == NULL) {
        n = snprintf(w->err, w->errlen, "resources[%u]: ", w->resource);
    } else if (w->locality < 0) {
        n = snprintf(w->err, w->errlen,
                     "cluster %s: ", xds_quote(q1, w->cluster));
    } else if (w->endpoint < 0) {
        n = snprintf(w->err, w->errlen,
                     "cluster %s, endpoints[%ld]: ", xds_quote(q1, w->cluster),
                     w->locality);
    } else if (w->address == NULL) {
        n = snprintf(w->err, w->errlen,
                     "cluster %s, endpoints[%ld].lb_endpoints[%ld]: ",
                     xds_quote(q1, w->cluster), w->locality, w->endpoint);
    } else {
        n = snprintf(w->err, w->errlen,
                     "cluster %s, endpoint %s "
                     "(endpoints[%ld].lb_endpoints[%ld]): ",
                     xds_quote(q1, w->cluster), xds_quote(q2, w->address),
                     w->locality, w->endpoint);
    }

    if (n >= 0 && (size_t)n < w->errlen) {
        snprintf(w->err + n, w->errlen - (size_t)n, "%s", reason);
    }
    return MG_ERROR;
}

/* Copies |s| into |dst| of |size| bytes. MG_ERROR when it doesn't fit. */
static int
xds_copy(char *dst, size_t size, const char *s)
{
    size_t n = strlen(s);

    if (n >= size) {
        return MG_ERROR;
    }
    memcpy(dst, s, n + 1);
    return MG_OK;
}

/* Whether |s| has a control character, which no name may carry into the
 * logs and the admin pages. */
static int
xds_has_ctl(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* Checks one lb_endpoint and fills |ep| with it. MG_OK or MG_ERROR. */
static int
xds_endpoint(const xds_lb_endpoint_pb_t *lbe, xds_where_t *w,
             mg_xds_endpoint_t *ep)
{
    const xds_socket_address_pb_t *sa;
    const Envoy__Config__Core__V3__Address *a;
    const unsigned char *p;
    char q[XDS_QUOTE_BUF];
    size_t n;

    if (lbe->host_identifier_case != XDS_HOST_ENDPOINT ||
        lbe->endpoint == NULL || lbe->endpoint->address == NULL) {
        return xds_error(w, "no socket address");
    }
    a = lbe->endpoint->address;
    if (a->address_case != XDS_SOCKET_ADDRESS || a->socket_address == NULL) {
        return xds_error(w, "no socket address (a pipe or an internal "
                            "address is not supported)");
    }
    sa = a->socket_address;

    if (sa->address[0] == '\0') {
        return xds_error(w, "empty address");
    }
    n = strlen(sa->address);
    if (n >= sizeof(ep->address)) {
        return xds_error(w, "address of %zu bytes, longer than %zu", n,
                         sizeof(ep->address) - 1);
    }
    /* An IP literal or a host name: nothing else reaches the resolver. */
    for (p = (const unsigned char *)sa->address; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return xds_error(w,
                             "address %s has a byte outside printable "
                             "ASCII",
                             xds_quote(q, sa->address));
        }
    }
    w->address = sa->address;

    if (sa->protocol != XDS_TCP) {
        return xds_error(w, "protocol %s, only TCP is supported",
                         sa->protocol == XDS_UDP ? "UDP" : "unknown");
    }
    if (sa->port_specifier_case != XDS_PORT_VALUE) {
        return xds_error(w, "no port_value (a named port is not supported)");
    }
    if (sa->port_value == 0 || sa->port_value > 65535) {
        return xds_error(w, "port_value %u outside 1..65535",
                         (unsigned)sa->port_value);
    }
    if (lbe->load_balancing_weight != NULL &&
        lbe->load_balancing_weight->value == 0) {
        return xds_error(w, "load_balancing_weight 0, must be at least 1");
    }
    /* An open enum: a newer server may send a status we don't know, and
     * guessing healthy or not is worse than keeping the last good set. */
    if ((unsigned)lbe->health_status > MG_XDS_HEALTH_DEGRADED) {
        return xds_error(w, "unknown health_status %d",
                         (int)lbe->health_status);
    }

    memcpy(ep->address, sa->address, n + 1);
    ep->port = sa->port_value;
    ep->weight = lbe->load_balancing_weight != NULL
                     ? lbe->load_balancing_weight->value
                     : 1;
    ep->health = (unsigned)lbe->health_status;
    return MG_OK;
}

/* Checks one locality and its endpoints into |ep|. MG_OK or MG_ERROR. */
static int
xds_locality(const xds_locality_pb_t *loc, xds_where_t *w,
             mg_xds_endpoint_t *ep)
{
    const char *region = "", *zone = "";
    size_t i;

    if (loc->priority > MG_XDS_MAX_PRIORITY) {
        return xds_error(w, "priority %u over %d", (unsigned)loc->priority,
                         MG_XDS_MAX_PRIORITY);
    }
    if (loc->load_balancing_weight != NULL &&
        loc->load_balancing_weight->value == 0) {
        return xds_error(w, "load_balancing_weight 0, must be at least 1");
    }
    if (loc->locality != NULL) {
        region = loc->locality->region;
        zone = loc->locality->zone;
    }
    if (strlen(region) >= sizeof(ep->region)) {
        return xds_error(w, "region of %zu bytes, longer than %zu",
                         strlen(region), sizeof(ep->region) - 1);
    }
    if (strlen(zone) >= sizeof(ep->zone)) {
        return xds_error(w, "zone of %zu bytes, longer than %zu", strlen(zone),
                         sizeof(ep->zone) - 1);
    }
    if (xds_has_ctl(region) || xds_has_ctl(zone)) {
        return xds_error(w, "control character in the locality");
    }

    for (i = 0; i < loc->n_lb_endpoints; i++) {
        w->endpoint = (long)i;
        w->address = NULL;
        memset(&ep[i], 0, sizeof(ep[i]));
        if (xds_endpoint(loc->lb_endpoints[i], w, &ep[i]) != MG_OK) {
            return MG_ERROR;
        }
        ep[i].priority = loc->priority;
        memcpy(ep[i].region, region, strlen(region) + 1);
        memcpy(ep[i].zone, zone, strlen(zone) + 1);
    }
    w->endpoint = -1;
    return MG_OK;
}

/*
 * Checks one ClusterLoadAssignment into |a|; |total| counts the endpoints
 * of the whole response. MG_OK or MG_ERROR; |a| holds what it allocated
 * either way.
 */
static int
xds_assignment(const xds_cla_pb_t *cla, xds_where_t *w, mg_xds_assignment_t *a,
               size_t *total)
{
    size_t i, n = 0;

    if (cla->cluster_name[0] == '\0') {
        return xds_error(w, "ClusterLoadAssignment without cluster_name");
    }
    if (xds_copy(a->cluster_name, sizeof(a->cluster_name), cla->cluster_name) !=
        MG_OK) {
        w->cluster = cla->cluster_name;
        return xds_error(w, "cluster_name of %zu bytes, longer than %zu",
                         strlen(cla->cluster_name),
                         sizeof(a->cluster_name) - 1);
    }
    w->cluster = a->cluster_name;
    if (xds_has_ctl(a->cluster_name)) {
        return xds_error(w, "control character in cluster_name");
    }

    /* Bound before allocating: each one costs far more decoded than on
     * the wire. */
    for (i = 0; i < cla->n_endpoints; i++) {
        n += cla->endpoints[i]->n_lb_endpoints;
        if (n > MG_XDS_MAX_ENDPOINTS) {
            return xds_error(w, "more than %d endpoints", MG_XDS_MAX_ENDPOINTS);
        }
    }
    if (*total + n > MG_XDS_MAX_RESPONSE_ENDPOINTS) {
        return xds_error(w, "the response has more than %d endpoints",
                         MG_XDS_MAX_RESPONSE_ENDPOINTS);
    }
    *total += n;

    if (n > 0) {
        a->endpoints = malloc(n * sizeof(mg_xds_endpoint_t));
        if (a->endpoints == NULL) {
            return xds_error(w, "out of memory");
        }
    }

    n = 0;
    for (i = 0; i < cla->n_endpoints; i++) {
        w->locality = (long)i;
        if (xds_locality(cla->endpoints[i], w, &a->endpoints[n]) != MG_OK) {
            return MG_ERROR;
        }
        n += cla->endpoints[i]->n_lb_endpoints;
        a->nendpoints = (unsigned)n;
    }
    w->locality = -1;
    return MG_OK;
}

static int
xds_name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The same cluster twice in one response has no meaning: which one? */
static int
xds_duplicates(const mg_xds_response_t *out, xds_where_t *w)
{
    const char **names;
    unsigned i;

    if (out->nassignments < 2) {
        return MG_OK;
    }
    names = malloc(out->nassignments * sizeof(names[0]));
    if (names == NULL) {
        return xds_error(w, "out of memory");
    }
    for (i = 0; i < out->nassignments; i++) {
        names[i] = out->assignments[i].cluster_name;
    }
    qsort(names, out->nassignments, sizeof(names[0]), xds_name_cmp);
    for (i = 1; i < out->nassignments; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            w->in_resource = 1;
            w->cluster = names[i];
            xds_error(w, "more than one ClusterLoadAssignment");
            free(names);
            return MG_ERROR;
        }
    }
    free(names);
    return MG_OK;
}

static void
xds_free_assignments(mg_xds_response_t *r)
{
    unsigned i;

    for (i = 0; i < r->nassignments; i++) {
        free(r->assignments[i].endpoints);
    }
    free(r->assignments);
    r->assignments = NULL;
    r->nassignments = 0;
}

static int
xds_response(const xds_response_pb_t *rs, const char *want,
             mg_xds_response_t *out, xds_where_t *w)
{
    const Google__Protobuf__Any *any;
    xds_cla_pb_t *cla;
    char q[XDS_QUOTE_BUF];
    size_t i, total = 0;
    int rc;

    /* The nonce first: a NACK needs it even when the rest is wrong. */
    if (xds_copy(out->nonce, sizeof(out->nonce), rs->nonce) != MG_OK) {
        return xds_error(w, "nonce of %zu bytes, longer than %zu",
                         strlen(rs->nonce), sizeof(out->nonce) - 1);
    }
    if (xds_copy(out->version_info, sizeof(out->version_info),
                 rs->version_info) != MG_OK) {
        return xds_error(w, "version_info of %zu bytes, longer than %zu",
                         strlen(rs->version_info),
                         sizeof(out->version_info) - 1);
    }
    if (xds_copy(out->type_url, sizeof(out->type_url), rs->type_url) != MG_OK) {
        return xds_error(w, "type_url of %zu bytes, longer than %zu",
                         strlen(rs->type_url), sizeof(out->type_url) - 1);
    }
    if (strcmp(rs->type_url, want) != 0) {
        return xds_error(w, "type_url %s, expected \"%s\"",
                         xds_quote(q, rs->type_url), want);
    }

    /* Every type URL before allocating per resource. */
    w->in_resource = 1;
    for (i = 0; i < rs->n_resources; i++) {
        any = rs->resources[i];
        w->resource = (unsigned)i;
        if (strcmp(any->type_url, want) != 0) {
            return xds_error(w, "type_url %s, expected \"%s\"",
                             xds_quote(q, any->type_url), want);
        }
    }
    if (rs->n_resources == 0) {
        return MG_OK;
    }

    out->assignments = calloc(rs->n_resources, sizeof(mg_xds_assignment_t));
    if (out->assignments == NULL) {
        w->in_resource = 0;
        return xds_error(w, "out of memory");
    }

    for (i = 0; i < rs->n_resources; i++) {
        any = rs->resources[i];
        w->resource = (unsigned)i;
        w->cluster = NULL;
        w->locality = -1;
        w->endpoint = -1;

        cla = envoy__config__endpoint__v3__cluster_load_assignment__unpack(
            NULL, any->value.len, any->value.data);
        if (cla == NULL) {
            return xds_error(w,
                             "undecodable ClusterLoadAssignment "
                             "(%zu bytes)",
                             any->value.len);
        }
        out->nassignments = (unsigned)i + 1;
        rc = xds_assignment(cla, w, &out->assignments[i], &total);
        envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(
            cla, NULL);
        if (rc != MG_OK) {
            return MG_ERROR;
        }
    }

    w->in_resource = 0;
    return xds_duplicates(out, w);
}

int
mg_xds_response_decode(const uint8_t *buf, size_t len,
                       const char *want_type_url, mg_xds_response_t *out,
                       char *err, size_t errlen)
{
    xds_where_t w = {
        .err = err, .errlen = errlen, .locality = -1, .endpoint = -1};
    xds_response_pb_t *rs;
    int rc;

    memset(out, 0, sizeof(*out));

    if (len > MG_XDS_MAX_MESSAGE) {
        return xds_error(&w, "%zu bytes, more than the %u allowed", len,
                         MG_XDS_MAX_MESSAGE);
    }

    rs = envoy__service__discovery__v3__discovery_response__unpack(NULL, len,
                                                                   buf);
    if (rs == NULL) {
        return xds_error(&w, "undecodable (%zu bytes)", len);
    }

    rc = xds_response(rs, want_type_url, out, &w);
    envoy__service__discovery__v3__discovery_response__free_unpacked(rs, NULL);

    if (rc != MG_OK) {
        xds_free_assignments(out);
    }
    return rc;
}

void
mg_xds_response_free(mg_xds_response_t *r)
{
    xds_free_assignments(r);
    memset(r, 0, sizeof(*r));
}
