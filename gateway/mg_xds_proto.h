/*
 * The protobuf side of xDS endpoint discovery (EDS, alone or over ADS):
 * DiscoveryRequest out, DiscoveryResponse of ClusterLoadAssignments in,
 * as plain C structs, so the xDS client never sees protobuf-c.
 *
 * The messages are Envoy's v3 ones (proto/, a subset with the same
 * package names and field numbers). The v2 API that older control planes
 * serve numbers every field used here the same way, so one encoder and one
 * decoder speak both: only the service path and the type URL differ, and
 * the caller picks them from the constants below.
 *
 * The decoder checks everything the proxy relies on and fails a response
 * as a whole with a one-line reason, which the caller sends back as the
 * NACK's error_detail while it keeps the last good endpoints.
 */
#ifndef MG_XDS_PROTO_H
#define MG_XDS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "mg_core.h"

#define MG_XDS_V3_CLA_TYPE_URL                                                 \
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
#define MG_XDS_V3_EDS_PATH                                                     \
    "/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints"
#define MG_XDS_V3_ADS_PATH                                                     \
    "/envoy.service.discovery.v3.AggregatedDiscoveryService"                   \
    "/StreamAggregatedResources"

#define MG_XDS_V2_CLA_TYPE_URL                                                 \
    "type.googleapis.com/envoy.api.v2.ClusterLoadAssignment"
#define MG_XDS_V2_EDS_PATH                                                     \
    "/envoy.api.v2.EndpointDiscoveryService/StreamEndpoints"
#define MG_XDS_V2_ADS_PATH                                                     \
    "/envoy.service.discovery.v2.AggregatedDiscoveryService"                   \
    "/StreamAggregatedResources"

/* The gRPC length prefix: a compressed flag and a 4-byte length. */
#define MG_XDS_GRPC_PREFIX 5
/* The largest message either way: the caller refuses a longer gRPC
 * message before buffering it, the decoder refuses it too. */
#define MG_XDS_MAX_MESSAGE (16u * 1024 * 1024)
/* Endpoints in one ClusterLoadAssignment, and in one whole response: each
 * takes sizeof(mg_xds_endpoint_t) once decoded. */
#define MG_XDS_MAX_ENDPOINTS 10000
#define MG_XDS_MAX_RESPONSE_ENDPOINTS 100000
/* The lowest priority a locality may have (Envoy's bound too). */
#define MG_XDS_MAX_PRIORITY 128

#define MG_XDS_NAME_LEN 256    /* names and versions, with the NUL */
#define MG_XDS_LOCALITY_LEN 64 /* region and zone, with the NUL */

/* google.rpc.Code of a NACK for an update that fails validation. */
#define MG_XDS_GRPC_INVALID_ARGUMENT 3

/* An endpoint's health as the server gives it: Envoy's HealthStatus. */
#define MG_XDS_HEALTH_UNKNOWN 0 /* taken as healthy */
#define MG_XDS_HEALTH_HEALTHY 1
#define MG_XDS_HEALTH_UNHEALTHY 2
#define MG_XDS_HEALTH_DRAINING 3
#define MG_XDS_HEALTH_TIMEOUT 4
#define MG_XDS_HEALTH_DEGRADED 5

/* What a DiscoveryRequest carries. NULL strings are sent as "". */
typedef struct mg_xds_request_s {
    const char *version_info;   /* last accepted; "" = none */
    const char *response_nonce; /* of the response (N)ACKed; "" = none */
    const char *type_url;       /* MG_XDS_V3_CLA_TYPE_URL or _V2_ */
    const char *const *resource_names;
    unsigned nresource_names;
    /* The node, in a stream's first request; node_id NULL = no node. The
     * locality is sent when region or zone is set. */
    const char *node_id;
    const char *node_cluster;
    const char *region;
    const char *zone;
    const char *user_agent_version; /* PACKAGE_VERSION; NULL = not sent */
    /* A NACK: google.rpc code (MG_XDS_GRPC_INVALID_ARGUMENT) and reason;
     * 0 = an ACK or a first request, no error_detail. */
    int error_code;
    const char *error_message;
} mg_xds_request_t;

/* One endpoint of an assignment. */
typedef struct mg_xds_endpoint_s {
    char address[MG_XDS_NAME_LEN]; /* IP literal or host name as sent */
    unsigned port;                 /* 1..65535 */
    unsigned weight;               /* the lb_endpoint's, 1 when unset */
    unsigned priority;             /* its locality's, 0..128 */
    unsigned health;               /* MG_XDS_HEALTH_* */
    char region[MG_XDS_LOCALITY_LEN];
    char zone[MG_XDS_LOCALITY_LEN];
} mg_xds_endpoint_t;

/* One ClusterLoadAssignment, its localities flattened in message order. */
typedef struct mg_xds_assignment_s {
    char cluster_name[MG_XDS_NAME_LEN];
    mg_xds_endpoint_t *endpoints; /* malloc'd; NULL when none */
    unsigned nendpoints;
} mg_xds_assignment_t;

typedef struct mg_xds_response_s {
    char version_info[MG_XDS_NAME_LEN];
    char nonce[MG_XDS_NAME_LEN];
    char type_url[MG_XDS_NAME_LEN];
    mg_xds_assignment_t *assignments; /* malloc'd; NULL when none */
    unsigned nassignments;
} mg_xds_response_t;

/*
 * Encodes |r| as one gRPC message (the 5-byte prefix, then the protobuf
 * DiscoveryRequest) into a malloc'd buffer of *|len| bytes, which the
 * caller frees. NULL when out of memory, or when the message would be
 * longer than MG_XDS_MAX_MESSAGE.
 */
uint8_t *mg_xds_request_encode(const mg_xds_request_t *r, size_t *len);

/*
 * Decodes one DiscoveryResponse: |buf| holds the protobuf bytes of one
 * gRPC message, without its prefix. The response's type URL and every
 * resource's must be |want_type_url| (MG_XDS_V3_CLA_TYPE_URL or
 * MG_XDS_V2_CLA_TYPE_URL, as the caller asked for), each resource a valid
 * ClusterLoadAssignment whose cluster appears once.
 *
 * Returns MG_OK with |out| filled (free it with mg_xds_response_free()),
 * or MG_ERROR with a one-line reason in |err| (at most |errlen| bytes with
 * the NUL) naming the cluster and the endpoint: undecodable bytes, another
 * type URL, an endpoint without a TCP socket address, a port outside
 * 1..65535, a weight of 0, a priority over 128, an unknown health status,
 * a name too long, too many endpoints, a message longer than
 * MG_XDS_MAX_MESSAGE, or out of memory. Then |out| has no assignments,
 * but its nonce (for the NACK), version_info and type_url are set when
 * the response could be read that far, "" otherwise.
 */
int mg_xds_response_decode(const uint8_t *buf, size_t len,
                           const char *want_type_url, mg_xds_response_t *out,
                           char *err, size_t errlen);

/* Frees what mg_xds_response_decode() put in |r| and empties it. */
void mg_xds_response_free(mg_xds_response_t *r);

#endif /* MG_XDS_PROTO_H */
