#!/usr/bin/python3
"""h2-backend.py: an HTTP/2 upstream for the meshgate tests (python3-h2).

    h2-backend.py --port PORT (--h2c | --tls-cert CRT --tls-key KEY
                  [--client-ca CA] [--alpn LIST])
                  [--max-streams N] [--goaway-after N] [--no-ping-ack]
                  [--name NAME] [--log FILE] [--watch-parent]

--h2c              cleartext HTTP/2 by prior knowledge
--tls-cert/-key    HTTP/2 over TLS; ALPN offers --alpn (comma-separated,
                   default "h2"; "" offers none). A connection that does not
                   select h2 is served as HTTP/1.1 (one answer, then close),
                   so a client that ignores ALPN sees the mismatch.
--client-ca        require a client certificate signed by this CA
--max-streams N    SETTINGS_MAX_CONCURRENT_STREAMS (default 100). A stream
                   above it is refused (REFUSED_STREAM, safe to retry), as
                   nghttp2 and Go do, and logged as "refused" with acked:
                   whether the peer had acknowledged our SETTINGS by then
                   (before that it may not know the limit, RFC 9113
                   §6.5.2; after, it broke it).
--goaway-after N   after the Nth stream on a connection send GOAWAY
                   (NO_ERROR, last_stream_id = that stream), leave later
                   streams unanswered, finish the first N, then close.
--no-ping-ack      never acknowledge PINGs (still answers requests)
--log FILE         one JSON object per line per event (see below)
--watch-parent     exit once the process that started us is gone

Responses (query of :path; any path):
    default      200, application/json: {conn, stream, headers, body_len,
                 body_sha1, concurrent, name, alpn}
    status=N     that status (no body for 1xx/204/304 and HEAD)
    delay=MS     wait MS ms before the response head (other streams go on)
    size=N       N pattern bytes (byte i is chr(ord('a') + i % 26)) instead
                 of the JSON, with content-length unless nolength=1
    nolength=1   no content-length on any body
    trailers=1   trailers x-checksum: <sha1 hex of the body>, grpc-status: 0
    reset=1      RST_STREAM (INTERNAL_ERROR) instead of an answer
    close=1      drop the TCP connection instead of answering

Log events ("ev"): conn_open {conn, peer, tls, tls_version, sni, alpn,
client_subject},
settings {conn, settings}, stream {conn, stream, headers, body_len,
body_sha1, trailers, concurrent, acked, violations}, refused, ignored,
stream_reset {conn, stream, error_code}, ping {conn, data}, goaway_sent
{conn, last_stream_id}, goaway_received, conn_drop, conn_close {conn,
streams, peak_concurrent, pings, reason}, h1_request {conn, line},
tls_error {peer, error} (a failed handshake: the alert goes out first,
as from a real server). Every event has "t" (seconds since the epoch).

Prints "listening PORT" once ready; exits 0 on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import sys
import time
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

PATTERN = bytes(range(ord('a'), ord('z') + 1))
# RFC 9113 §8.2.2: fields that must not appear in an HTTP/2 message.
CONNECTION_FIELDS = {b'connection', b'keep-alive', b'proxy-connection',
                     b'transfer-encoding', b'upgrade'}
REQUEST_PSEUDO = {b':method', b':scheme', b':path', b':authority',
                  b':protocol'}

args = None
log_fh = None
next_conn_id = 0
connections = set()


def log(ev, **kw):
    kw = dict(ev=ev, t=round(time.time(), 4), **kw)
    if log_fh is not None:
        log_fh.write(json.dumps(kw, sort_keys=True) + '\n')
        log_fh.flush()


def pattern_bytes(off, n):
    start = off % 26
    reps = (start + n) // 26 + 1
    return (PATTERN * reps)[start:start + n]


def s(b):
    return b.decode('latin-1') if isinstance(b, bytes) else b


def violations(headers):
    """What RFC 9113 §8.2-8.3 forbids in a request's field section."""
    v = []
    seen_regular = False
    pseudo = {}
    for name, value in headers:
        if name != name.lower():
            v.append('uppercase name %s' % s(name))
        if name.startswith(b':'):
            if seen_regular:
                v.append('pseudo-header %s after a regular field' % s(name))
            if name not in REQUEST_PSEUDO:
                v.append('unknown pseudo-header %s' % s(name))
            if name in pseudo:
                v.append('repeated %s' % s(name))
            pseudo[name] = value
            continue
        seen_regular = True
        if name in CONNECTION_FIELDS:
            v.append('connection-specific field %s' % s(name))
        if name == b'te' and value.lower() != b'trailers':
            v.append('te: %s' % s(value))
        if name == b'host' and b':authority' in pseudo \
                and value != pseudo[b':authority']:
            v.append('host differs from :authority')
    method = pseudo.get(b':method')
    if method is None:
        v.append('no :method')
    elif method != b'CONNECT':
        for p in (b':scheme', b':path'):
            if not pseudo.get(p):
                v.append('no %s' % s(p))
    return v


class Stream:
    def __init__(self, sid, headers, concurrent, acked):
        self.sid = sid
        self.headers = headers
        self.concurrent = concurrent
        self.acked = acked
        self.sha = hashlib.sha1()
        self.body_len = 0
        self.trailers = []
        self.task = None
        self.done = False


class NoStreamLimit(h2.connection.H2Connection):
    """The stream limit is enforced in Conn.request (refuse, log), not by
    h2, which would end the whole connection with PROTOCOL_ERROR."""
    @property
    def open_inbound_streams(self):
        return 0

    def _receive_ping_frame(self, frame):
        frames, events = super()._receive_ping_frame(frame)
        if args.no_ping_ack:
            frames = []     # a peer that has stopped answering
        return frames, events


class Conn(asyncio.Protocol):
    def __init__(self):
        # TlsServer makes a Conn before the handshake and may lose the
        # connection before connection_made.
        self.made = False
        self.closed = False

    def connection_made(self, transport):
        global next_conn_id
        next_conn_id += 1
        self.id = next_conn_id
        self.transport = transport
        self.streams = {}       # sid -> Stream, request streams in progress
        self.open = set()       # sids the peer has open (counted for limit)
        self.nstreams = 0
        self.peak = 0
        self.pings = 0
        self.acked = False
        self.goaway_last = None
        self.window_waiters = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.h1 = False
        self.h1buf = b''
        connections.add(self)
        peer = transport.get_extra_info('peername')
        sslobj = transport.get_extra_info('ssl_object')
        self.alpn = sslobj.selected_alpn_protocol() if sslobj else None
        subject = None
        if sslobj is not None:
            cert = sslobj.getpeercert()
            if cert:
                subject = ','.join('%s=%s' % (k, v) for rdn in
                                   cert.get('subject', ()) for k, v in rdn)
        log('conn_open', conn=self.id, peer='%s:%d' % peer[:2],
            tls=sslobj is not None, alpn=self.alpn, client_subject=subject,
            tls_version=sslobj.version() if sslobj else None,
            sni=getattr(sslobj, 'sni', None) if sslobj else None,
            session_reused=sslobj.session_reused if sslobj else None)
        if sslobj is not None and self.alpn != 'h2':
            self.h1 = True
            self.made = True
            return
        cfg = h2.config.H2Configuration(client_side=False,
                                        header_encoding=None,
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False)
        self.h2 = NoStreamLimit(config=cfg)
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS:
                    args.max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16})
        self.h2.initiate_connection()
        self.flush()
        self.made = True

    # -- output --------------------------------------------------------

    def flush(self):
        if self.closed or self.h1:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def pause_writing(self):
        self.writable.clear()

    def resume_writing(self):
        self.writable.set()

    def wake_senders(self):
        w, self.window_waiters = self.window_waiters, []
        for f in w:
            if not f.done():
                f.set_result(None)

    async def wait_window(self):
        f = asyncio.get_running_loop().create_future()
        self.window_waiters.append(f)
        await f

    # -- input ---------------------------------------------------------

    def data_received(self, data):
        if self.closed:
            return
        if self.h1:
            self.h1_data(data)
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            log('protocol_error', conn=self.id, error=str(e))
            self.flush()
            self.close('protocol error')
            return
        for ev in events:
            self.event(ev)
        self.flush()

    def event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.request(ev)
        elif isinstance(ev, h2.events.DataReceived):
            # Give the window back at once, also for streams we ignore,
            # so the connection window never shuts on the others.
            self.h2.acknowledge_received_data(ev.flow_controlled_length,
                                              ev.stream_id)
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st.sha.update(ev.data)
                st.body_len += len(ev.data)
        elif isinstance(ev, h2.events.TrailersReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st.trailers = [[s(k), s(v)] for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                self.log_stream(st)
                st.task = asyncio.ensure_future(self.respond(st))
        elif isinstance(ev, h2.events.StreamReset):
            log('stream_reset', conn=self.id, stream=ev.stream_id,
                error_code=int(ev.error_code), remote=ev.remote_reset)
            self.stream_gone(ev.stream_id)
        elif isinstance(ev, h2.events.WindowUpdated):
            self.wake_senders()
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            log('settings', conn=self.id, settings={
                str(getattr(k, 'name', k)): v.new_value
                for k, v in ev.changed_settings.items()})
            self.wake_senders()
        elif isinstance(ev, h2.events.SettingsAcknowledged):
            self.acked = True
        elif isinstance(ev, h2.events.PingReceived):
            self.pings += 1
            log('ping', conn=self.id, data=ev.ping_data.hex())
        elif isinstance(ev, h2.events.ConnectionTerminated):
            log('goaway_received', conn=self.id,
                error_code=int(ev.error_code),
                last_stream_id=ev.last_stream_id)
            self.close('goaway received')

    def request(self, ev):
        sid = ev.stream_id
        if self.goaway_last is not None and sid > self.goaway_last:
            # Above our GOAWAY's last_stream_id: never processed, so the
            # client may retry it elsewhere (RFC 9113 §6.8).
            log('ignored', conn=self.id, stream=sid,
                headers=[[s(k), s(v)] for k, v in ev.headers])
            return
        self.open.add(sid)
        concurrent = len(self.open)
        self.peak = max(self.peak, concurrent)
        st = Stream(sid, ev.headers, concurrent, self.acked)
        if concurrent > args.max_streams:
            log('refused', conn=self.id, stream=sid, concurrent=concurrent,
                acked=self.acked,
                headers=[[s(k), s(v)] for k, v in ev.headers])
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            self.open.discard(sid)
            return
        self.streams[sid] = st
        self.nstreams += 1
        if args.goaway_after and self.nstreams == args.goaway_after:
            self.send_goaway(sid)

    def send_goaway(self, last):
        # Written by hand: h2 refuses to send anything after its own
        # GOAWAY, and the streams up to |last| still need their answers.
        self.flush()
        self.goaway_last = last
        payload = struct.pack('>II', last & 0x7fffffff, 0)
        self.transport.write(struct.pack('>I', len(payload))[1:]
                             + struct.pack('>BBI', 7, 0, 0) + payload)
        log('goaway_sent', conn=self.id, last_stream_id=last)

    def log_stream(self, st):
        log('stream', conn=self.id, stream=st.sid,
            headers=[[s(k), s(v)] for k, v in st.headers],
            body_len=st.body_len, body_sha1=st.sha.hexdigest(),
            trailers=st.trailers, concurrent=st.concurrent, acked=st.acked,
            violations=violations(st.headers))

    def stream_gone(self, sid):
        self.open.discard(sid)
        st = self.streams.pop(sid, None)
        if st is not None:
            st.done = True
            if st.task is not None and not st.task.done():
                st.task.cancel()
        self.wake_senders()
        self.maybe_finish()

    def maybe_finish(self):
        if self.goaway_last is not None and not self.streams \
                and not self.closed:
            self.flush()
            self.close('goaway done', graceful=True)

    # -- answers -------------------------------------------------------

    async def respond(self, st):
        try:
            await self.answer(st)
        except (h2.exceptions.StreamClosedError, asyncio.CancelledError):
            pass
        except h2.exceptions.ProtocolError as e:
            if not self.closed:
                log('send_error', conn=self.id, stream=st.sid, error=str(e))
        finally:
            self.open.discard(st.sid)
            if self.streams.get(st.sid) is st:
                del self.streams[st.sid]
            self.flush()
            self.maybe_finish()

    async def answer(self, st):
        h = {}
        for k, v in st.headers:
            h.setdefault(s(k), s(v))
        q = {k: v[-1] for k, v in
             parse_qs(urlsplit(h.get(':path', '/')).query).items()}
        if q.get('close') == '1':
            log('conn_drop', conn=self.id, stream=st.sid)
            self.close('close=1', abort=True)
            return
        if q.get('reset') == '1':
            self.h2.reset_stream(st.sid, ErrorCodes.INTERNAL_ERROR)
            self.flush()
            return
        if 'delay' in q:
            await asyncio.sleep(int(q['delay']) / 1000.0)
            if self.closed or st.done:
                return
        status = int(q.get('status', 200))
        head = h.get(':method') == 'HEAD'
        nobody = head or status < 200 or status in (204, 304)
        if 'size' in q:
            size = int(q['size'])
            ctype = 'application/octet-stream'
            body = None
        else:
            body = json.dumps({
                'conn': self.id, 'stream': st.sid, 'name': args.name,
                'alpn': self.alpn,
                'headers': [[s(k), s(v)] for k, v in st.headers],
                'body_len': st.body_len, 'body_sha1': st.sha.hexdigest(),
                'trailers': st.trailers, 'concurrent': st.concurrent},
                sort_keys=True).encode() + b'\n'
            size = len(body)
            ctype = 'application/json'
        trailers = q.get('trailers') == '1' and not nobody
        rh = [(':status', str(status)), ('content-type', ctype),
              ('x-backend', args.name), ('x-conn', str(self.id)),
              ('x-stream', str(st.sid))]
        if q.get('nolength') != '1' and status >= 200 \
                and status not in (204, 304):
            rh.append(('content-length', str(size)))
        if nobody:
            self.h2.send_headers(st.sid, rh, end_stream=True)
            self.flush()
            return
        self.h2.send_headers(st.sid, rh, end_stream=size == 0
                             and not trailers)
        self.flush()
        sha = hashlib.sha1()
        off = 0
        while off < size:
            await self.writable.wait()
            if self.closed or st.done:
                return
            win = self.h2.local_flow_control_window(st.sid)
            if win <= 0:
                await self.wait_window()
                continue
            n = min(win, self.h2.max_outbound_frame_size, size - off)
            chunk = body[off:off + n] if body is not None \
                else pattern_bytes(off, n)
            sha.update(chunk)
            off += n
            self.h2.send_data(st.sid, chunk,
                              end_stream=off == size and not trailers)
            self.flush()
            # Let other streams and reads go on between frames.
            await asyncio.sleep(0)
        if trailers:
            self.h2.send_headers(st.sid, [('x-checksum', sha.hexdigest()),
                                          ('grpc-status', '0')],
                                 end_stream=True)
            self.flush()

    # -- HTTP/1.1 on a TLS connection without h2 ------------------------

    def h1_data(self, data):
        self.h1buf += data
        if b'\r\n\r\n' not in self.h1buf and len(self.h1buf) < 65536:
            return
        line = self.h1buf.split(b'\r\n', 1)[0]
        log('h1_request', conn=self.id, line=s(line[:200]))
        if line.startswith(b'PRI * HTTP/2.0'):
            resp = (b'HTTP/1.1 505 HTTP Version Not Supported\r\n'
                    b'Content-Length: 0\r\nConnection: close\r\n\r\n')
        else:
            body = b'http/1.1 only\n'
            resp = (b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n'
                    b'Content-Length: %d\r\nConnection: close\r\n\r\n'
                    % len(body)) + body
        self.transport.write(resp)
        self.close('http/1.1 answered', graceful=True)

    # -- closing -------------------------------------------------------

    def close(self, reason, abort=False, graceful=False):
        if self.closed:
            return
        self.closed = True
        log('conn_close', conn=self.id, streams=self.nstreams,
            peak_concurrent=self.peak, pings=self.pings, reason=reason)
        for st in list(self.streams.values()):
            if st.task is not None and not st.task.done():
                st.task.cancel()
        self.wake_senders()
        self.writable.set()
        if abort:
            self.transport.abort()
        elif graceful and self.transport.can_write_eof():
            # FIN first, then close once the peer has closed (or after a
            # while): closing with unread input would send a RST that could
            # destroy the last answer in the peer's receive buffer.
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(5, self.transport.close)
        elif graceful:
            asyncio.get_running_loop().call_later(1, self.transport.close)
        else:
            self.transport.close()

    def eof_received(self):
        if self.made and not self.closed:
            self.close('eof')
        return False

    def connection_lost(self, exc):
        if not self.made:
            return
        connections.discard(self)
        if not self.closed:
            self.close('lost: %s' % exc if exc else 'lost')
        for st in list(self.streams.values()):
            if st.task is not None and not st.task.done():
                st.task.cancel()


def make_tls():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    alpn = [a for a in args.alpn.split(',') if a]
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)

    def sni(sslobj, name, _ctx):
        sslobj.sni = name
    ctx.sni_callback = sni
    return ctx


class TlsServer(asyncio.Protocol):
    """TLS over memory BIOs under a Conn. asyncio's own TLS server would
    drop a failed handshake without its alert and without telling us;
    here the alert (certificate required, no common protocol, ...) goes
    out before the close, as from a real server, and is logged."""

    def __init__(self, ctx):
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.app = Conn()
        self.done = False
        self.dead = False

    def connection_made(self, transport):
        self.tr = transport
        peer = transport.get_extra_info('peername')
        self.peer = '%s:%d' % peer[:2]
        self.timer = asyncio.get_running_loop().call_later(
            10, self.fail, 'handshake timeout')

    def flush(self):
        data = self.out.read()
        if data and not self.tr.is_closing():
            self.tr.write(data)

    def fail(self, why):
        if self.dead:
            return
        self.dead = True
        log('tls_error', peer=self.peer, error=why)
        self.flush()
        # The alert, then FIN; close only later: closing with the peer's
        # request still unread would send a RST that can destroy the alert
        # before the peer reads it.
        self.tr.write_eof()
        asyncio.get_running_loop().call_later(1, self.tr.close)

    def data_received(self, data):
        if self.dead:
            return
        self.inc.write(data)
        if not self.done:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self.flush()
                return
            except (ssl.SSLError, OSError) as e:
                self.fail('%s: %s' % (type(e).__name__, e))
                return
            self.done = True
            self.timer.cancel()
            self.flush()
            self.app.connection_made(TlsTransport(self))
        while not self.dead:
            try:
                plain = self.obj.read(1 << 16)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.app.eof_received()
                break
            except (ssl.SSLError, OSError) as e:
                log('tls_error', peer=self.peer,
                    error='%s: %s' % (type(e).__name__, e))
                self.app.connection_lost(e)
                self.dead = True
                self.tr.abort()
                return
            if not plain:
                break
            self.app.data_received(plain)
        self.flush()

    def pause_writing(self):
        if self.done:
            self.app.pause_writing()

    def resume_writing(self):
        if self.done:
            self.app.resume_writing()

    def eof_received(self):
        if self.done:
            self.app.eof_received()
        elif not self.dead:
            self.fail('eof during the handshake')
        return False

    def connection_lost(self, exc):
        self.timer.cancel()
        if self.done:
            self.app.connection_lost(exc)
        elif not self.dead:
            self.dead = True
            log('tls_error', peer=self.peer,
                error='lost during the handshake: %s' % exc)


class TlsTransport:
    """What Conn needs of a transport, through TlsServer."""

    def __init__(self, srv):
        self.srv = srv

    def get_extra_info(self, name, default=None):
        if name == 'ssl_object':
            return self.srv.obj
        return self.srv.tr.get_extra_info(name, default)

    def write(self, data):
        if self.srv.dead or self.srv.tr.is_closing():
            return
        self.srv.obj.write(data)
        self.srv.flush()

    def can_write_eof(self):
        return False

    def close(self):
        if not self.srv.dead:
            try:
                self.srv.obj.unwrap()       # close_notify
            except (ssl.SSLError, OSError):
                pass
            self.srv.flush()
        self.srv.tr.close()

    def abort(self):
        self.srv.tr.abort()


def exception_handler(loop, context):
    exc = context.get('exception')
    if isinstance(exc, (ssl.SSLError, ConnectionResetError,
                        ConnectionAbortedError, BrokenPipeError)):
        log('tls_error', error='%s: %s' % (context.get('message', ''), exc))
        return
    log('loop_error', error='%s: %r' % (context.get('message', ''), exc))
    loop.default_exception_handler(context)


async def main():
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(exception_handler)
    ctx = make_tls() if args.tls_cert else None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    server = await loop.create_server(
        (lambda: TlsServer(ctx)) if ctx else Conn, sock=sock, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ppid = os.getppid()

    async def watch():
        while True:
            await asyncio.sleep(1)
            if os.getppid() != ppid:
                stop.set()
                return
    if args.watch_parent:
        asyncio.ensure_future(watch())
    print('listening %d' % sock.getsockname()[1], flush=True)
    log('listening', port=sock.getsockname()[1], tls=ctx is not None,
        max_streams=args.max_streams, goaway_after=args.goaway_after)
    await stop.wait()
    server.close()
    for c in list(connections):
        c.close('shutdown', abort=True)
    log('exit')


def parse_args():
    p = argparse.ArgumentParser(description='HTTP/2 test upstream')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--h2c', action='store_true')
    p.add_argument('--tls-cert')
    p.add_argument('--tls-key')
    p.add_argument('--client-ca')
    p.add_argument('--alpn', default='h2')
    p.add_argument('--max-streams', type=int, default=100)
    p.add_argument('--goaway-after', type=int, default=0)
    p.add_argument('--name', default=None)
    p.add_argument('--no-ping-ack', action='store_true')
    p.add_argument('--log')
    p.add_argument('--watch-parent', action='store_true')
    a = p.parse_args()
    if a.h2c == bool(a.tls_cert) or bool(a.tls_cert) != bool(a.tls_key):
        p.error('give either --h2c or --tls-cert with --tls-key')
    if a.client_ca and not a.tls_cert:
        p.error('--client-ca needs --tls-cert')
    if a.name is None:
        a.name = str(a.port)
    return a


if __name__ == '__main__':
    args = parse_args()
    if args.log:
        log_fh = open(args.log, 'a', buffering=1)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.exit(0)
