#!/usr/bin/python3
"""h2raw.py: an HTTP/2 client at the frame level for the meshgate tests.

    h2raw.py SCENARIO PORT [ARGS...]

Speaks cleartext HTTP/2 (prior knowledge) to 127.0.0.1:PORT, or HTTP/2
over TLS (ALPN h2, certificate not checked) when H2RAW_TLS=1. Frames are
built by hand, so they can be wrong on purpose; header blocks are coded
with hpack (part of the python3-h2 stack). What the server does is printed
as one line per event, for the .t to parse:

    status stream=N code=NNN         a response head
    body stream=N len=N text=...     a response body (text: first 200
                                     bytes, backslash-escaped)
    end stream=N                     END_STREAM on a response
    rst stream=N error=N             RST_STREAM from the server
    goaway error=N last=N            GOAWAY from the server
    closed                           the server closed the connection
    timeout                          the deadline passed first
    result KEY=VALUE ...             what the scenario measured

Every scenario has a deadline; nothing waits forever.
"""

import hashlib
import os
import select
import socket
import ssl
import struct
import sys
import time

import hpack

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, \
    GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, \
    S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = \
    range(1, 7)
PATTERN = bytes(range(ord('a'), ord('z') + 1))


def say(*words):
    print(' '.join(str(w) for w in words), flush=True)


def frame(ftype, flags, stream, payload=b'', length=None):
    if length is None:
        length = len(payload)
    return struct.pack('>I', length)[1:] + struct.pack(
        '>BBI', ftype, flags, stream & 0x7fffffff) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b''.join(struct.pack('>HI', k, v) for k, v in pairs))


def window_update(stream, inc):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack('>I', inc))


def rst(stream, code):
    return frame(RST_STREAM, 0, stream, struct.pack('>I', code))


def hpack_int(value, bits, flags=0):
    """An HPACK integer with a |bits|-bit prefix (RFC 7541 §5.1)."""
    top = (1 << bits) - 1
    if value < top:
        return bytes([flags | value])
    out = [flags | top]
    value -= top
    while value >= 128:
        out.append(value & 0x7f | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value, indexing=False):
    """A literal field with a new name, with or without indexing."""
    return (b'\x40' if indexing else b'\x00') + hpack_int(len(name), 7) \
        + name + hpack_int(len(value), 7) + value


def pattern_bytes(off, n):
    """n bytes of the backend's pattern starting at offset off."""
    start = off % 26
    reps = (start + n) // 26 + 1
    return (PATTERN * reps)[start:start + n]


class Conn:
    def __init__(self, port, timeout):
        self.deadline = time.monotonic() + timeout
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if os.environ.get('H2RAW_TLS') == '1':
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(['h2'])
            self.sock = ctx.wrap_socket(self.sock, server_hostname='www.test')
            say('alpn', self.sock.selected_alpn_protocol())
        self.sock.setblocking(False)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 1 << 16
        self.buf = b''
        self.closed = False
        self.goaway = None
        self.rsts = {}          # stream -> error code
        self.status = {}        # stream -> status
        self.bodies = {}        # stream -> bytes (kept up to keep_body)
        self.received = {}      # stream -> body byte count
        self.ended = set()
        self.headers = {}       # stream -> [(name, value)]
        self.hblock = None      # [stream, bytes] while CONTINUATION follows
        self.server_settings = False
        self.acked = False      # our SETTINGS acknowledged
        self.pings = 0
        self.send_window = 65535
        self.peer_initial_window = 65535
        self.stream_windows = {}
        self.auto_window = True  # give back what DATA frames take
        self.keep_body = 200
        self.pattern_ok = {}    # stream -> still the backend pattern?
        self.sha = {}
        self.frames_in = 0
        self.outq = b''         # our frames parse() could not send yet
        self.sending = False    # inside send(): parse() only queues

    def left(self):
        return self.deadline - time.monotonic()

    def send(self, data, timeout=None):
        """Writes all of data, then what parse() queued meanwhile; False
        if the server closed or the time ran out (reading what arrives
        meanwhile). Whole frames only, so nothing interleaves."""
        view = memoryview(self.outq + data)
        self.outq = b''
        end = time.monotonic() + (timeout if timeout is not None
                                  else max(self.left(), 0))
        self.sending = True
        try:
            while True:
                if not len(view):
                    if not self.outq:
                        return True
                    view = memoryview(self.outq)
                    self.outq = b''
                if self.closed:
                    return False
                left = end - time.monotonic()
                if left <= 0:
                    return False
                if isinstance(self.sock, ssl.SSLSocket) \
                        and self.sock.pending():
                    r, w = True, False
                else:
                    r, w, _ = select.select([self.sock], [self.sock], [],
                                            left)
                if r:
                    self.read_once()
                if w:
                    try:
                        n = self.sock.send(view)
                    except (BlockingIOError, InterruptedError,
                            ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        continue
                    except OSError:
                        self.closed = True
                        return False
                    view = view[n:]
        finally:
            self.sending = False

    def start(self, *pairs, preface=PREFACE):
        self.send(preface + settings(*pairs))

    def readable(self, timeout):
        """Data waits in the TLS layer or on the socket."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def read_once(self):
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError):
            return
        except OSError:
            data = b''
        if not data:
            self.closed = True
            return
        self.buf += data
        self.parse()

    def pump(self, until=lambda c: False, timeout=None):
        """Reads frames until until(self) holds, the connection closes or
        the deadline (or |timeout| seconds) passes. True if until held."""
        end = self.deadline if timeout is None else min(
            self.deadline, time.monotonic() + timeout)
        while True:
            if until(self):
                return True
            if self.closed:
                return False
            left = end - time.monotonic()
            if left <= 0:
                return False
            if self.outq:
                _, w, _ = select.select([], [self.sock], [], 0)
                if w:
                    self.flush_out()
            if self.readable(min(left, 0.05) if self.outq else left):
                self.read_once()

    def parse(self):
        out = b''
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], 'big')
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], 'big') & 0x7fffffff
            p = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            self.frames_in += 1
            if ftype == SETTINGS:
                if flags & ACK:
                    self.acked = True
                else:
                    self.server_settings = True
                    for i in range(0, len(p) - 5, 6):
                        k, v = struct.unpack('>HI', p[i:i + 6])
                        if k == S_INITIAL_WINDOW_SIZE:
                            d = v - self.peer_initial_window
                            self.peer_initial_window = v
                            for s in self.stream_windows:
                                self.stream_windows[s] += d
                    out += settings(ack=True)
            elif ftype == PING:
                if not flags & ACK:
                    out += frame(PING, ACK, 0, p)
                else:
                    self.pings += 1
            elif ftype == GOAWAY:
                last, err = struct.unpack('>II', p[:8])
                self.goaway = (err, last & 0x7fffffff)
                say('goaway', 'error=%d' % err, 'last=%d' % (last & 0x7fffffff))
            elif ftype == RST_STREAM:
                self.rsts[stream] = struct.unpack('>I', p[:4])[0]
            elif ftype == WINDOW_UPDATE:
                inc = struct.unpack('>I', p[:4])[0] & 0x7fffffff
                if stream == 0:
                    self.send_window += inc
                else:
                    self.stream_windows[stream] = self.stream_windows.get(
                        stream, self.peer_initial_window) + inc
            elif ftype in (HEADERS, CONTINUATION):
                if ftype == HEADERS:
                    if flags & PADDED:
                        pad = p[0]
                        p = p[1:len(p) - pad]
                    if flags & PRIO:
                        p = p[5:]
                    self.hblock = [stream, p, flags & END_STREAM]
                else:
                    self.hblock[1] += p
                if flags & END_HEADERS:
                    s, block, es = self.hblock
                    self.hblock = None
                    fields = self.dec.decode(block, raw=False)
                    if s not in self.status:
                        self.headers[s] = fields
                        for k, v in fields:
                            if k == ':status':
                                self.status[s] = int(v)
                                say('status', 'stream=%d' % s, 'code=%s' % v)
                    if es:
                        self.ended.add(s)
            elif ftype == DATA:
                body = p
                if flags & PADDED:
                    body = p[1:len(p) - p[0]]
                n = self.received.get(stream, 0)
                if stream in self.pattern_ok and self.pattern_ok[stream]:
                    if body != pattern_bytes(n, len(body)):
                        self.pattern_ok[stream] = False
                if stream in self.sha:
                    self.sha[stream].update(body)
                self.received[stream] = n + len(body)
                b = self.bodies.setdefault(stream, b'')
                if len(b) < self.keep_body:
                    self.bodies[stream] = b + body[:self.keep_body - len(b)]
                if flags & END_STREAM:
                    self.ended.add(stream)
                if self.auto_window and length > 0:
                    out += window_update(0, length)
                    if not flags & END_STREAM:
                        out += window_update(stream, length)
        if out and not self.closed:
            self.outq += out
            if not self.sending:
                self.flush_out()

    def flush_out(self):
        """Sends what parse() queued (ACKs, WINDOW_UPDATEs), as far as the
        socket takes it; the rest stays queued, in order."""
        while self.outq and not self.closed:
            try:
                n = self.sock.send(self.outq)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                return
            except OSError:
                self.closed = True
                return
            self.outq = self.outq[n:]

    def request(self, stream, path, method='GET', host='h2.test',
                extra=(), end_stream=True, authority=True):
        fields = [(':method', method), (':scheme', 'http'), (':path', path)]
        if authority:
            fields.append((':authority', host))
        fields += list(extra)
        block = self.enc.encode(fields)
        self.stream_windows.setdefault(stream, self.peer_initial_window)
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0),
                     stream, block)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def report(self, *streams):
        for s in streams:
            if s in self.bodies:
                t = self.bodies[s].decode('latin-1')
                t = t.replace('\\', '\\\\').replace('\r', '\\r').replace(
                    '\n', '\\n')
                say('body', 'stream=%d' % s, 'len=%d' % self.received[s],
                    'text=' + t)
            if s in self.ended:
                say('end', 'stream=%d' % s)
        for s in sorted(self.rsts):
            say('rst', 'stream=%d' % s, 'error=%d' % self.rsts[s])
        if self.closed:
            say('closed')
        elif self.left() <= 0:
            say('timeout')


def wait_file(path, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def closed_or_goaway(c):
    return c.closed or c.goaway is not None


def eof_after_goaway(c, seconds=3):
    """After a fatal GOAWAY the server must also close the connection."""
    c.pump(lambda c: c.closed, timeout=seconds)


# ---------------------------------------------------------------------
# Well-behaved clients

def sc_get(port, path='/', host='h2.test'):
    """One GET; the body is reported."""
    c = Conn(port, 15)
    c.start()
    c.send(c.request(1, path, host=host))
    c.pump(lambda c: 1 in c.ended or 1 in c.rsts)
    c.report(1)


def sc_upload(port, size, with_length='1', path='/upload'):
    """POST |size| bytes of the pattern, honouring the server's windows,
    with or without content-length."""
    size = int(size)
    c = Conn(port, 120)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    extra = [('content-length', str(size))] if with_length == '1' else []
    c.send(c.request(1, path, method='POST', extra=extra, end_stream=False))
    sha = hashlib.sha1()
    off = 0
    stalls = 0
    while off < size and not c.closed and 1 not in c.rsts:
        room = min(c.send_window, c.stream_windows.get(1, 0), 16384,
                   size - off)
        if room <= 0:
            stalls += 1
            if not c.pump(lambda c: min(c.send_window,
                                        c.stream_windows.get(1, 0)) > 0
                          or 1 in c.rsts):
                break
            continue
        chunk = pattern_bytes(off, room)
        off += room
        c.send_window -= room
        c.stream_windows[1] -= room
        sha.update(chunk)
        if not c.send(frame(DATA, END_STREAM if off == size else 0, 1,
                            chunk)):
            break
    c.pump(lambda c: 1 in c.ended or 1 in c.rsts)
    say('result', 'sent=%d' % off, 'sha1=%s' % sha.hexdigest(),
        'window_waits=%d' % stalls)
    c.report(1)


def sc_slowread(port, path, gofile, socket_stall='0'):
    """GET |path| and take nothing more than the first window (or, with
    socket_stall=1, give every window but stop reading the socket) until
    |gofile| exists; then read the rest quickly and check the pattern."""
    c = Conn(port, 180)
    big = 0x7fffffff
    if socket_stall == '1':
        c.start((S_INITIAL_WINDOW_SIZE, big))
        c.send(window_update(0, big - 65535))
    else:
        c.start()
        c.auto_window = False
    c.pattern_ok[1] = True
    c.send(c.request(1, path))
    c.pump(lambda c: 1 in c.status or 1 in c.rsts, timeout=10)
    pid = dict(c.headers.get(1, [])).get('x-backend-pid', '-')
    if socket_stall == '1':
        # Some data, then the socket is left alone.
        c.pump(lambda c: c.received.get(1, 0) > 0, timeout=10)
        say('stalled', 'received=%d' % c.received.get(1, 0),
            'backend_pid=%s' % pid)
        wait_file(gofile, 120)
    else:
        # Everything the windows allow, until nothing more arrives.
        last = -1
        while last != c.received.get(1, 0) and c.left() > 0:
            last = c.received.get(1, 0)
            c.pump(lambda c: c.closed, timeout=1)
        say('stalled', 'received=%d' % c.received.get(1, 0),
            'backend_pid=%s' % pid)
        wait_file(gofile, 120)
        c.auto_window = True
        got = c.received.get(1, 0)
        c.send(window_update(0, big - 65535) + window_update(1, big - 65535))
    c.pump(lambda c: 1 in c.ended or 1 in c.rsts)
    say('result', 'received=%d' % c.received.get(1, 0),
        'pattern_ok=%d' % (1 if c.pattern_ok[1] else 0),
        'status=%s' % c.status.get(1, '-'))
    c.report()


def sc_streams(port, n, path='/bytes/1000', wait='1'):
    """|n| concurrent streams on one connection, sent at once: after the
    server's SETTINGS were acknowledged (wait=1), or in the first flight
    with the preface (wait=0)."""
    n = int(n)
    c = Conn(port, 60)
    ids = [1 + 2 * i for i in range(n)]
    if wait == '1':
        c.start()
        c.pump(lambda c: c.server_settings, timeout=5)
        c.send(b''.join(c.request(s, path) for s in ids))
    else:
        c.send(PREFACE + settings()
               + b''.join(c.request(s, path) for s in ids))
    c.pump(lambda c: all(s in c.ended or s in c.rsts for s in ids))
    ok = sum(1 for s in ids if c.status.get(s) == 200 and s in c.ended)
    refused = sum(1 for s in ids if c.rsts.get(s) == 7)
    say('result', 'ok=%d' % ok, 'refused=%d' % refused,
        'rst=%d' % len(c.rsts),
        'goaway=%s' % (c.goaway[0] if c.goaway else '-'),
        'first_ok=%d' % sum(1 for s in ids[:128] if c.status.get(s) == 200),
        'late_ok=%d' % sum(1 for s in ids[128:] if c.status.get(s) == 200))
    if c.closed:
        say('closed')


def sc_drain(port, path, host='h2.test'):
    """A stream in flight while the server drains: prints 'sent', then
    the events, with the stream's state when GOAWAY came."""
    c = Conn(port, 30)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    c.send(c.request(1, path, host=host))
    say('sent')
    c.pump(lambda c: c.goaway is not None or 1 in c.ended or 1 in c.rsts)
    say('result', 'goaway_before_end=%d' % (1 if c.goaway and 1 not in c.ended
                                            else 0))
    c.pump(lambda c: 1 in c.ended or 1 in c.rsts)
    c.pump(lambda c: c.closed, timeout=10)
    c.report(1)


def sc_fields(port, *pairs):
    """One request with exactly the fields given as NAME=VALUE (pseudo
    fields too, in the order given; %XX escapes decoded), and an optional
    body=TEXT sent as DATA. The answer is reported."""
    from urllib.parse import unquote_to_bytes
    c = Conn(port, 15)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    fields = []
    body = None
    for p in pairs:
        k, v = p.split('=', 1)
        if k == 'body':
            body = unquote_to_bytes(v)
        else:
            fields.append((unquote_to_bytes(k), unquote_to_bytes(v)))
    # Encoded by hand: hpack's encoder would refuse some of these fields.
    block = b''.join(hpack_literal(k, v) for k, v in fields)
    c.send(frame(HEADERS, END_HEADERS | (0 if body is not None
                                          else END_STREAM), 1, block))
    if body is not None:
        c.send(frame(DATA, END_STREAM, 1, body))
    c.keep_body = 1 << 16
    c.pump(lambda c: closed_or_goaway(c) or 1 in c.ended or 1 in c.rsts)
    c.report(1)


def sc_early_body(port, path, size='65535', with_length='0'):
    """POST with |size| bytes of body sent in the first flight, before the
    server's SETTINGS can have arrived: up to 65535 bytes, the initial
    window of RFC 9113 §6.9.2, are allowed."""
    size = int(size)
    c = Conn(port, 20)
    extra = [('content-length', str(size))] if with_length == '1' else []
    out = PREFACE + settings() + c.request(1, path, method='POST',
                                           extra=extra, end_stream=False)
    off = 0
    while off < size:
        n = min(16384, size - off)
        out += frame(DATA, END_STREAM if off + n == size else 0, 1,
                     pattern_bytes(off, n))
        off += n
    c.send(out)
    c.keep_body = 1 << 16
    c.pump(lambda c: closed_or_goaway(c) or 1 in c.ended or 1 in c.rsts)
    c.report(1)


def sc_cancel(port, path):
    """GET |path|, cancel it (RST_STREAM) after some DATA, then ask for
    /echo on the same connection."""
    c = Conn(port, 20)
    c.start()
    c.send(c.request(1, path))
    c.pump(lambda c: c.received.get(1, 0) > 0 or 1 in c.rsts, timeout=10)
    c.send(rst(1, 8))
    say('result', 'cancelled_after=%d' % c.received.get(1, 0))
    c.send(c.request(3, '/echo'))
    c.pump(lambda c: 3 in c.ended or 3 in c.rsts or closed_or_goaway(c))
    c.report(3)


# ---------------------------------------------------------------------
# Abuse

def sc_rapid_reset(port, n, path='/delay/2000'):
    """CVE-2023-44487: open streams and cancel them at once, |n| times."""
    n = int(n)
    c = Conn(port, 30)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    t0 = time.monotonic()
    sent = 0
    batch = []
    for i in range(n):
        s = 1 + 2 * i
        batch.append(c.request(s, path) + rst(s, 8))   # CANCEL
        if len(batch) == 100 or i == n - 1:
            if not c.send(b''.join(batch), timeout=5):
                break
            sent = i + 1
            batch = []
            c.pump(lambda c: False, timeout=0)
            if closed_or_goaway(c):
                break
    c.pump(closed_or_goaway, timeout=5)
    eof_after_goaway(c)
    say('result', 'sent=%d' % sent, 'secs=%.2f' % (time.monotonic() - t0))
    c.report()


def sc_continuation(port, n):
    """CVE-2024-27316: HEADERS without END_HEADERS, then CONTINUATION
    frames with more header fields for ever (|n| at most)."""
    n = int(n)
    c = Conn(port, 30)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    t0 = time.monotonic()
    first = c.enc.encode([(':method', 'GET'), (':scheme', 'http'),
                          (':path', '/'), (':authority', 'h2.test')])
    c.send(frame(HEADERS, END_STREAM, 1, first))
    # literal field without indexing, new name: never grows the table
    field = hpack_literal(b'x-flood', b'v' * 4000)
    sent = 0
    for i in range(n):
        if not c.send(frame(CONTINUATION, 0, 1, field), timeout=5):
            break
        sent += 1
        if sent % 16 == 0:
            c.pump(lambda c: False, timeout=0)
            if closed_or_goaway(c):
                break
    c.pump(closed_or_goaway, timeout=5)
    eof_after_goaway(c)
    say('result', 'sent=%d' % sent, 'bytes=%d' % (sent * (9 + len(field))),
        'secs=%.2f' % (time.monotonic() - t0))
    c.report()


def sc_hpack_table_size(port):
    """A dynamic table size update above SETTINGS_HEADER_TABLE_SIZE
    (4096): COMPRESSION_ERROR (RFC 7541 §6.3)."""
    c = Conn(port, 10)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    # 001xxxxx with a 5-bit prefix integer: 1 MiB
    upd = hpack_int(1 << 20, 5, 0x20)
    block = upd + hpack.Encoder().encode(
        [(':method', 'GET'), (':scheme', 'http'), (':path', '/'),
         (':authority', 'h2.test')])
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    c.pump(lambda c: closed_or_goaway(c) or 1 in c.status or 1 in c.rsts)
    eof_after_goaway(c)
    c.report(1)


def sc_hpack_bad_index(port):
    """An indexed field past the end of both tables: COMPRESSION_ERROR."""
    c = Conn(port, 10)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    block = hpack.Encoder().encode([(':method', 'GET'), (':scheme', 'http'),
                                    (':path', '/')]) + b'\xff\x80\x01'
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    c.pump(lambda c: closed_or_goaway(c) or 1 in c.status or 1 in c.rsts)
    eof_after_goaway(c)
    c.report(1)


def sc_hpack_bomb(port, refs='4000'):
    """A 4000-byte field put in the dynamic table once, then referenced
    with one byte each, |refs| times: megabytes of headers from a few
    kilobytes (the HPACK bomb)."""
    refs = int(refs)
    c = Conn(port, 20)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    req = c.enc.encode([(':method', 'GET'), (':scheme', 'http'),
                        (':path', '/'), (':authority', 'h2.test')])
    # literal with incremental indexing, new name: enters the table at 62
    ins = hpack_literal(b'x-bomb', b'b' * 4000, indexing=True)
    block = req + ins + b'\xbe' * refs      # 0x80 | 62
    frames = b''
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    for i, ch in enumerate(chunks):
        last = i == len(chunks) - 1
        frames += frame(HEADERS if i == 0 else CONTINUATION,
                        (END_HEADERS if last else 0)
                        | (END_STREAM if i == 0 else 0), 1, ch)
    c.send(frames, timeout=5)
    c.pump(lambda c: closed_or_goaway(c) or 1 in c.ended or 1 in c.rsts)
    eof_after_goaway(c, 1)
    say('result', 'block=%d' % len(block), 'decoded=%d' % (4000 * (refs + 1)))
    c.report(1)


def sc_many_headers(port, n, size, path='/echo'):
    """A request with |n| fields of |size| bytes each."""
    n, size = int(n), int(size)
    c = Conn(port, 20)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    extra = [('x-h%d' % i, 'v' * size) for i in range(n)]
    fields = [(':method', 'GET'), (':scheme', 'http'), (':path', path),
              (':authority', 'h2.test')] + extra
    block = c.enc.encode(fields)
    chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = b''
    for i, ch in enumerate(chunks):
        last = i == len(chunks) - 1
        frames += frame(HEADERS if i == 0 else CONTINUATION,
                        (END_HEADERS if last else 0)
                        | (END_STREAM if i == 0 else 0), 1, ch)
    c.send(frames, timeout=5)
    c.pump(lambda c: closed_or_goaway(c) or 1 in c.ended or 1 in c.rsts)
    say('result', 'frames=%d' % len(chunks), 'block=%d' % len(block))
    c.report(1)


def sc_window_overflow(port, where):
    """WINDOW_UPDATE that takes a window past 2^31-1: FLOW_CONTROL_ERROR
    on the connection (|where| = conn) or the stream (stream)."""
    c = Conn(port, 10)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    if where == 'conn':
        c.send(window_update(0, 0x7fffffff))
        c.pump(closed_or_goaway)
        eof_after_goaway(c)
    else:
        c.send(c.request(1, '/delay/3000') + window_update(1, 0x7fffffff))
        c.pump(lambda c: closed_or_goaway(c) or 1 in c.rsts or 1 in c.ended)
    c.report(1)


def sc_window_zero(port):
    """WINDOW_UPDATE with an increment of 0: PROTOCOL_ERROR."""
    c = Conn(port, 10)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    c.send(window_update(0, 0))
    c.pump(closed_or_goaway)
    eof_after_goaway(c)
    c.report()


def sc_data_beyond_window(port, path, total):
    """POST without looking at the windows: |total| bytes at once to an
    upstream that never reads, so the windows must stay shut."""
    total = int(total)
    c = Conn(port, 30)
    c.start()
    c.pump(lambda c: c.server_settings and c.acked, timeout=5)
    c.send(c.request(1, path, method='POST',
                     extra=[('content-length', str(total))],
                     end_stream=False))
    sent = 0
    chunk = b'x' * 16384
    while sent < total:
        if not c.send(frame(DATA, 0, 1, chunk), timeout=5):
            break
        sent += len(chunk)
        c.pump(lambda c: False, timeout=0)
        if closed_or_goaway(c) or 1 in c.rsts:
            break
    c.pump(lambda c: closed_or_goaway(c) or 1 in c.rsts, timeout=5)
    eof_after_goaway(c, 2)
    say('result', 'sent=%d' % sent)
    c.report(1)


def sc_malformed(port, what):
    """One bad frame (or preface); the server's answer is reported."""
    c = Conn(port, 10)
    if what == 'bad_preface':
        c.send(b'PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n' + settings())
        c.pump(lambda c: c.closed)
        say('result', 'reply=%s' % (c.buf[:40].decode('latin-1')
                                    .replace('\r', '\\r')
                                    .replace('\n', '\\n')
                                    .replace(' ', '_') or '-'))
        c.report()
        return
    if what == 'no_settings':
        # RFC 9113 §3.4: the preface must be followed by SETTINGS.
        c.send(PREFACE + frame(PING, 0, 0, b'12345678'))
    else:
        c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    bad = {
        'settings_len': frame(SETTINGS, 0, 0, b'\x00\x03\x00\x00\x00'),
        'settings_ack_len': frame(SETTINGS, ACK, 0, b'\x00\x00\x00\x00\x00\x00'),
        'settings_stream': frame(SETTINGS, 0, 1),
        'settings_window': settings((S_INITIAL_WINDOW_SIZE, 0x80000000)),
        'settings_frame_size': settings((S_MAX_FRAME_SIZE, 100)),
        'settings_push': settings((S_ENABLE_PUSH, 2)),
        'ping_len': frame(PING, 0, 0, b'1234567'),
        'ping_stream': frame(PING, 0, 1, b'12345678'),
        'headers_stream0': frame(HEADERS, END_HEADERS | END_STREAM, 0,
                                 hpack.Encoder().encode([(':method', 'GET')])),
        'data_stream0': frame(DATA, 0, 0, b'abc'),
        'data_idle': frame(DATA, 0, 5, b'abc'),
        'rst_idle': rst(3, 0),
        'rst_len': frame(RST_STREAM, 0, 1, b'\x00\x00\x00'),
        'window_len': frame(WINDOW_UPDATE, 0, 0, b'\x00\x00\x01'),
        'goaway_stream': frame(GOAWAY, 0, 1, b'\x00' * 8),
        'priority_len': frame(PRIORITY, 0, 1, b'\x00\x00'),
        'continuation_alone': frame(CONTINUATION, END_HEADERS, 1,
                                    hpack.Encoder().encode([('a', 'b')])),
        'push_promise': frame(PUSH_PROMISE, END_HEADERS, 1,
                              b'\x00\x00\x00\x02'),
        'even_stream': frame(HEADERS, END_HEADERS | END_STREAM, 2,
                             hpack.Encoder().encode(
                                 [(':method', 'GET'), (':scheme', 'http'),
                                  (':path', '/'), (':authority', 'h2.test')])),
        'frame_too_big': frame(DATA, 0, 1, b'', length=1 << 20) + b'z' * 20000,
        'no_settings': b'',
    }[what]
    c.send(bad, timeout=5)
    c.pump(lambda c: closed_or_goaway(c) or c.rsts)
    if c.goaway:
        eof_after_goaway(c)
    c.report()


def sc_flood(port, kind, n):
    """|n| frames that each ask for an answer (SETTINGS or PING), sent
    without reading a single answer."""
    n = int(n)
    c = Conn(port, 30)
    c.start()
    one = settings() if kind == 'settings' else frame(PING, 0, 0,
                                                      b'flooding')
    t0 = time.monotonic()
    sent = 0
    batch = one * 1000
    while sent < n:
        try:
            k = c.sock.send(batch)
        except (BlockingIOError, InterruptedError):
            if time.monotonic() - t0 > 20:
                break
            select.select([], [c.sock], [], 0.5)
            continue
        except OSError:
            c.closed = True
            break
        sent += k // len(one)
        batch = batch[k:] + one * (k // len(one))
        if len(batch) < len(one) * 1000:
            batch += one * ((len(one) * 1000 - len(batch)) // len(one))
    say('result', 'sent=%d' % sent, 'secs=%.2f' % (time.monotonic() - t0))
    c.pump(closed_or_goaway, timeout=10)
    if c.goaway:
        eof_after_goaway(c)
    c.report()


def sc_settings_entries(port, n):
    """One SETTINGS frame with |n| entries."""
    n = int(n)
    c = Conn(port, 10)
    c.start()
    c.pump(lambda c: c.server_settings, timeout=5)
    c.send(settings(*[(S_MAX_HEADER_LIST_SIZE, 65536 + i) for i in range(n)]))
    c.pump(lambda c: closed_or_goaway(c) or c.pings, timeout=3)
    say('result', 'acked=%d' % (1 if c.acked else 0))
    c.report()


SCENARIOS = {
    'get': sc_get, 'upload': sc_upload, 'slowread': sc_slowread,
    'streams': sc_streams, 'drain': sc_drain, 'fields': sc_fields,
    'cancel': sc_cancel, 'early_body': sc_early_body,
    'rapid_reset': sc_rapid_reset, 'continuation': sc_continuation,
    'hpack_table_size': sc_hpack_table_size,
    'hpack_bad_index': sc_hpack_bad_index, 'hpack_bomb': sc_hpack_bomb,
    'many_headers': sc_many_headers, 'window_overflow': sc_window_overflow,
    'window_zero': sc_window_zero, 'data_beyond_window': sc_data_beyond_window,
    'malformed': sc_malformed, 'flood': sc_flood,
    'settings_entries': sc_settings_entries,
}


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in SCENARIOS:
        sys.stderr.write('usage: h2raw.py SCENARIO PORT [ARGS...]\n'
                         'scenarios: %s\n' % ' '.join(sorted(SCENARIOS)))
        sys.exit(2)
    try:
        SCENARIOS[sys.argv[1]](int(sys.argv[2]), *sys.argv[3:])
    except ConnectionRefusedError:
        say('refused')
        sys.exit(1)


if __name__ == '__main__':
    main()
