#!/usr/bin/python3
"""delay-relay.py: a TCP relay that adds a fixed one-way delay, standing in
for a wide-area link between two regions in the multi-region tests (the
kernel of the test machines has no netem).

    delay-relay.py --listen IP:PORT --connect IP:PORT [--delay-ms MS]
                   [--source IP] [--log FILE] [--watch-parent]

Every accepted connection gets its own connection to --connect (from
--source if given, so the far end can tell which relay a connection came
through). Each chunk read on either side is written to the other side
--delay-ms (default 20) after it was read, in order, so a request and its
answer take 2 x delay more than without the relay. An EOF is passed on
(half-close) after the same delay, and the connection is closed once both
directions have ended. A reset on one side resets the other (RST), after
the delay too. If the target refuses the connection, the client is reset.
Setting up the connection itself adds no delay: only bytes do.

Buffering is bounded (about 4 MiB per direction per connection): when a
side does not read, the relay stops reading from the other one.

--log FILE        one line per connection opened or closed, with counts
--watch-parent    exit once the process that started us is gone

Prints "listening IP:PORT" on stdout once ready; exits 0 on SIGTERM/SIGINT.
"""

import argparse
import asyncio
import collections
import os
import resource
import signal
import socket
import struct
import sys
import time

CHUNK = 65536
QUEUE_BYTES = 4 * 1024 * 1024

EOF = object()
RESET = object()


def addr(s):
    host, _, port = s.rpartition(':')
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError('expected IP:PORT, got %r' % s)
    return host.strip('[]'), int(port)


class Stats:
    opened = 0
    active = 0
    failed = 0


class Direction:
    """Bytes from one socket to the other, each chunk held until it is
    |delay| old."""

    def __init__(self, link, name, reader, writer):
        self.link = link
        self.name = name
        self.reader = reader
        self.writer = writer
        self.items = collections.deque()   # (due, data | EOF | RESET)
        self.queued = 0
        self.more = asyncio.Event()        # an item was added
        self.room = asyncio.Event()        # queued fell below the bound
        self.room.set()
        self.bytes = 0

    def put(self, item):
        self.items.append((time.monotonic() + self.link.delay, item))
        if isinstance(item, bytes):
            self.queued += len(item)
            if self.queued >= QUEUE_BYTES:
                self.room.clear()
        self.more.set()

    async def read_side(self):
        while True:
            await self.room.wait()
            try:
                data = await self.reader.read(CHUNK)
            except (ConnectionError, OSError):
                self.put(RESET)
                return
            if not data:
                self.put(EOF)
                return
            self.put(data)

    async def write_side(self):
        while True:
            while not self.items:
                self.more.clear()
                await self.more.wait()
            due, item = self.items.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if item is EOF:
                try:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                except (ConnectionError, OSError):
                    pass
                return 'eof'
            if item is RESET:
                return 'reset'
            try:
                self.writer.write(item)
                await self.writer.drain()
            except (ConnectionError, OSError):
                return 'reset'
            self.bytes += len(item)
            self.queued -= len(item)
            if self.queued < QUEUE_BYTES:
                self.room.set()


def hard_close(writer):
    # A reset, not a FIN: the peer must see the failure as one.
    sock = writer.get_extra_info('socket')
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack('ii', 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class Link:
    def __init__(self, args, log):
        self.delay = args.delay_ms / 1000.0
        self.args = args
        self.log = log

    async def serve(self, creader, cwriter):
        Stats.opened += 1
        Stats.active += 1
        n = Stats.opened
        peer = cwriter.get_extra_info('peername')
        try:
            try:
                sreader, swriter = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.args.connect[0], self.args.connect[1],
                        local_addr=(self.args.source, 0)
                        if self.args.source else None),
                    timeout=5)
            except (OSError, asyncio.TimeoutError) as e:
                Stats.failed += 1
                self.log('conn %d from %s: connect failed: %s' % (n, peer, e))
                hard_close(cwriter)
                return
            for w in (cwriter, swriter):
                w.get_extra_info('socket').setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.log('conn %d from %s open' % (n, peer))
            up = Direction(self, 'up', creader, swriter)
            down = Direction(self, 'down', sreader, cwriter)
            readers = [asyncio.ensure_future(up.read_side()),
                       asyncio.ensure_future(down.read_side())]
            wup = asyncio.ensure_future(up.write_side())
            wdown = asyncio.ensure_future(down.write_side())
            ends = []
            pending = {wup, wdown}
            while pending:
                done, pending = await asyncio.wait(
                    pending, return_when=asyncio.FIRST_COMPLETED)
                ends += [t.result() for t in done]
                if 'reset' in ends:
                    break
            for t in readers + list(pending):
                t.cancel()
            if 'reset' in ends:
                hard_close(cwriter)
                hard_close(swriter)
            else:
                cwriter.close()
                swriter.close()
            self.log('conn %d closed (%s) up %d down %d bytes'
                     % (n, '/'.join(ends), up.bytes, down.bytes))
        finally:
            Stats.active -= 1


async def main():
    p = argparse.ArgumentParser(description='TCP relay with a fixed delay')
    p.add_argument('--listen', type=addr, required=True)
    p.add_argument('--connect', type=addr, required=True)
    p.add_argument('--delay-ms', type=float, default=20.0)
    p.add_argument('--source', default=None)
    p.add_argument('--log', default=None)
    p.add_argument('--watch-parent', action='store_true')
    args = p.parse_args()

    # Many parallel connections: two descriptors each.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    logf = open(args.log, 'a', buffering=1) if args.log else None

    def log(msg):
        if logf:
            logf.write('%.3f %s\n' % (time.time(), msg))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    link = Link(args, log)
    server = await asyncio.start_server(
        link.serve, args.listen[0], args.listen[1], backlog=4096,
        reuse_address=True)
    print('listening %s:%d' % args.listen, flush=True)
    log('listening %s:%d -> %s:%d delay %g ms'
        % (args.listen + args.connect + (args.delay_ms,)))

    ppid = os.getppid()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except asyncio.TimeoutError:
            pass
        if args.watch_parent and os.getppid() != ppid:
            break
    server.close()
    log('exit: %d connections, %d failed' % (Stats.opened, Stats.failed))


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.exit(0)
