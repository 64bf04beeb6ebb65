#!/usr/bin/env node
'use strict';

// The gRPC upstream of t/70grpc.t: an insecure (h2c) server for the Echo
// service of echo.proto.
//
//   node server.js --port N [--host 127.0.0.1] [--watch-parent] [--verbose]
//
// Prints "listening PORT" once bound (--port 0 picks a free port), logs one
// line per cancelled call ("cancelled METHOD") and exits 0 on SIGTERM or
// SIGINT. With --watch-parent it also exits when its parent goes away, so
// a test killed hard does not leave it behind.

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function usage(msg) {
    if (msg) process.stderr.write(`server.js: ${msg}\n`);
    process.stderr.write('usage: node server.js --port N [--host ADDR] '
        + '[--watch-parent] [--verbose]\n');
    process.exit(2);
}

const opts = { host: '127.0.0.1', port: null, watchParent: false,
    verbose: false };
{
    const argv = process.argv.slice(2);
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const val = () => {
            if (i + 1 >= argv.length) usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === '--port') opts.port = val();
        else if (a === '--host') opts.host = val();
        else if (a === '--watch-parent') opts.watchParent = true;
        else if (a === '--verbose') opts.verbose = true;
        else usage(`unknown argument ${a}`);
    }
    if (opts.port === null || !/^\d+$/.test(opts.port)) {
        usage('--port N is required');
    }
}

function log(line) {
    process.stdout.write(line + '\n');
}

// grpc-js drops te, content-type and grpc-timeout from the metadata it
// hands to handlers, but whether a proxy forwarded them is what a test
// wants to know. The server builds each call's metadata with this static
// method, so wrapping it keeps the raw request headers beside it.
const RAW = Symbol('raw request headers');
{
    const orig = grpc.Metadata.fromHttp2Headers;
    grpc.Metadata.fromHttp2Headers = function (headers) {
        const md = orig.call(this, headers);
        md[RAW] = headers;
        return md;
    };
}

const RAW_KEPT = ['te', 'content-type', 'grpc-timeout', 'user-agent'];

// The request metadata as one string per key (repeats joined with ", ",
// binary values in base64), plus :authority, the peer and the raw headers
// grpc-js hides.
function seenHeaders(call) {
    const out = {};
    const md = call.metadata.toJSON();
    for (const k of Object.keys(md)) {
        out[k] = md[k].map((v) => (Buffer.isBuffer(v)
            ? v.toString('base64') : String(v))).join(', ');
    }
    const raw = call.metadata[RAW];
    if (raw) {
        for (const k of RAW_KEPT) {
            if (raw[k] !== undefined) {
                out[k] = Array.isArray(raw[k]) ? raw[k].join(', ')
                    : String(raw[k]);
            }
        }
    }
    if (typeof call.getHost === 'function') {
        const host = call.getHost();
        if (host !== undefined) out[':authority'] = host;
    }
    out[':peer'] = call.getPeer();
    return out;
}

function trailer() {
    const md = new grpc.Metadata();
    md.set('x-trailer', 'kept');
    return md;
}

function failure(code) {
    return { code, details: 'failed on purpose', metadata: trailer() };
}

// Calls |fn| after |ms| unless the call is cancelled first.
function later(call, ms, fn) {
    if (!(ms > 0)) {
        fn();
        return;
    }
    const timer = setTimeout(() => {
        if (!call.cancelled) fn();
    }, ms);
    call.on('cancelled', () => clearTimeout(timer));
}

// grpc-js reports every call as cancelled once it is over; only a call
// cancelled before the server ended it (the client or a proxy reset it)
// is logged. Handlers set |done| as they end the call.
function watchCancel(call, method) {
    const state = { done: false };
    call.on('cancelled', () => {
        if (!state.done) log(`cancelled ${method}`);
    });
    return state;
}

function unary(call, callback) {
    const state = watchCancel(call, 'Unary');
    const req = call.request;
    if (opts.verbose) log(`Unary ${JSON.stringify(seenHeaders(call))}`);
    later(call, req.delay_ms, () => {
        state.done = true;
        // A failure is a trailers-only response (no initial metadata), the
        // form a proxy most easily gets wrong.
        if (req.fail_code) {
            callback(failure(req.fail_code));
            return;
        }
        const initial = new grpc.Metadata();
        initial.set('x-initial', 'yes');
        call.sendMetadata(initial);
        callback(null, {
            message: req.message,
            index: 0,
            count: 1,
            total_bytes: String(req.payload.length),
            seen_headers: seenHeaders(call),
            payload: req.payload,
        }, trailer());
    });
}

function serverStream(call) {
    const state = watchCancel(call, 'ServerStream');
    const req = call.request;
    const n = Math.max(0, req.count);
    let i = 0;
    const pump = () => {
        while (i < n && !call.cancelled) {
            const ok = call.write({
                message: req.message,
                index: i,
                count: n,
                total_bytes: String(req.payload.length),
                seen_headers: i === 0 ? seenHeaders(call) : {},
                payload: req.payload,
            });
            i++;
            if (!ok) {
                call.once('drain', pump);
                return;
            }
        }
        if (call.cancelled) return;
        state.done = true;
        if (req.fail_code) {
            call.emit('error', failure(req.fail_code));
        } else {
            call.end(trailer());
        }
    };
    later(call, req.delay_ms, pump);
}

function clientStream(call, callback) {
    const state = watchCancel(call, 'ClientStream');
    let count = 0;
    let bytes = 0;
    let first = null;
    call.on('data', (req) => {
        if (first === null) first = req;
        count++;
        bytes += req.payload.length;
    });
    call.on('end', () => {
        const req = first || { delay_ms: 0, fail_code: 0, message: '' };
        later(call, req.delay_ms, () => {
            state.done = true;
            if (req.fail_code) {
                callback(failure(req.fail_code));
                return;
            }
            callback(null, {
                message: req.message,
                index: count - 1,
                count,
                total_bytes: String(bytes),
                seen_headers: seenHeaders(call),
            }, trailer());
        });
    });
    // A call the client cancels must not take the server down.
    call.on('error', () => {});
}

// Echoes each message as it arrives; when the echoes cannot be written
// (the client reads slowly) it stops reading, so flow control pushes back
// on the sender instead of buffering here.
function bidi(call) {
    const state = watchCancel(call, 'Bidi');
    let i = 0;
    let failed = false;
    call.on('data', (req) => {
        if (failed) return;
        if (req.fail_code) {
            failed = true;
            state.done = true;
            call.emit('error', failure(req.fail_code));
            return;
        }
        const ok = call.write({
            message: req.message,
            index: i,
            count: i + 1,
            total_bytes: String(req.payload.length),
            seen_headers: i === 0 ? seenHeaders(call) : {},
            payload: req.payload,
        });
        i++;
        if (!ok) {
            call.pause();
            call.once('drain', () => call.resume());
        }
    });
    call.on('end', () => {
        if (failed || call.cancelled) return;
        state.done = true;
        call.end(trailer());
    });
}

const def = protoLoader.loadSync(path.join(__dirname, 'echo.proto'), {
    keepCase: true,
    longs: String,
    defaults: true,
    bytes: Buffer,
});
const proto = grpc.loadPackageDefinition(def).meshgate.test;

const server = new grpc.Server();
server.addService(proto.Echo.service, {
    Unary: unary,
    ServerStream: serverStream,
    ClientStream: clientStream,
    Bidi: bidi,
});

function stop(sig) {
    if (opts.verbose) log(`stopping on ${sig}`);
    server.forceShutdown();
    process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

server.bindAsync(`${opts.host}:${opts.port}`,
    grpc.ServerCredentials.createInsecure(), (err, port) => {
        if (err) {
            process.stderr.write(`server.js: bind ${opts.host}:${opts.port}: `
                + `${err.message}\n`);
            process.exit(1);
        }
        log(`listening ${port}`);
    });

if (opts.watchParent) {
    const parent = process.ppid;
    setInterval(() => {
        if (process.ppid !== parent) stop('parent exit');
    }, 500).unref();
}
