/*
 * Unit tests of the xDS protobuf mapping (gateway/mg_xds_proto.c): requests
 * read back with the generated unpacker and compared with bytes written by
 * hand from the wire format (so a wrong field number in proto/ fails here),
 * responses built with the generated packers (localities, priorities,
 * weights, health, IPv6, the v2 type URL), every rejection with its
 * reason, and random, truncated and mutated input, which must fail
 * cleanly.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "mg_xds_proto.h"
#include "tap.h"

typedef Envoy__Service__Discovery__V3__DiscoveryRequest request_pb_t;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse response_pb_t;
typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment cla_pb_t;
typedef Envoy__Config__Endpoint__V3__LocalityLbEndpoints lle_pb_t;
typedef Envoy__Config__Endpoint__V3__LbEndpoint lbe_pb_t;
typedef Envoy__Config__Endpoint__V3__Endpoint endpoint_pb_t;
typedef Envoy__Config__Core__V3__Address address_pb_t;
typedef Envoy__Config__Core__V3__SocketAddress socket_pb_t;
typedef Envoy__Config__Core__V3__Locality locality_pb_t;
typedef Google__Protobuf__UInt32Value u32_pb_t;
typedef Google__Protobuf__Any any_pb_t;

#define V3 MG_XDS_V3_CLA_TYPE_URL
#define V2 MG_XDS_V2_CLA_TYPE_URL

#define UA_VERSION                                                             \
    ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_VERSION
#define UA_NOT_SET                                                             \
    ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE__NOT_SET
#define HOST_ENDPOINT                                                          \
    ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT
#define SOCKET_ADDRESS ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS
#define PORT_VALUE                                                             \
    ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE

static char err[512];

/* ---- requests ---- */

static request_pb_t *
unpack_request(const uint8_t *b, size_t n)
{
    size_t len;

    if (n < MG_XDS_GRPC_PREFIX || b[0] != 0) {
        return NULL;
    }
    len = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
    if (len != n - MG_XDS_GRPC_PREFIX) {
        return NULL;
    }
    return envoy__service__discovery__v3__discovery_request__unpack(
        NULL, len, b + MG_XDS_GRPC_PREFIX);
}

static void
test_request_roundtrip(void)
{
    static const char *const names[] = {"users", "orders", "payments"};
    mg_xds_request_t r = {
        .version_info = "v7",
        .response_nonce = "nonce-8",
        .type_url = V3,
        .resource_names = names,
        .nresource_names = 3,
        .node_id = "gw-1",
        .node_cluster = "edge",
        .region = "eu-west",
        .zone = "eu-west-1a",
        .user_agent_version = PACKAGE_VERSION,
        .error_code = MG_XDS_GRPC_INVALID_ARGUMENT,
        .error_message = "cluster \"users\": bad",
    };
    request_pb_t *rq;
    uint8_t *b;
    size_t n = 0;

    b = mg_xds_request_encode(&r, &n);
    ok(b != NULL && n > MG_XDS_GRPC_PREFIX, "a request encodes (%zu bytes)", n);
    rq = unpack_request(b, n);
    ok(rq != NULL, "its gRPC prefix says uncompressed and the right length, "
                   "and the generated unpacker reads it");
    if (rq == NULL) {
        free(b);
        return;
    }
    ok(strcmp(rq->version_info, "v7") == 0, "version_info");
    ok(strcmp(rq->response_nonce, "nonce-8") == 0, "response_nonce");
    ok(strcmp(rq->type_url, V3) == 0, "type_url");
    ok(rq->n_resource_names == 3 &&
           strcmp(rq->resource_names[0], "users") == 0 &&
           strcmp(rq->resource_names[1], "orders") == 0 &&
           strcmp(rq->resource_names[2], "payments") == 0,
       "resource_names, in order");
    ok(rq->node != NULL && strcmp(rq->node->id, "gw-1") == 0 &&
           strcmp(rq->node->cluster, "edge") == 0,
       "node id and cluster");
    ok(rq->node != NULL && rq->node->locality != NULL &&
           strcmp(rq->node->locality->region, "eu-west") == 0 &&
           strcmp(rq->node->locality->zone, "eu-west-1a") == 0 &&
           rq->node->locality->sub_zone[0] == '\0',
       "node locality: region and zone");
    ok(rq->node != NULL && strcmp(rq->node->user_agent_name, "meshgate") == 0,
       "user_agent_name is the package name");
    ok(rq->node != NULL &&
           rq->node->user_agent_version_type_case == UA_VERSION &&
           strcmp(rq->node->user_agent_version, PACKAGE_VERSION) == 0,
       "user_agent_version is the package version");
    ok(rq->error_detail != NULL && rq->error_detail->code == 3 &&
           strcmp(rq->error_detail->message, "cluster \"users\": bad") == 0,
       "a NACK carries error_detail with code 3 and the reason");
    envoy__service__discovery__v3__discovery_request__free_unpacked(rq, NULL);
    free(b);

    /* An ACK on a stream that already sent its node. */
    memset(&r, 0, sizeof(r));
    r.version_info = "v8";
    r.response_nonce = "9";
    r.type_url = V2;
    r.resource_names = names;
    r.nresource_names = 1;
    b = mg_xds_request_encode(&r, &n);
    rq = unpack_request(b, n);
    ok(rq != NULL && rq->node == NULL && rq->error_detail == NULL &&
           strcmp(rq->version_info, "v8") == 0 &&
           strcmp(rq->response_nonce, "9") == 0 &&
           strcmp(rq->type_url, V2) == 0 && rq->n_resource_names == 1,
       "an ACK without a node has no node and no error_detail");
    if (rq != NULL) {
        envoy__service__discovery__v3__discovery_request__free_unpacked(rq,
                                                                        NULL);
    }
    free(b);

    /* The first request: no version, no nonce, no locality. */
    memset(&r, 0, sizeof(r));
    r.type_url = V3;
    r.node_id = "gw-2";
    b = mg_xds_request_encode(&r, &n);
    rq = unpack_request(b, n);
    ok(rq != NULL && rq->version_info[0] == '\0' &&
           rq->response_nonce[0] == '\0' && rq->n_resource_names == 0 &&
           rq->node != NULL && strcmp(rq->node->id, "gw-2") == 0 &&
           rq->node->cluster[0] == '\0' && rq->node->locality == NULL &&
           rq->node->user_agent_version_type_case == UA_NOT_SET,
       "a first request without locality or version: those fields absent");
    if (rq != NULL) {
        envoy__service__discovery__v3__discovery_request__free_unpacked(rq,
                                                                        NULL);
    }
    free(b);

    r.zone = "z1";
    b = mg_xds_request_encode(&r, &n);
    rq = unpack_request(b, n);
    ok(rq != NULL && rq->node != NULL && rq->node->locality != NULL &&
           rq->node->locality->region[0] == '\0' &&
           strcmp(rq->node->locality->zone, "z1") == 0,
       "a zone alone is sent as a locality");
    if (rq != NULL) {
        envoy__service__discovery__v3__discovery_request__free_unpacked(rq,
                                                                        NULL);
    }
    free(b);
}

/*
 * A small NACK written out by hand from the protobuf wire format: each
 * field is its tag byte (field number << 3 | wire type; 2 = length-
 * delimited, 0 = varint), then its length and bytes.
 */
/* clang-format off */
static const uint8_t golden_request[] = {
    0x00, 0x00, 0x00, 0x00, 0x38,       /* gRPC: not compressed, 56 bytes */
    0x0a, 0x01, '1',                    /* 1 version_info "1" */
    0x12, 0x1e,                         /* 2 node, 30 bytes */
      0x0a, 0x02, 'n', '1',             /*   1 id "n1" */
      0x12, 0x01, 'c',                  /*   2 cluster "c" */
      0x22, 0x06,                       /*   4 locality, 6 bytes */
        0x0a, 0x01, 'r',                /*     1 region "r" */
        0x12, 0x01, 'z',                /*     2 zone "z" */
      0x32, 0x08, 'm', 'e', 's', 'h', 'g', 'a', 't', 'e',
                                        /*   6 user_agent_name */
      0x3a, 0x03, '0', '.', '1',        /*   7 user_agent_version "0.1" */
    0x1a, 0x01, 'a',                    /* 3 resource_names "a" */
    0x1a, 0x01, 'b',                    /* 3 resource_names "b" */
    0x22, 0x01, 'T',                    /* 4 type_url "T" */
    0x2a, 0x01, '7',                    /* 5 response_nonce "7" */
    0x32, 0x07,                         /* 6 error_detail, 7 bytes */
      0x08, 0x03,                       /*   1 code 3 (varint) */
      0x12, 0x03, 'b', 'a', 'd',        /*   2 message "bad" */
};
/* clang-format on */

static void
test_request_golden(void)
{
    static const char *const names[] = {"a", "b"};
    mg_xds_request_t r = {
        .version_info = "1",
        .response_nonce = "7",
        .type_url = "T",
        .resource_names = names,
        .nresource_names = 2,
        .node_id = "n1",
        .node_cluster = "c",
        .region = "r",
        .zone = "z",
        .user_agent_version = "0.1",
        .error_code = 3,
        .error_message = "bad",
    };
    uint8_t *b;
    size_t n = 0, i;

    b = mg_xds_request_encode(&r, &n);
    is_int(n, sizeof(golden_request), "the golden request's length");
    ok(b != NULL && n == sizeof(golden_request) &&
           memcmp(b, golden_request, n) == 0,
       "the encoding is byte for byte the one written from the wire format");
    for (i = 0; b != NULL && i < n && i < sizeof(golden_request); i++) {
        if (b[i] != golden_request[i]) {
            printf("#   first difference at byte %zu: 0x%02x, expected "
                   "0x%02x\n",
                   i, b[i], golden_request[i]);
            break;
        }
    }
    free(b);
}

/* ---- responses built with the generated packers ---- */

#define EP_NORMAL 0
#define EP_NO_ENDPOINT 1 /* an LbEndpoint without its endpoint */
#define EP_NO_ADDRESS 2  /* an Endpoint without an address */
#define EP_NO_SOCKET 3   /* an Address that is not a socket */

/* One lb_endpoint of a test response. */
typedef struct ep_spec_s {
    const char *addr;
    long port;   /* -1: no port_value */
    long weight; /* -1: unset */
    int health;
    int protocol;
    int shape; /* EP_* */
} ep_spec_t;

typedef struct loc_spec_s {
    const char *region; /* NULL, and zone NULL: no locality */
    const char *zone;
    unsigned priority;
    long weight; /* -1: unset */
    const ep_spec_t *eps;
    unsigned neps;
} loc_spec_t;

typedef struct cla_spec_s {
    const char *name;
    const char *type_url; /* NULL: V3 */
    const loc_spec_t *locs;
    unsigned nlocs;
    int garbage; /* the Any's value is no ClusterLoadAssignment */
} cla_spec_t;

#define EP(a, p)                                                               \
    {                                                                          \
        (a), (p), -1, 0, 0, EP_NORMAL                                          \
    }

static uint8_t *
pack_cla(const cla_spec_t *c, size_t *len)
{
    cla_pb_t cla = ENVOY__CONFIG__ENDPOINT__V3__CLUSTER_LOAD_ASSIGNMENT__INIT;
    lle_pb_t *lle, **llep;
    locality_pb_t *loc;
    u32_pb_t *lw, *ew;
    lbe_pb_t *lbe, **lbep;
    endpoint_pb_t *ep;
    address_pb_t *ad;
    socket_pb_t *sa;
    unsigned i, j, k, total = 0;
    uint8_t *b;

    for (i = 0; i < c->nlocs; i++) {
        total += c->locs[i].neps;
    }
    lle = calloc(c->nlocs + 1, sizeof(*lle));
    llep = calloc(c->nlocs + 1, sizeof(*llep));
    loc = calloc(c->nlocs + 1, sizeof(*loc));
    lw = calloc(c->nlocs + 1, sizeof(*lw));
    lbe = calloc(total + 1, sizeof(*lbe));
    lbep = calloc(total + 1, sizeof(*lbep));
    ep = calloc(total + 1, sizeof(*ep));
    ad = calloc(total + 1, sizeof(*ad));
    sa = calloc(total + 1, sizeof(*sa));
    ew = calloc(total + 1, sizeof(*ew));

    cla.cluster_name = (char *)c->name;
    cla.n_endpoints = c->nlocs;
    cla.endpoints = llep;
    for (i = 0, k = 0; i < c->nlocs; i++) {
        const loc_spec_t *ls = &c->locs[i];

        envoy__config__endpoint__v3__locality_lb_endpoints__init(&lle[i]);
        llep[i] = &lle[i];
        if (ls->region != NULL || ls->zone != NULL) {
            envoy__config__core__v3__locality__init(&loc[i]);
            loc[i].region = (char *)(ls->region ? ls->region : "");
            loc[i].zone = (char *)(ls->zone ? ls->zone : "");
            lle[i].locality = &loc[i];
        }
        if (ls->weight >= 0) {
            google__protobuf__uint32_value__init(&lw[i]);
            lw[i].value = (uint32_t)ls->weight;
            lle[i].load_balancing_weight = &lw[i];
        }
        lle[i].priority = ls->priority;
        lle[i].n_lb_endpoints = ls->neps;
        lle[i].lb_endpoints = &lbep[k];
        for (j = 0; j < ls->neps; j++, k++) {
            const ep_spec_t *es = &ls->eps[j];

            envoy__config__endpoint__v3__lb_endpoint__init(&lbe[k]);
            envoy__config__endpoint__v3__endpoint__init(&ep[k]);
            envoy__config__core__v3__address__init(&ad[k]);
            envoy__config__core__v3__socket_address__init(&sa[k]);
            lbep[k] = &lbe[k];
            lbe[k].health_status = es->health;
            if (es->weight >= 0) {
                google__protobuf__uint32_value__init(&ew[k]);
                ew[k].value = (uint32_t)es->weight;
                lbe[k].load_balancing_weight = &ew[k];
            }
            if (es->shape == EP_NO_ENDPOINT) {
                continue;
            }
            lbe[k].host_identifier_case = HOST_ENDPOINT;
            lbe[k].endpoint = &ep[k];
            if (es->shape == EP_NO_ADDRESS) {
                continue;
            }
            ep[k].address = &ad[k];
            if (es->shape == EP_NO_SOCKET) {
                continue;
            }
            ad[k].address_case = SOCKET_ADDRESS;
            ad[k].socket_address = &sa[k];
            sa[k].protocol = es->protocol;
            sa[k].address = (char *)es->addr;
            if (es->port >= 0) {
                sa[k].port_specifier_case = PORT_VALUE;
                sa[k].port_value = (uint32_t)es->port;
            }
        }
    }

    *len =
        envoy__config__endpoint__v3__cluster_load_assignment__get_packed_size(
            &cla);
    b = malloc(*len + 1);
    envoy__config__endpoint__v3__cluster_load_assignment__pack(&cla, b);

    free(lle);
    free(llep);
    free(loc);
    free(lw);
    free(lbe);
    free(lbep);
    free(ep);
    free(ad);
    free(sa);
    free(ew);
    return b;
}

/* A DiscoveryResponse of |n| assignments, malloc'd, into *|len|. */
static uint8_t *
pack_response(const char *type_url, const char *version, const char *nonce,
              const cla_spec_t *c, unsigned n, size_t *len)
{
    response_pb_t rs = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
    static uint8_t garbage[] = {0xff, 0xff, 0xff};
    any_pb_t *any = calloc(n + 1, sizeof(*any));
    any_pb_t **anyp = calloc(n + 1, sizeof(*anyp));
    uint8_t *b;
    unsigned i;

    for (i = 0; i < n; i++) {
        google__protobuf__any__init(&any[i]);
        anyp[i] = &any[i];
        any[i].type_url = (char *)(c[i].type_url ? c[i].type_url : V3);
        if (c[i].garbage) {
            any[i].value.data = garbage;
            any[i].value.len = sizeof(garbage);
        } else {
            any[i].value.data = pack_cla(&c[i], &any[i].value.len);
        }
    }
    rs.version_info = (char *)version;
    rs.nonce = (char *)nonce;
    rs.type_url = (char *)type_url;
    rs.n_resources = n;
    rs.resources = anyp;

    *len =
        envoy__service__discovery__v3__discovery_response__get_packed_size(&rs);
    b = malloc(*len + 1);
    envoy__service__discovery__v3__discovery_response__pack(&rs, b);

    for (i = 0; i < n; i++) {
        if (!c[i].garbage) {
            free(any[i].value.data);
        }
    }
    free(any);
    free(anyp);
    return b;
}

static int
decode_specs(const char *want, const cla_spec_t *c, unsigned n,
             mg_xds_response_t *out)
{
    uint8_t *b;
    size_t len;
    int rc;

    b = pack_response(want, "v1", "n1", c, n, &len);
    err[0] = '\0';
    rc = mg_xds_response_decode(b, len, want, out, err, sizeof(err));
    free(b);
    return rc;
}

static int
ep_is(const mg_xds_endpoint_t *e, const char *addr, unsigned port,
      unsigned weight, unsigned priority, unsigned health, const char *region,
      const char *zone)
{
    int r = strcmp(e->address, addr) == 0 && e->port == port &&
            e->weight == weight && e->priority == priority &&
            e->health == health && strcmp(e->region, region) == 0 &&
            strcmp(e->zone, zone) == 0;

    if (!r) {
        printf("#   got %s:%u w%u p%u h%u %s/%s\n", e->address, e->port,
               e->weight, e->priority, e->health, e->region, e->zone);
    }
    return r;
}

static void
test_response_localities(void)
{
    ep_spec_t a[] = {{"10.0.0.1", 80, -1, 1, 0, 0},
                     {"10.0.0.2", 80, 3, 0, 0, 0}};
    ep_spec_t b[] = {EP("10.0.1.1", 8080)};
    ep_spec_t c[] = {{"10.1.0.1", 80, 1, 5, 0, 0}};
    ep_spec_t d[] = {EP("users.internal", 443)};
    loc_spec_t locs[] = {
        {"eu-west", "eu-west-1a", 0, -1, a, 2},
        {"eu-west", "eu-west-1b", 0, 5, b, 1},
        {"us-east", "us-east-1a", 1, -1, c, 1},
        {NULL, NULL, 2, -1, d, 1},
    };
    cla_spec_t cla = {"users", NULL, locs, 4, 0};
    mg_xds_response_t r;
    mg_xds_assignment_t *as;
    int rc;

    rc = decode_specs(V3, &cla, 1, &r);
    is_int(rc, MG_OK, "four localities over three priorities decode");
    if (rc != MG_OK) {
        return;
    }
    ok(strcmp(r.version_info, "v1") == 0 && strcmp(r.nonce, "n1") == 0 &&
           strcmp(r.type_url, V3) == 0,
       "version_info, nonce and type_url are kept");
    as = &r.assignments[0];
    ok(r.nassignments == 1 && strcmp(as->cluster_name, "users") == 0 &&
           as->nendpoints == 5,
       "one assignment for \"users\" with the five endpoints");
    ok(ep_is(&as->endpoints[0], "10.0.0.1", 80, 1, 0, MG_XDS_HEALTH_HEALTHY,
             "eu-west", "eu-west-1a"),
       "an endpoint without a weight has weight 1, its locality's region, "
       "zone and priority");
    ok(ep_is(&as->endpoints[1], "10.0.0.2", 80, 3, 0, MG_XDS_HEALTH_UNKNOWN,
             "eu-west", "eu-west-1a"),
       "an endpoint's own weight is kept");
    ok(ep_is(&as->endpoints[2], "10.0.1.1", 8080, 1, 0, MG_XDS_HEALTH_UNKNOWN,
             "eu-west", "eu-west-1b"),
       "a second zone at the same priority");
    ok(ep_is(&as->endpoints[3], "10.1.0.1", 80, 1, 1, MG_XDS_HEALTH_DEGRADED,
             "us-east", "us-east-1a"),
       "another region at priority 1, degraded");
    ok(ep_is(&as->endpoints[4], "users.internal", 443, 1, 2,
             MG_XDS_HEALTH_UNKNOWN, "", ""),
       "a host name without a locality at priority 2");
    mg_xds_response_free(&r);
    ok(r.assignments == NULL && r.nassignments == 0,
       "mg_xds_response_free() empties the response");
    mg_xds_response_free(&r);
}

static void
test_response_health(void)
{
    ep_spec_t e[6];
    loc_spec_t loc = {"r", "z", 0, -1, e, 6};
    cla_spec_t cla = {"h", NULL, &loc, 1, 0};
    mg_xds_response_t r;
    unsigned i, good = 0;
    int rc;

    for (i = 0; i < 6; i++) {
        e[i] = (ep_spec_t)EP("10.0.0.1", 1000 + i);
        e[i].health = (int)i;
    }
    rc = decode_specs(V3, &cla, 1, &r);
    for (i = 0; rc == MG_OK && i < 6; i++) {
        good += r.assignments[0].endpoints[i].health == i;
    }
    ok(rc == MG_OK && good == 6,
       "the six health statuses map to MG_XDS_HEALTH_* 0..5");
    ok(MG_XDS_HEALTH_UNKNOWN == 0 && MG_XDS_HEALTH_HEALTHY == 1 &&
           MG_XDS_HEALTH_UNHEALTHY == 2 && MG_XDS_HEALTH_DRAINING == 3 &&
           MG_XDS_HEALTH_TIMEOUT == 4 && MG_XDS_HEALTH_DEGRADED == 5 &&
           ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DEGRADED == 5 &&
           ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__DRAINING == 3,
       "MG_XDS_HEALTH_* are Envoy's HealthStatus values");
    mg_xds_response_free(&r);
}

static void
test_response_ipv6_v2(void)
{
    ep_spec_t e[] = {EP("2001:db8::1", 443), EP("::1", 8443),
                     EP("fe80::1%eth0", 80)};
    loc_spec_t loc = {"r", "z", 0, -1, e, 3};
    cla_spec_t v3 = {"six", NULL, &loc, 1, 0};
    cla_spec_t v2 = {"six", V2, &loc, 1, 0};
    mg_xds_response_t r;
    int rc;

    rc = decode_specs(V3, &v3, 1, &r);
    ok(rc == MG_OK && r.assignments[0].nendpoints == 3 &&
           strcmp(r.assignments[0].endpoints[0].address, "2001:db8::1") == 0 &&
           r.assignments[0].endpoints[0].port == 443 &&
           strcmp(r.assignments[0].endpoints[1].address, "::1") == 0 &&
           strcmp(r.assignments[0].endpoints[2].address, "fe80::1%eth0") == 0,
       "IPv6 addresses are kept as sent, without brackets");
    mg_xds_response_free(&r);

    rc = decode_specs(V2, &v2, 1, &r);
    ok(rc == MG_OK && strcmp(r.type_url, V2) == 0 &&
           r.assignments[0].nendpoints == 3,
       "the v2 type URL is accepted when asked for");
    mg_xds_response_free(&r);

    rc = decode_specs(V2, &v3, 1, &r);
    ok(rc == MG_ERROR && strstr(err, "resources[0]: type_url \"" V3 "\"") &&
           strstr(err, "expected \"" V2 "\""),
       "a v3 resource in a v2 response is rejected: %s", err);

    rc = decode_specs(V3, &v2, 1, &r);
    ok(rc == MG_ERROR && strstr(err, "resources[0]: type_url \"" V2 "\""),
       "a v2 resource in a v3 response is rejected: %s", err);
}

static void
test_response_shapes(void)
{
    ep_spec_t e[] = {EP("10.0.0.1", 80)};
    loc_spec_t loc = {"r", "z", 0, -1, e, 1};
    cla_spec_t two[] = {{"a", NULL, &loc, 1, 0}, {"b", NULL, NULL, 0, 0}};
    mg_xds_response_t r;
    uint8_t *b;
    size_t len;
    int rc;

    rc = decode_specs(V3, two, 2, &r);
    ok(rc == MG_OK && r.nassignments == 2 &&
           strcmp(r.assignments[0].cluster_name, "a") == 0 &&
           r.assignments[0].nendpoints == 1 &&
           strcmp(r.assignments[1].cluster_name, "b") == 0 &&
           r.assignments[1].nendpoints == 0 &&
           r.assignments[1].endpoints == NULL,
       "two assignments in order; one without endpoints is valid and "
       "empty");
    mg_xds_response_free(&r);

    rc = decode_specs(V3, NULL, 0, &r);
    ok(rc == MG_OK && r.nassignments == 0 && r.assignments == NULL &&
           strcmp(r.nonce, "n1") == 0,
       "a response without resources is valid");
    mg_xds_response_free(&r);

    /* The bounds themselves are accepted. */
    {
        char addr[256], region[64];
        ep_spec_t big[] = {{addr, 65535, 4294967295L, 0, 0, 0},
                           {"1", 1, 1, 0, 0, 0}};
        loc_spec_t bl = {region, region, 128, -1, big, 2};
        cla_spec_t c = {"bounds", NULL, &bl, 1, 0};

        memset(addr, 'a', 255);
        addr[255] = '\0';
        memset(region, 'r', 63);
        region[63] = '\0';
        rc = decode_specs(V3, &c, 1, &r);
        ok(rc == MG_OK &&
               strlen(r.assignments[0].endpoints[0].address) == 255 &&
               r.assignments[0].endpoints[0].port == 65535 &&
               r.assignments[0].endpoints[0].weight == 4294967295u &&
               r.assignments[0].endpoints[0].priority == 128 &&
               strlen(r.assignments[0].endpoints[0].zone) == 63 &&
               r.assignments[0].endpoints[1].port == 1,
           "a 255-byte address, port 1 and 65535, priority 128, 63-byte "
           "locality names are accepted");
        mg_xds_response_free(&r);
    }

    /* Hand-built: an empty message has no type URL. */
    b = pack_response("", "", "", NULL, 0, &len);
    rc = mg_xds_response_decode(b, len, V3, &r, err, sizeof(err));
    ok(rc == MG_ERROR &&
           strcmp(err,
                  "DiscoveryResponse: type_url \"\", expected \"" V3 "\"") == 0,
       "an empty response has the wrong type URL: %s", err);
    free(b);
}

/*
 * A response written out by hand from the wire format, so the field
 * numbers of the response side (priority 5, port_value 3, weight 4,
 * health_status 2...) are checked too.
 */
/* clang-format off */
static const char golden_response[] =
    "\x0a\x02" "v1"                     /* 1 version_info "v1" */
    "\x12\x70"                          /* 2 resources[0]: Any, 112 bytes */
      "\x0a\x42" V3                     /*   1 type_url, 66 bytes */
      "\x12\x2a"                        /*   2 value: CLA, 42 bytes */
        "\x0a\x01" "c"                  /*     1 cluster_name "c" */
        "\x12\x25"                      /*     2 endpoints[0], 37 bytes */
          "\x0a\x06"                    /*       1 locality, 6 bytes */
            "\x0a\x01" "r"              /*         1 region "r" */
            "\x12\x01" "z"              /*         2 zone "z" */
          "\x12\x19"                    /*       2 lb_endpoints[0], 25 */
            "\x0a\x11"                  /*         1 endpoint, 17 bytes */
              "\x0a\x0f"                /*           1 address, 15 */
                "\x0a\x0d"              /*             1 socket_address */
                  "\x12\x08" "10.0.0.1" /*               2 address */
                  "\x18\x90\x3f"        /*               3 port 8080 */
            "\x10\x05"                  /*         2 health DEGRADED */
            "\x22\x02" "\x08\x07"       /*         4 weight {1: 7} */
          "\x28\x02"                    /*       5 priority 2 */
    "\x22\x42" V3                       /* 4 type_url */
    "\x2a\x01" "n";                     /* 5 nonce "n" */
/* clang-format on */

static void
test_response_golden(void)
{
    mg_xds_response_t r;
    int rc;

    is_int(strlen(V3), 66, "the v3 type URL has the 66 bytes counted above");
    is_int(sizeof(golden_response) - 1, 189, "the golden response's length");
    rc = mg_xds_response_decode((const uint8_t *)golden_response,
                                sizeof(golden_response) - 1, V3, &r, err,
                                sizeof(err));
    ok(rc == MG_OK && strcmp(r.version_info, "v1") == 0 &&
           strcmp(r.nonce, "n") == 0 && r.nassignments == 1 &&
           strcmp(r.assignments[0].cluster_name, "c") == 0 &&
           r.assignments[0].nendpoints == 1 &&
           ep_is(&r.assignments[0].endpoints[0], "10.0.0.1", 8080, 7, 2,
                 MG_XDS_HEALTH_DEGRADED, "r", "z"),
       "the response written from the wire format decodes field by field");
    mg_xds_response_free(&r);
}

/* ---- rejections ---- */

/* Expects |c| alone (or |n| of them) to fail with |reason| in err. */
static void
bad(const char *what, const char *want, const cla_spec_t *c, unsigned n,
    const char *reason)
{
    mg_xds_response_t r;
    int rc;

    rc = decode_specs(want, c, n, &r);
    ok(rc == MG_ERROR && strstr(err, reason) != NULL &&
           strchr(err, '\n') == NULL && r.assignments == NULL &&
           r.nassignments == 0,
       "%s: %s", what, err);
    if (rc == MG_OK) {
        mg_xds_response_free(&r);
    }
}

static void
bad_ep(const char *what, ep_spec_t e, const char *reason)
{
    ep_spec_t eps[2] = {EP("10.0.0.9", 80), e};
    loc_spec_t loc = {"r", "z", 0, -1, eps, 2};
    cla_spec_t c = {"users", NULL, &loc, 1, 0};

    bad(what, V3, &c, 1, reason);
}

static void
test_rejections(void)
{
    static char longname[300], longregion[80], ctlname[] = "us\ners";
    ep_spec_t one[] = {EP("10.0.0.1", 80)};
    loc_spec_t loc = {"r", "z", 0, -1, one, 1};
    loc_spec_t locs2[] = {{"r", "z", 0, -1, one, 1}, {"r", "y", 0, 0, one, 1}};
    cla_spec_t c;
    mg_xds_response_t r;
    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff}, *b;
    size_t len;
    int rc;

    memset(longname, 'x', 256);
    memset(longregion, 'r', 64);

    rc = mg_xds_response_decode(junk, sizeof(junk), V3, &r, err, sizeof(err));
    ok(rc == MG_ERROR &&
           strcmp(err, "DiscoveryResponse: undecodable (4 bytes)") == 0,
       "undecodable bytes: %s", err);

    b = calloc(1, MG_XDS_MAX_MESSAGE + 1);
    rc = mg_xds_response_decode(b, MG_XDS_MAX_MESSAGE + 1, V3, &r, err,
                                sizeof(err));
    ok(rc == MG_ERROR && strstr(err, "16777217 bytes, more than the 16777216"),
       "a message over MG_XDS_MAX_MESSAGE: %s", err);
    free(b);

    c = (cla_spec_t){"users", NULL, &loc, 1, 0};
    b = pack_response("type.googleapis.com/envoy.config.cluster.v3.Cluster",
                      "v1", "n1", &c, 1, &len);
    rc = mg_xds_response_decode(b, len, V3, &r, err, sizeof(err));
    ok(rc == MG_ERROR &&
           strstr(err, "DiscoveryResponse: type_url \"type.googleapis.com/"
                       "envoy.config.cluster.v3.Cluster\", expected"),
       "a response of another type: %s", err);
    ok(strcmp(r.nonce, "n1") == 0 && strcmp(r.version_info, "v1") == 0,
       "a rejected response still gives its nonce and version for the NACK");
    free(b);

    c.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    bad("a resource of another type", V3, &c, 1,
        "resources[0]: type_url \"type.googleapis.com/envoy.config.cluster."
        "v3.Cluster\", expected \"" V3 "\"");

    c = (cla_spec_t){"users", NULL, &loc, 1, 1};
    bad("an undecodable resource", V3, &c, 1,
        "resources[0]: undecodable ClusterLoadAssignment (3 bytes)");

    c = (cla_spec_t){"", NULL, &loc, 1, 0};
    bad("no cluster_name", V3, &c, 1,
        "resources[0]: ClusterLoadAssignment without cluster_name");

    c = (cla_spec_t){longname, NULL, &loc, 1, 0};
    bad("a cluster name too long", V3, &c, 1,
        "cluster_name of 256 bytes, longer than 255");
    {
        char cut[160];

        snprintf(cut, sizeof(cut), "cluster \"%.128s...\": ", longname);
        ok(strstr(err, cut) != NULL,
           "the name is cut after 128 bytes in the reason");
    }

    c = (cla_spec_t){ctlname, NULL, &loc, 1, 0};
    bad("a control character in a cluster name", V3, &c, 1,
        "cluster \"us\\x0aers\": control character in cluster_name");

    {
        cla_spec_t twice[] = {{"b", NULL, &loc, 1, 0},
                              {"a", NULL, &loc, 1, 0},
                              {"b", NULL, &loc, 1, 0}};

        bad("the same cluster twice", V3, twice, 3,
            "cluster \"b\": more than one ClusterLoadAssignment");
    }

    bad_ep("an LbEndpoint without endpoint",
           (ep_spec_t){NULL, 80, -1, 0, 0, EP_NO_ENDPOINT},
           "cluster \"users\", endpoints[0].lb_endpoints[1]: no socket "
           "address");
    bad_ep("an Endpoint without address",
           (ep_spec_t){NULL, 80, -1, 0, 0, EP_NO_ADDRESS},
           "endpoints[0].lb_endpoints[1]: no socket address");
    bad_ep("an Address that is no socket address",
           (ep_spec_t){NULL, 80, -1, 0, 0, EP_NO_SOCKET},
           "endpoints[0].lb_endpoints[1]: no socket address (a pipe");
    bad_ep("UDP", (ep_spec_t){"10.0.0.2", 53, -1, 0, 1, 0},
           "cluster \"users\", endpoint \"10.0.0.2\" "
           "(endpoints[0].lb_endpoints[1]): protocol UDP, only TCP is "
           "supported");
    bad_ep("port 0", (ep_spec_t){"10.0.0.2", 0, -1, 0, 0, 0},
           "endpoint \"10.0.0.2\" (endpoints[0].lb_endpoints[1]): "
           "port_value 0 outside 1..65535");
    bad_ep("port 65536", (ep_spec_t){"10.0.0.2", 65536, -1, 0, 0, 0},
           "port_value 65536 outside 1..65535");
    bad_ep("no port", (ep_spec_t){"10.0.0.2", -1, -1, 0, 0, 0},
           "no port_value");
    bad_ep("weight 0", (ep_spec_t){"10.0.0.2", 80, 0, 0, 0, 0},
           "cluster \"users\", endpoint \"10.0.0.2\" "
           "(endpoints[0].lb_endpoints[1]): load_balancing_weight 0, must be "
           "at least 1");
    bad_ep("an empty address", (ep_spec_t){"", 80, -1, 0, 0, 0},
           "endpoints[0].lb_endpoints[1]: empty address");
    bad_ep("an address too long", (ep_spec_t){longname, 80, -1, 0, 0, 0},
           "address of 256 bytes, longer than 255");
    bad_ep("a space in an address", (ep_spec_t){"10.0.0.2 x", 80, -1, 0, 0, 0},
           "address \"10.0.0.2 x\" has a byte outside printable ASCII");
    bad_ep("an unknown health status", (ep_spec_t){"10.0.0.2", 80, -1, 6, 0, 0},
           "unknown health_status 6");

    c = (cla_spec_t){"users", NULL, locs2, 2, 0};
    bad("a locality weight of 0", V3, &c, 1,
        "cluster \"users\", endpoints[1]: load_balancing_weight 0, must be "
        "at least 1");

    {
        loc_spec_t l = {"r", "z", 129, -1, one, 1};

        c = (cla_spec_t){"users", NULL, &l, 1, 0};
        bad("priority 129", V3, &c, 1,
            "cluster \"users\", endpoints[0]: priority 129 over 128");
        l = (loc_spec_t){longregion, "z", 0, -1, one, 1};
        bad("a region too long", V3, &c, 1,
            "endpoints[0]: region of 64 bytes, longer than 63");
        l = (loc_spec_t){"r", longregion, 0, -1, one, 1};
        bad("a zone too long", V3, &c, 1,
            "endpoints[0]: zone of 64 bytes, longer than 63");
        l = (loc_spec_t){"r\tx", "z", 0, -1, one, 1};
        bad("a control character in a region", V3, &c, 1,
            "endpoints[0]: control character in the locality");
    }

    c = (cla_spec_t){"users", NULL, &loc, 1, 0};
    b = pack_response(V3, longname, "n1", &c, 1, &len);
    rc = mg_xds_response_decode(b, len, V3, &r, err, sizeof(err));
    ok(rc == MG_ERROR &&
           strcmp(err, "DiscoveryResponse: version_info of 256 bytes, "
                       "longer than 255") == 0,
       "a version_info too long: %s", err);
    free(b);
    b = pack_response(V3, "v1", longname, &c, 1, &len);
    rc = mg_xds_response_decode(b, len, V3, &r, err, sizeof(err));
    ok(rc == MG_ERROR && strstr(err, "nonce of 256 bytes, longer than 255"),
       "a nonce too long: %s", err);
    free(b);

    /* A small reason buffer gets a cut reason, still a string. */
    b = pack_response(V3, "v1", "n1", &c, 1, &len);
    memset(err, 'x', sizeof(err));
    rc = mg_xds_response_decode(b, len, V2, &r, err, 12);
    ok(rc == MG_ERROR && strlen(err) == 11 &&
           strncmp(err, "DiscoveryRe", 11) == 0,
       "a short reason buffer: the reason is cut and terminated");
    rc = mg_xds_response_decode(b, len, V2, &r, NULL, 0);
    is_int(rc, MG_ERROR, "no reason buffer at all");
    free(b);
}

static void
test_limits(void)
{
    ep_spec_t *e = calloc(MG_XDS_MAX_ENDPOINTS + 1, sizeof(*e));
    loc_spec_t half[2];
    cla_spec_t c, *many;
    mg_xds_response_t r;
    unsigned i, n;
    int rc;

    for (i = 0; i <= MG_XDS_MAX_ENDPOINTS; i++) {
        e[i] = (ep_spec_t)EP("10.0.0.1", 1 + i % 65535);
    }
    /* Across two localities, so the bound is per assignment. */
    half[0] = (loc_spec_t){"r", "a", 0, -1, e, MG_XDS_MAX_ENDPOINTS / 2};
    half[1] = (loc_spec_t){"r",
                           "b",
                           1,
                           -1,
                           e + MG_XDS_MAX_ENDPOINTS / 2,
                           MG_XDS_MAX_ENDPOINTS / 2};
    c = (cla_spec_t){"big", NULL, half, 2, 0};
    rc = decode_specs(V3, &c, 1, &r);
    ok(rc == MG_OK && r.assignments[0].nendpoints == MG_XDS_MAX_ENDPOINTS &&
           r.assignments[0].endpoints[MG_XDS_MAX_ENDPOINTS - 1].priority == 1,
       "%d endpoints in one assignment are accepted", MG_XDS_MAX_ENDPOINTS);
    mg_xds_response_free(&r);

    half[1].neps++;
    bad("one endpoint over the bound", V3, &c, 1,
        "cluster \"big\": more than 10000 endpoints");

    /* Each assignment within its bound, the response over its own. */
    n = MG_XDS_MAX_RESPONSE_ENDPOINTS / MG_XDS_MAX_ENDPOINTS + 1;
    many = calloc(n, sizeof(*many));
    half[1].neps--;
    for (i = 0; i < n; i++) {
        char *name = malloc(16);

        snprintf(name, 16, "c%u", i);
        many[i] = (cla_spec_t){name, NULL, half, 2, 0};
    }
    bad("a response over MG_XDS_MAX_RESPONSE_ENDPOINTS", V3, many, n,
        "the response has more than 100000 endpoints");
    rc = decode_specs(V3, many, n - 1, &r);
    ok(rc == MG_OK && r.nassignments == n - 1,
       "exactly MG_XDS_MAX_RESPONSE_ENDPOINTS endpoints are accepted");
    mg_xds_response_free(&r);
    for (i = 0; i < n; i++) {
        free((char *)many[i].name);
    }
    free(many);
    free(e);
}

/* ---- hostile input ---- */

static uint32_t rng = 2463534242u;

static uint32_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Decodes |b| and, if it is accepted, checks what came out is in bounds.
 * 1 when fine (accepted or rejected), 0 when not. */
static int
survives(const uint8_t *b, size_t len, const char *want, unsigned *accepted)
{
    mg_xds_response_t r;
    unsigned i, j;
    int rc, fine = 1;

    err[0] = '\0';
    rc = mg_xds_response_decode(b, len, want, &r, err, sizeof(err));
    if (rc == MG_ERROR) {
        return r.assignments == NULL && err[0] != '\0' &&
               strchr(err, '\n') == NULL;
    }
    if (rc != MG_OK) {
        return 0;
    }
    (*accepted)++;
    for (i = 0; i < r.nassignments; i++) {
        const mg_xds_assignment_t *a = &r.assignments[i];

        fine &= a->cluster_name[0] != '\0' && a->nendpoints <= 10000;
        for (j = 0; j < a->nendpoints; j++) {
            const mg_xds_endpoint_t *e = &a->endpoints[j];

            fine &= e->port >= 1 && e->port <= 65535 && e->weight >= 1 &&
                    e->priority <= 128 && e->health <= 5 &&
                    e->address[0] != '\0' &&
                    memchr(e->address, 0, sizeof(e->address)) != NULL;
        }
    }
    mg_xds_response_free(&r);
    return fine;
}

static void
test_hostile(void)
{
    ep_spec_t a[] = {{"10.0.0.1", 80, 2, 1, 0, 0}, EP("::1", 443)};
    ep_spec_t b[] = {EP("users.internal", 8080)};
    loc_spec_t locs[] = {{"eu", "a", 0, 3, a, 2}, {"us", "b", 1, -1, b, 1}};
    cla_spec_t c[] = {{"users", NULL, locs, 2, 0},
                      {"orders", NULL, locs + 1, 1, 0}};
    uint8_t *valid, *m, rb[512];
    unsigned i, j, fine, accepted;
    size_t len, n;

    valid = pack_response(V3, "v9", "n9", c, 2, &len);
    m = malloc(len);

    fine = accepted = 0;
    for (n = 0; n < len; n++) {
        memcpy(m, valid, n);
        fine += survives(m, n, V3, &accepted);
    }
    ok(fine == len,
       "every truncation of a %zu-byte response is decoded or "
       "rejected cleanly (%u accepted)",
       len, accepted);

    fine = accepted = 0;
    for (n = 0; n < len; n++) {
        static const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80, 0xff};

        for (j = 0; j < sizeof(vals) + 8; j++) {
            memcpy(m, valid, len);
            m[n] = j < sizeof(vals)
                       ? vals[j]
                       : (uint8_t)(m[n] ^ (1u << (j - sizeof(vals))));
            fine += survives(m, len, V3, &accepted);
        }
    }
    ok(fine == len * (5 + 8),
       "every byte of it replaced (%zu variants): "
       "decoded or rejected cleanly (%u accepted)",
       len * (5 + 8), accepted);

    fine = accepted = 0;
    for (i = 0; i < 20000; i++) {
        n = rnd() % sizeof(rb);
        for (j = 0; j < n; j++) {
            rb[j] = (uint8_t)rnd();
        }
        fine += survives(rb, n, V3, &accepted);
    }
    is_int(fine, 20000, "20000 buffers of random bytes fail cleanly");

    /* Random bytes as the resource, behind a valid envelope, to reach
     * the ClusterLoadAssignment decoder. */
    fine = accepted = 0;
    for (i = 0; i < 20000; i++) {
        response_pb_t rs =
            ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
        any_pb_t any = GOOGLE__PROTOBUF__ANY__INIT, *anyp = &any;
        uint8_t out[1024];

        n = rnd() % 256;
        for (j = 0; j < n; j++) {
            rb[j] = (uint8_t)rnd();
        }
        any.type_url = V3;
        any.value.data = rb;
        any.value.len = n;
        rs.type_url = V3;
        rs.n_resources = 1;
        rs.resources = &anyp;
        len = envoy__service__discovery__v3__discovery_response__pack(&rs, out);
        fine += survives(out, len, V3, &accepted);
    }
    is_int(fine, 20000,
           "20000 random ClusterLoadAssignments fail cleanly "
           "or decode in bounds");

    free(m);
    free(valid);
}

int
main(void)
{
    test_request_roundtrip();
    test_request_golden();
    test_response_localities();
    test_response_health();
    test_response_ipv6_v2();
    test_response_shapes();
    test_response_golden();
    test_rejections();
    test_limits();
    test_hostile();
    return done_testing();
}
