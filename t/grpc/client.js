#!/usr/bin/env node
'use strict';

// The gRPC client of t/70grpc.t: runs one scenario against the Echo service
// of echo.proto over an insecure (h2c) channel and prints ONE line of JSON
// with the outcome:
//
//   { scenario, code, code_name, details, replies, trailers, initial,
//     seen_headers, elapsed_ms, ... }
//
// code is the gRPC status (a number), or "TIMEOUT" when the scenario did
// not end within --timeout-ms (the exit status is then 1). Any other ending,
// whatever its gRPC status, exits 0; bad arguments exit 2.
//
//   node client.js --target 127.0.0.1:PORT --scenario NAME
//       [--authority HOST] [--deadline-ms N] [--count N] [--code N]
//       [--delay N] [--message TEXT] [--payload-bytes N]
//       [--metadata KEY=VALUE]... [--timeout-ms N]
//
// Scenarios:
//   unary          one call; reports the reply, initial metadata, trailers
//                  and the headers the server saw (payload_ok: the payload
//                  came back intact)
//   unary_fail     one call the server fails with status --code (5)
//   server_stream  --count replies (10): replies, in_order; with --code
//                  the server then ends the call with that status
//   client_stream  --count requests (10): count, total_bytes as the
//                  server counted them, expected_bytes
//   bidi           --count messages (10000) written as fast as flow control
//                  allows while echoes are read: sent, received, in_order
//   slow           one call the server answers after --delay ms (4000)
//   parallel       --count unary calls (20) at once on one channel:
//                  calls, ok_calls, codes, mismatched
//
// Every request carries the metadata x-user: 42 (and any --metadata).

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SCENARIOS = ['unary', 'unary_fail', 'server_stream', 'client_stream',
    'bidi', 'slow', 'parallel'];
const DEFAULT_COUNT = { server_stream: 10, client_stream: 10, bidi: 10000,
    parallel: 20 };

function usage(msg) {
    if (msg) process.stderr.write(`client.js: ${msg}\n`);
    process.stderr.write('usage: node client.js --target HOST:PORT '
        + `--scenario {${SCENARIOS.join('|')}} [--authority HOST] `
        + '[--deadline-ms N] [--count N] [--code N] [--delay N] '
        + '[--message TEXT] [--payload-bytes N] [--metadata KEY=VALUE]... '
        + '[--timeout-ms N]\n');
    process.exit(2);
}

const opts = { target: null, scenario: null, authority: null,
    deadlineMs: null, count: null, code: null, delay: null, message: 'hello',
    payloadBytes: null, metadata: [['x-user', '42']], timeoutMs: 60000 };
{
    const argv = process.argv.slice(2);
    const int = (a, v) => {
        if (!/^\d+$/.test(v)) usage(`${a} needs a number, not "${v}"`);
        return parseInt(v, 10);
    };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        switch (a) {
        case '--target': opts.target = val(); break;
        case '--scenario': opts.scenario = val(); break;
        case '--authority': opts.authority = val(); break;
        case '--deadline-ms': opts.deadlineMs = int(a, val()); break;
        case '--count': opts.count = int(a, val()); break;
        case '--code': opts.code = int(a, val()); break;
        case '--delay': opts.delay = int(a, val()); break;
        case '--message': opts.message = val(); break;
        case '--payload-bytes': opts.payloadBytes = int(a, val()); break;
        case '--timeout-ms': opts.timeoutMs = int(a, val()); break;
        case '--metadata': {
            const kv = val();
            const eq = kv.indexOf('=');
            if (eq <= 0) usage(`--metadata needs KEY=VALUE, not "${kv}"`);
            opts.metadata.push([kv.slice(0, eq).toLowerCase(),
                kv.slice(eq + 1)]);
            break;
        }
        default: usage(`unknown argument ${a}`);
        }
    }
    if (!opts.target) usage('--target is required');
    if (!SCENARIOS.includes(opts.scenario)) {
        usage(`--scenario must be one of ${SCENARIOS.join(', ')}`);
    }
    if (opts.count === null) opts.count = DEFAULT_COUNT[opts.scenario] || 1;
}

const CODE_NAMES = {};
for (const [name, num] of Object.entries(grpc.status)) {
    CODE_NAMES[num] = name;
}

const start = Date.now();
const result = {
    scenario: opts.scenario,
    code: null,
    code_name: null,
    details: null,
    replies: 0,
    trailers: {},
    initial: {},
    seen_headers: {},
    elapsed_ms: null,
};
let finished = false;

// Prints the result and exits once stdout has taken it.
function finish(exitCode) {
    if (finished) return;
    finished = true;
    result.elapsed_ms = Date.now() - start;
    if (typeof result.code === 'number') {
        result.code_name = CODE_NAMES[result.code] || null;
    }
    process.stdout.write(JSON.stringify(result) + '\n',
        () => process.exit(exitCode));
}

// The hard bound: whatever happens on the wire, the test gets an answer.
setTimeout(() => {
    result.code = 'TIMEOUT';
    result.code_name = 'TIMEOUT';
    result.details = `no outcome after ${opts.timeoutMs} ms`;
    finish(1);
}, opts.timeoutMs);

process.on('uncaughtException', (err) => {
    result.code = 'ERROR';
    result.details = `client.js: ${err.stack || err}`;
    finish(2);
});

function mdObject(md) {
    const out = {};
    if (!md) return out;
    const j = md.toJSON();
    for (const k of Object.keys(j)) {
        out[k] = j[k].map((v) => (Buffer.isBuffer(v)
            ? v.toString('base64') : String(v))).join(', ');
    }
    return out;
}

// A deterministic payload, so echoes can be compared byte for byte.
function payload(n, seed) {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
    return b;
}

function requestMetadata() {
    const md = new grpc.Metadata();
    for (const [k, v] of opts.metadata) md.add(k, v);
    return md;
}

function callOptions() {
    return opts.deadlineMs === null ? {}
        : { deadline: new Date(Date.now() + opts.deadlineMs) };
}

function setStatus(st) {
    result.code = st.code;
    result.details = st.details;
    result.trailers = mdObject(st.metadata);
}

// Writes make(0) .. make(n - 1) to |call|, waiting for 'drain' whenever
// write() says its buffer is full, then half-closes. Stops if |stopped()|.
function writeAll(call, n, make, stopped) {
    let i = 0;
    const pump = () => {
        while (i < n) {
            if (stopped()) return;
            const ok = call.write(make(i));
            i++;
            result.sent = i;
            if (!ok) {
                call.once('drain', pump);
                return;
            }
        }
        call.end();
    };
    result.sent = 0;
    pump();
}

const def = protoLoader.loadSync(path.join(__dirname, 'echo.proto'), {
    keepCase: true,
    longs: String,
    defaults: true,
    bytes: Buffer,
});
const proto = grpc.loadPackageDefinition(def).meshgate.test;

const channelOptions = {
    // What the proxy does is what a test wants to see: no transparent
    // retries that could hide a refused or reset stream.
    'grpc.enable_retries': 0,
};
if (opts.authority !== null) {
    channelOptions['grpc.default_authority'] = opts.authority;
}
const client = new proto.Echo(opts.target,
    grpc.credentials.createInsecure(), channelOptions);

// One unary call; calls done({ status, reply, initial }) once both the
// callback and the status have come.
function unaryCall(req, done) {
    let reply = null;
    let status = null;
    let initial = null;
    let answered = false;
    const maybeDone = () => {
        if (answered && status) done({ status, reply, initial });
    };
    const call = client.Unary(req, requestMetadata(), callOptions(),
        (err, resp) => {
            reply = err ? null : resp;
            answered = true;
            maybeDone();
        });
    call.on('metadata', (md) => { initial = md; });
    call.on('status', (st) => {
        status = st;
        maybeDone();
    });
}

function runUnary(req) {
    const sent = req.payload;
    unaryCall(req, ({ status, reply, initial }) => {
        setStatus(status);
        result.initial = mdObject(initial);
        if (reply) {
            result.replies = 1;
            result.message = reply.message;
            result.seen_headers = reply.seen_headers;
            result.payload_bytes = reply.payload.length;
            result.payload_ok = Buffer.compare(reply.payload, sent) === 0;
        }
        finish(0);
    });
}

function scenarioUnary() {
    runUnary({ message: opts.message, payload: payload(opts.payloadBytes || 0,
        1) });
}

function scenarioUnaryFail() {
    runUnary({ message: opts.message, fail_code: opts.code === null ? 5
        : opts.code,
        payload: Buffer.alloc(0) });
}

function scenarioSlow() {
    runUnary({ message: opts.message, delay_ms: opts.delay === null ? 4000
        : opts.delay, payload: Buffer.alloc(0) });
}

// Ends the scenario once the status and the end of the reply stream (or
// its error) have both come, whichever order they come in.
function streamEnd(call) {
    let status = null;
    let ended = false;
    const maybeDone = () => {
        if (status && ended) {
            setStatus(status);
            finish(0);
        }
    };
    call.on('metadata', (md) => { result.initial = mdObject(md); });
    call.on('status', (st) => {
        status = st;
        maybeDone();
    });
    call.on('end', () => {
        ended = true;
        maybeDone();
    });
    call.on('error', () => {
        ended = true;
        maybeDone();
    });
    return () => status !== null;
}

function scenarioServerStream() {
    const n = opts.count;
    const call = client.ServerStream({ message: opts.message, count: n,
        delay_ms: opts.delay || 0, fail_code: opts.code || 0,
        payload: payload(opts.payloadBytes || 0, 2) }, requestMetadata(),
    callOptions());
    result.in_order = true;
    call.on('data', (r) => {
        if (result.replies === 0) result.seen_headers = r.seen_headers;
        if (r.index !== result.replies || r.message !== opts.message) {
            result.in_order = false;
        }
        result.replies++;
    });
    streamEnd(call);
}

function scenarioClientStream() {
    const n = opts.count;
    const size = opts.payloadBytes === null ? 100 : opts.payloadBytes;
    let status = null;
    let answered = false;
    const maybeDone = () => {
        if (answered && status) {
            setStatus(status);
            finish(0);
        }
    };
    const call = client.ClientStream(requestMetadata(), callOptions(),
        (err, reply) => {
            if (!err) {
                result.replies = 1;
                result.count = reply.count;
                result.total_bytes = Number(reply.total_bytes);
                result.seen_headers = reply.seen_headers;
            }
            answered = true;
            maybeDone();
        });
    call.on('metadata', (md) => { result.initial = mdObject(md); });
    call.on('status', (st) => {
        status = st;
        maybeDone();
    });
    result.expected_bytes = n * size;
    writeAll(call, n, (i) => ({ message: `c${i}`,
        payload: payload(size, i) }), () => status !== null);
}

function scenarioBidi() {
    const n = opts.count;
    const size = opts.payloadBytes === null ? 64 : opts.payloadBytes;
    const call = client.Bidi(requestMetadata(), callOptions());
    result.received = 0;
    result.in_order = true;
    call.on('data', (r) => {
        const i = result.received;
        if (i === 0) result.seen_headers = r.seen_headers;
        if (r.index !== i || r.message !== `b${i}`
            || r.payload.length !== size) {
            if (result.in_order) {
                result.first_disorder = { at: i, index: r.index,
                    message: r.message, payload_bytes: r.payload.length };
            }
            result.in_order = false;
        }
        result.received++;
        result.replies = result.received;
    });
    const stopped = streamEnd(call);
    writeAll(call, n, (i) => ({ message: `b${i}`, payload: payload(size, i) }),
        stopped);
}

function scenarioParallel() {
    const n = opts.count;
    result.calls = n;
    result.ok_calls = 0;
    result.codes = {};
    result.mismatched = 0;
    let left = n;
    let firstBad = null;
    for (let i = 0; i < n; i++) {
        const msg = `p${i}`;
        unaryCall({ message: msg, delay_ms: opts.delay || 0,
            payload: Buffer.alloc(0) }, ({ status, reply, initial }) => {
            const name = CODE_NAMES[status.code] || String(status.code);
            result.codes[name] = (result.codes[name] || 0) + 1;
            if (status.code === grpc.status.OK) {
                result.ok_calls++;
                if (!reply || reply.message !== msg) result.mismatched++;
                if (result.replies === 0) {
                    result.seen_headers = reply ? reply.seen_headers : {};
                    result.initial = mdObject(initial);
                    result.trailers = mdObject(status.metadata);
                }
                result.replies++;
            } else if (firstBad === null) {
                firstBad = status;
            }
            if (--left === 0) {
                result.code = firstBad ? firstBad.code : grpc.status.OK;
                result.details = firstBad ? firstBad.details : 'OK';
                finish(0);
            }
        });
    }
}

({
    unary: scenarioUnary,
    unary_fail: scenarioUnaryFail,
    server_stream: scenarioServerStream,
    client_stream: scenarioClientStream,
    bidi: scenarioBidi,
    slow: scenarioSlow,
    parallel: scenarioParallel,
})[opts.scenario]();
