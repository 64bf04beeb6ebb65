#!/usr/bin/env node
'use strict';

// An xDS control plane for meshgate's tests (t/90eds.t) and bench/eds-push:
// it serves ClusterLoadAssignments (EDS) over gRPC with Envoy's real v3
// .proto files (from @grpc/grpc-js-xds), on the services
//
//   /envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints
//   /envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources
//   /envoy.api.v2.EndpointDiscoveryService/StreamEndpoints            (v2)
//   /envoy.service.discovery.v2.AggregatedDiscoveryService/StreamAggregatedResources
//
// with the type URL of each API (v3: envoy.config.endpoint.v3.
// ClusterLoadAssignment, v2: envoy.api.v2.ClusterLoadAssignment), following
// the state-of-the-world protocol: a new stream (or a new resource name on
// it) gets the current assignments of the names it asks for that exist; a
// request carrying a response nonce is the ACK (no error_detail) or NACK
// (error_detail) of that response; a stale nonce is recorded and ignored.
// A response carries only the assignments that changed (EDS resources
// left out of a response are kept by the client).
//
//   node control-plane.js --port N --control-port M [--host 127.0.0.1]
//        [--version-prefix v] [--tls-cert F --tls-key F [--tls-client-ca F]]
//        [--state FILE] [--watch-parent] [--verbose]
//
// Prints "listening GRPC_PORT CONTROL_PORT" once both are bound (0 picks a
// free port). --state FILE loads assignments at start, as the body of
// POST /set. Exits 0 on SIGTERM or SIGINT, at once, dropping its
// connections (a crash, as the client sees it).
//
// The control API (HTTP/1.1 on 127.0.0.1:M, JSON in and out):
//
//   POST /set      {"cluster": NAME, "endpoints": [EP, ...], "push": true}
//                  or {"assignments": {NAME: [EP, ...], ...}}: stores the
//                  assignments under a new version and pushes them (one
//                  response per subscribed stream, new version and nonce)
//                  unless "push" is false. EP = {"address": "127.0.0.1",
//                  "port": 8081, "region": "", "zone": "", "sub_zone": "",
//                  "priority": 0, "weight": W, "health": "HEALTHY" |
//                  "UNHEALTHY" | "DRAINING" | "TIMEOUT" | "DEGRADED" |
//                  "UNKNOWN", "locality_weight": W}; endpoints with the same
//                  region, zone, sub_zone and priority form one locality.
//                  "raw": {NAME: CLA object} sends a ClusterLoadAssignment
//                  as given (proto field names). Answers {"version", "pushed":
//                  [{"stream", "nonce", "time"}]}, time = when the response
//                  was written (ms since the epoch, with a fraction).
//   POST /push     {"clusters": [NAME, ...]} (default: all): the stored
//                  assignments again, under a new version.
//   POST /invalid  {"cluster": NAME, "kind": K}: pushes a response that a
//                  correct client must NACK, without storing it: K =
//                  "port0" (an endpoint with port 0), "bad-address"
//                  ("not an address!"), "no-address" (an endpoint without
//                  an address), "weight0" (an endpoint of weight 0),
//                  "priority129" (a locality of priority 129, past
//                  Envoy's 128), "bad-health" (health_status 99),
//                  "garbage" (an Any whose bytes are not a protobuf
//                  message), "wrong-type" (an Any of another type URL),
//                  "duplicate" (the cluster twice in one response).
//                  Answers as /set.
//   POST /remove   {"cluster": NAME}: forgets an assignment (not pushed:
//                  EDS has no removal in state of the world).
//   GET  /state    {"requests": [...], "responses": [...], "streams": [...],
//                  "problems": [...], "version"}; ?since=N keeps requests
//                  and responses with seq > N; ?assignments=1 adds the
//                  stored assignments.
//   POST /drop     {"hard": false}: ends every stream with status
//                  UNAVAILABLE; with "hard": true closes every connection
//                  (the gRPC server is shut down and bound again).
//   POST /exit     exits 0 after answering.
//
// Each request record: seq, time (ms since the epoch), stream, service
// (the :path), api, version_info, response_nonce, resource_names,
// type_url, node (as sent, only when sent), error_detail (only when sent),
// kind ("subscribe" | "update" | "ack" | "nack" | "stale" | "unknown-nonce"
// | "other-type"), and for an ACK or NACK the version of the response it
// answers (acked_version / nacked_version). Each response
// record: seq, time, stream, version_info, nonce, type_url, resources
// (names), invalid (kind or null). "problems" lists what a correct client
// never does (no node in a stream's first request, a type URL of the other
// API, a nonce that was never sent, an ACK with another version, a NACK
// that names the version it rejects as its version_info).

const fs = require('fs');
const http = require('http');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function usage(msg) {
    if (msg) process.stderr.write(`control-plane.js: ${msg}\n`);
    process.stderr.write('usage: node control-plane.js --port N '
        + '--control-port M [--host ADDR] [--version-prefix P] '
        + '[--tls-cert F --tls-key F [--tls-client-ca F]] [--state FILE] '
        + '[--watch-parent] [--verbose]\n');
    process.exit(2);
}

const opts = { host: '127.0.0.1', port: null, controlPort: null,
    versionPrefix: 'v', tlsCert: null, tlsKey: null, tlsClientCa: null,
    state: null, watchParent: false, verbose: false };
{
    const argv = process.argv.slice(2);
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === '--port') opts.port = val();
        else if (a === '--control-port') opts.controlPort = val();
        else if (a === '--host') opts.host = val();
        else if (a === '--version-prefix') opts.versionPrefix = val();
        else if (a === '--tls-cert') opts.tlsCert = val();
        else if (a === '--tls-key') opts.tlsKey = val();
        else if (a === '--tls-client-ca') opts.tlsClientCa = val();
        else if (a === '--state') opts.state = val();
        else if (a === '--watch-parent') opts.watchParent = true;
        else if (a === '--verbose') opts.verbose = true;
        else usage(`unknown argument ${a}`);
    }
    for (const k of ['port', 'controlPort']) {
        if (opts[k] === null || !/^\d+$/.test(opts[k])) {
            usage('--port N and --control-port M are required');
        }
    }
    if (!!opts.tlsCert !== !!opts.tlsKey) usage('--tls-cert needs --tls-key');
}

function log(line) {
    process.stdout.write(line + '\n');
}

// Wall-clock time in ms, with a fraction (the clock of time() in Perl).
function now() {
    return performance.timeOrigin + performance.now();
}

function verbose(line) {
    if (opts.verbose) log(line);
}

///////////////////////////////////////////////////////////////////////////
// Protos: Envoy's v3 files as @grpc/grpc-js-xds ships them, and ours.

const xdsDeps = path.join(path.dirname(
    require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const def = protoLoader.loadSync([
    'envoy/service/endpoint/v3/eds.proto',
    'envoy/service/discovery/v3/ads.proto',
    'envoy_api_v2_eds.proto',
    'envoy_service_discovery_v2_ads.proto',
    'codec.proto',
], {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: false,
    bytes: Buffer,
    includeDirs: [
        path.join(__dirname, 'proto'),
        path.join(xdsDeps, 'envoy-api'),
        path.join(xdsDeps, 'xds'),
        path.join(xdsDeps, 'googleapis'),
        path.join(xdsDeps, 'protoc-gen-validate'),
    ],
});
const pkg = grpc.loadPackageDefinition(def);
const encodeCla = pkg.meshgate.xdstest.Codec.service
    .EncodeClusterLoadAssignment.requestSerialize;

const TYPE = {
    v3: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    v2: 'type.googleapis.com/envoy.api.v2.ClusterLoadAssignment',
};
const HEALTH = ['UNKNOWN', 'HEALTHY', 'UNHEALTHY', 'DRAINING', 'TIMEOUT',
    'DEGRADED'];

///////////////////////////////////////////////////////////////////////////
// State

const assignments = new Map();   // cluster name -> ClusterLoadAssignment object
let versionN = 0;
let nonceN = 0;
let seq = 0;
let streamN = 0;
const requests = [];
const responses = [];
const problems = [];
const streams = new Map();       // id -> stream

function nextVersion() {
    versionN++;
    return `${opts.versionPrefix}${versionN}`;
}

function currentVersion() {
    return `${opts.versionPrefix}${versionN}`;
}

// The ClusterLoadAssignment object of |name| for a list of endpoint specs.
function claFromEndpoints(name, eps) {
    if (!Array.isArray(eps)) throw new Error(`endpoints of ${name}: not a list`);
    const localities = new Map();
    for (const ep of eps) {
        let address = ep.address;
        let port = ep.port;
        if (port === undefined && typeof address === 'string') {
            const m = /^(.*):(\d+)$/.exec(address);
            if (m) {
                address = m[1].replace(/^\[(.*)\]$/, '$1');
                port = Number(m[2]);
            }
        }
        const loc = { region: ep.region || '', zone: ep.zone || '',
            sub_zone: ep.sub_zone || '' };
        const prio = ep.priority || 0;
        const key = JSON.stringify([loc.region, loc.zone, loc.sub_zone, prio]);
        if (!localities.has(key)) {
            const l = { locality: loc, priority: prio, lb_endpoints: [] };
            if (ep.locality_weight) {
                l.load_balancing_weight = { value: ep.locality_weight };
            }
            localities.set(key, l);
        }
        const sa = { port_value: port || 0 };
        if (address !== undefined && address !== null) sa.address = address;
        const lbe = { endpoint: { address: { socket_address: sa } } };
        if (ep.no_address) delete lbe.endpoint.address;
        if (ep.hostname) lbe.endpoint.hostname = ep.hostname;
        if (ep.health !== undefined) {
            const h = String(ep.health).toUpperCase();
            if (!HEALTH.includes(h)) throw new Error(`bad health ${ep.health}`);
            lbe.health_status = h;
        }
        if (ep.weight !== undefined) {
            lbe.load_balancing_weight = { value: ep.weight };
        }
        localities.get(key).lb_endpoints.push(lbe);
    }
    return { cluster_name: name, endpoints: [...localities.values()] };
}

function summary(cla) {
    const n = (cla.endpoints || []).reduce(
        (s, l) => s + (l.lb_endpoints || []).length, 0);
    return `${n} endpoints`;
}

///////////////////////////////////////////////////////////////////////////
// Streams

// One gRPC stream of a client: |service| is the :path of its method.
function handler(service, api, ads) {
    return (call) => {
        const id = ++streamN;
        const st = {
            id, service, api, ads, call, open: true, node: null,
            subs: null,              // Set of resource names, once subscribed
            sent: new Map(),         // nonce -> { version, names, invalid }
            last_nonce: null, acked_version: null, nacked_version: null,
            requests: 0, opened: now(), closed: null,
            peer: call.getPeer(),
            metadata: call.metadata ? call.metadata.getMap() : {},
        };
        streams.set(id, st);
        verbose(`stream ${id} opened: ${service} from ${st.peer}`);
        const close = (why) => {
            if (!st.open) return;
            st.open = false;
            st.closed = now();
            verbose(`stream ${id} closed (${why})`);
        };
        call.on('data', (req) => onRequest(st, req));
        call.on('end', () => {
            close('client end');
            if (!call.cancelled) {
                try { call.end(); } catch (e) { /* gone */ }
            }
        });
        call.on('cancelled', () => close('cancelled'));
        call.on('error', (e) => close(`error: ${e.message}`));
        call.on('close', () => close('close'));
    };
}

function problem(st, text) {
    problems.push({ seq: seq, stream: st.id, problem: text });
    verbose(`problem: stream ${st.id}: ${text}`);
}

function onRequest(st, req) {
    st.requests++;
    const rec = {
        seq: ++seq, time: now(), stream: st.id, service: st.service,
        api: st.api,
        version_info: req.version_info || '',
        response_nonce: req.response_nonce || '',
        resource_names: req.resource_names || [],
        type_url: req.type_url || '',
    };
    if (req.node) rec.node = req.node;
    if (req.error_detail) rec.error_detail = req.error_detail;
    requests.push(rec);

    if (st.requests === 1 && !req.node) {
        problem(st, 'the first request of the stream has no node');
    }
    if (req.node && !st.node) st.node = req.node;
    const want = TYPE[st.api];
    if (rec.type_url === '' && st.ads) {
        problem(st, 'an ADS request without type_url');
    }
    if (rec.type_url !== '' && rec.type_url !== want) {
        const other = Object.keys(TYPE).find((k) => TYPE[k] === rec.type_url);
        if (other) {
            problem(st, `type_url of API ${other} on a ${st.api} service`);
        }
        // Another resource type (ADS): nothing to serve.
        rec.kind = 'other-type';
        verbose(`stream ${st.id}: request for ${rec.type_url} ignored`);
        return;
    }

    const names = new Set(rec.resource_names);
    if (rec.response_nonce !== '') {
        const sent = st.sent.get(rec.response_nonce);
        if (!sent) {
            problem(st, `nonce ${rec.response_nonce} was never sent on the stream`);
            rec.kind = 'unknown-nonce';
            return;
        }
        if (rec.response_nonce !== st.last_nonce) {
            // Stale: a newer response is on its way; it will be answered.
            rec.kind = 'stale';
            return;
        }
        if (req.error_detail) {
            rec.kind = 'nack';
            rec.nacked_version = sent.version;
            st.nacked_version = sent.version;
            sent.nacked = rec.seq;
            if (rec.version_info === sent.version) {
                problem(st, `NACK of ${sent.version} names that version`);
            }
            verbose(`stream ${st.id}: NACK of ${sent.version}: `
                + `${req.error_detail.message || ''}`);
        } else {
            rec.kind = 'ack';
            rec.acked_version = sent.version;
            st.acked_version = sent.version;
            sent.acked = rec.seq;
            if (rec.version_info !== sent.version) {
                problem(st, `ACK of ${sent.version} says version `
                    + `"${rec.version_info}"`);
            }
            verbose(`stream ${st.id}: ACK of ${sent.version}`);
        }
    } else {
        rec.kind = st.subs === null ? 'subscribe' : 'update';
    }

    // A change of the subscription: send what is known of the new names.
    const old = st.subs || new Set();
    const added = [...names].filter((n) => !old.has(n));
    const changed = st.subs === null || added.length > 0
        || [...old].some((n) => !names.has(n));
    st.subs = names;
    if (changed) {
        rec.subscribed = [...names];
        const known = added.filter((n) => assignments.has(n));
        if (known.length) respond(st, known, currentVersion());
    }
}

// Sends one DiscoveryResponse with the assignments of |names| (or, with
// |invalid|, the resources it gives) on stream |st|.
function respond(st, names, version, invalid) {
    if (!st.open) return null;
    const typeUrl = TYPE[st.api];
    let resources;
    if (invalid) {
        resources = invalid.resources(typeUrl);
    } else {
        resources = names.map((n) => ({ type_url: typeUrl,
            value: encodeCla(assignments.get(n)) }));
    }
    const nonce = `${opts.versionPrefix}n${++nonceN}`;
    const msg = {
        version_info: version,
        resources,
        type_url: typeUrl,
        nonce,
        control_plane: { identifier: 'meshgate-test-control-plane' },
    };
    try {
        st.call.write(msg);
    } catch (e) {
        verbose(`stream ${st.id}: write failed: ${e.message}`);
        return null;
    }
    st.sent.set(nonce, { version, names, invalid: invalid ? invalid.kind : null });
    st.last_nonce = nonce;
    responses.push({ seq: ++seq, time: now(), stream: st.id,
        version_info: version, nonce, type_url: typeUrl, resources: names,
        invalid: invalid ? invalid.kind : null });
    verbose(`stream ${st.id}: sent ${version} nonce ${nonce}: `
        + `${names.join(',')}${invalid ? ` (invalid: ${invalid.kind})` : ''}`);
    return nonce;
}

// Pushes the assignments of |names| to every open stream subscribed to
// any of them, under |version|.
function push(names, version, invalid) {
    const pushed = [];
    for (const st of streams.values()) {
        if (!st.open || !st.subs) continue;
        const mine = names.filter((n) => st.subs.has(n));
        if (!mine.length) continue;
        const nonce = respond(st, mine, version, invalid);
        if (nonce) pushed.push({ stream: st.id, nonce, time: now() });
    }
    return pushed;
}

// What /invalid sends: the resources of a response a client must NACK.
function invalidUpdate(name, kind) {
    const base = assignments.has(name) ? assignments.get(name)
        : claFromEndpoints(name, []);
    const bad = JSON.parse(JSON.stringify(base));
    const firstLocality = () => {
        if (!bad.endpoints || !bad.endpoints.length) {
            bad.endpoints = [{ locality: {}, priority: 0, lb_endpoints: [] }];
        }
        return bad.endpoints[0];
    };
    const addEndpoint = (sa) => {
        firstLocality().lb_endpoints.push({ endpoint: sa === null ? {}
            : { address: { socket_address: sa } } });
    };
    let resources;
    switch (kind) {
    case 'port0':
        addEndpoint({ address: '127.0.0.1', port_value: 0 });
        break;
    case 'bad-address':
        addEndpoint({ address: 'not an address!', port_value: 8080 });
        break;
    case 'weight0':
        addEndpoint({ address: '127.0.0.1', port_value: 9 });
        firstLocality().lb_endpoints.slice(-1)[0].load_balancing_weight =
            { value: 0 };
        break;
    case 'priority129':
        bad.endpoints = (bad.endpoints || []).concat([{ locality: {},
            priority: 129, lb_endpoints: [{ endpoint: { address: {
                socket_address: { address: '127.0.0.1', port_value: 9 } } } }] }]);
        break;
    case 'bad-health':
        addEndpoint({ address: '127.0.0.1', port_value: 9 });
        firstLocality().lb_endpoints.slice(-1)[0].health_status = 99;
        break;
    case 'duplicate':
        resources = (typeUrl) => [base, base].map((c) => ({ type_url: typeUrl,
            value: encodeCla(c) }));
        break;
    case 'no-address':
        addEndpoint(null);
        break;
    case 'garbage':
        resources = (typeUrl) => [{ type_url: typeUrl,
            value: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]) }];
        break;
    case 'wrong-type':
        resources = () => [{
            type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
            value: encodeCla(base) }];
        break;
    default:
        throw new Error(`unknown kind ${kind}`);
    }
    if (!resources) {
        resources = (typeUrl) => [{ type_url: typeUrl, value: encodeCla(bad) }];
    }
    return { kind, resources };
}

///////////////////////////////////////////////////////////////////////////
// The control API

function setAssignments(body) {
    const next = new Map();
    if (body.cluster !== undefined) {
        next.set(body.cluster, claFromEndpoints(body.cluster,
            body.endpoints || []));
    }
    for (const [n, eps] of Object.entries(body.assignments || {})) {
        next.set(n, claFromEndpoints(n, eps));
    }
    for (const [n, cla] of Object.entries(body.raw || {})) {
        next.set(n, Object.assign({ cluster_name: n }, cla));
    }
    if (!next.size) throw new Error('nothing to set');
    // Encode once now, so that a bad object fails here, not on a stream.
    for (const cla of next.values()) encodeCla(cla);
    const version = nextVersion();
    for (const [n, cla] of next) assignments.set(n, cla);
    log(`set ${version}: ${[...next].map(([n, c]) => `${n} (${summary(c)})`)
        .join(', ')}`);
    const pushed = body.push === false ? [] : push([...next.keys()], version);
    return { version, pushed };
}

let server = null;

function dropStreams(hard) {
    let n = 0;
    for (const st of streams.values()) {
        if (!st.open) continue;
        n++;
        st.open = false;
        st.closed = now();
        if (!hard) {
            try {
                st.call.emit('error', { code: grpc.status.UNAVAILABLE,
                    details: 'dropped by the test control plane' });
            } catch (e) { /* gone */ }
        }
    }
    if (hard) {
        server.forceShutdown();
        return startGrpc(Number(boundPort)).then(() => n);
    }
    return Promise.resolve(n);
}

function stateJson(since, withAssignments) {
    return {
        version: currentVersion(),
        requests: requests.filter((r) => r.seq > since),
        responses: responses.filter((r) => r.seq > since),
        streams: [...streams.values()].map((st) => ({
            id: st.id, service: st.service, api: st.api, ads: st.ads,
            open: st.open, peer: st.peer, node: st.node,
            resource_names: st.subs ? [...st.subs] : null,
            last_nonce: st.last_nonce, acked_version: st.acked_version,
            nacked_version: st.nacked_version, requests: st.requests,
            opened: st.opened, closed: st.closed, metadata: st.metadata,
        })),
        problems,
        assignments: withAssignments
            ? Object.fromEntries([...assignments]) : undefined,
    };
}

function control(req, res) {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
        const answer = (code, obj) => {
            const text = JSON.stringify(obj) + '\n';
            res.writeHead(code, { 'content-type': 'application/json',
                'content-length': Buffer.byteLength(text) });
            res.end(text);
        };
        let json = {};
        if (body.trim() !== '') {
            try {
                json = JSON.parse(body);
            } catch (e) {
                answer(400, { error: `bad JSON: ${e.message}` });
                return;
            }
        }
        const url = new URL(req.url, 'http://control');
        const route = `${req.method} ${url.pathname}`;
        try {
            if (route === 'POST /set') {
                answer(200, setAssignments(json));
            } else if (route === 'POST /push') {
                const names = json.clusters || [...assignments.keys()];
                const version = nextVersion();
                answer(200, { version,
                    pushed: push(names.filter((n) => assignments.has(n)),
                        version) });
            } else if (route === 'POST /invalid') {
                if (typeof json.cluster !== 'string') {
                    throw new Error('"cluster" is required');
                }
                const inv = invalidUpdate(json.cluster, json.kind || 'port0');
                const version = nextVersion();
                log(`invalid ${version}: ${json.cluster} (${inv.kind})`);
                answer(200, { version,
                    pushed: push([json.cluster], version, inv) });
            } else if (route === 'POST /remove') {
                answer(200, { removed: assignments.delete(json.cluster) });
            } else if (route === 'GET /state') {
                answer(200, stateJson(Number(url.searchParams.get('since')
                    || 0), url.searchParams.get('assignments') === '1'));
            } else if (route === 'POST /drop') {
                dropStreams(!!json.hard).then(
                    (n) => answer(200, { dropped: n }),
                    (e) => answer(500, { error: e.message }));
            } else if (route === 'POST /exit') {
                answer(200, { exiting: true });
                res.on('finish', () => stop('POST /exit'));
            } else {
                answer(404, { error: `no ${route}` });
            }
        } catch (e) {
            answer(400, { error: e.message });
        }
    });
}

///////////////////////////////////////////////////////////////////////////
// Start

function credentials() {
    if (!opts.tlsCert) return grpc.ServerCredentials.createInsecure();
    return grpc.ServerCredentials.createSsl(
        opts.tlsClientCa ? fs.readFileSync(opts.tlsClientCa) : null,
        [{ cert_chain: fs.readFileSync(opts.tlsCert),
            private_key: fs.readFileSync(opts.tlsKey) }],
        !!opts.tlsClientCa);
}

let boundPort = opts.port;

function startGrpc(port) {
    server = new grpc.Server();
    server.addService(pkg.envoy.service.endpoint.v3
        .EndpointDiscoveryService.service, {
        StreamEndpoints: handler(
            '/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints',
            'v3', false),
    });
    server.addService(pkg.envoy.service.discovery.v3
        .AggregatedDiscoveryService.service, {
        StreamAggregatedResources: handler('/envoy.service.discovery.v3.'
            + 'AggregatedDiscoveryService/StreamAggregatedResources', 'v3',
        true),
    });
    server.addService(pkg.envoy.api.v2.EndpointDiscoveryService.service, {
        StreamEndpoints: handler(
            '/envoy.api.v2.EndpointDiscoveryService/StreamEndpoints', 'v2',
            false),
    });
    server.addService(pkg.envoy.service.discovery.v2
        .AggregatedDiscoveryService.service, {
        StreamAggregatedResources: handler('/envoy.service.discovery.v2.'
            + 'AggregatedDiscoveryService/StreamAggregatedResources', 'v2',
        true),
    });
    return new Promise((resolve, reject) => {
        server.bindAsync(`${opts.host}:${port}`, credentials(), (err, p) => {
            if (err) {
                reject(err);
                return;
            }
            boundPort = p;
            resolve(p);
        });
    });
}

function stop(why) {
    verbose(`stopping: ${why}`);
    if (server) server.forceShutdown();
    process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

if (opts.state) {
    setAssignments(Object.assign(JSON.parse(fs.readFileSync(opts.state,
        'utf8')), { push: false }));
}

startGrpc(Number(opts.port)).then((grpcPort) => {
    const api = http.createServer(control);
    api.on('error', (e) => {
        process.stderr.write(`control-plane.js: control port: ${e.message}\n`);
        process.exit(1);
    });
    api.listen(Number(opts.controlPort), opts.host, () => {
        log(`listening ${grpcPort} ${api.address().port}`);
    });
}, (err) => {
    process.stderr.write(`control-plane.js: bind ${opts.host}:${opts.port}: `
        + `${err.message}\n`);
    process.exit(1);
});

if (opts.watchParent) {
    const parent = process.ppid;
    setInterval(() => {
        if (process.ppid !== parent) stop('parent exit');
    }, 500).unref();
}
