#!/usr/bin/python3
"""A Zipkin v2 collector stand-in for the tracing tests. Standard library only.

    zipkin-collector.py PORT OUT_FILE [--status N] [--delay SECONDS]
                        [--watch-parent]

Listens on 127.0.0.1:PORT with HTTP/1.1 keep-alive. It answers each POST
to /api/v2/spans with 202 (or --status) after --delay seconds, and appends
each batch it accepts (a 2xx answer) to OUT_FILE as one line: the body
re-encoded as compact JSON, or {"_invalid": BODY} when it does not parse.

GET /mode?status=N&delay=S changes both while it runs; GET /ready answers
200 once it listens. Each request is logged to stderr with its method,
path, Content-Type and body length. --watch-parent: exit once the process
that started it is gone.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    lock = threading.Lock()
    status = 202
    delay = 0.0
    out = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/mode":
            q = urllib.parse.parse_qs(url.query)
            with State.lock:
                if "status" in q:
                    State.status = int(q["status"][0])
                if "delay" in q:
                    State.delay = float(q["delay"][0])
            self._answer(200, b"ok\n")
        elif url.path == "/ready":
            self._answer(200, b"ready\n")
        else:
            self._answer(404, b"not found\n")

    def do_POST(self):
        body = self._read_body()
        ctype = self.headers.get("Content-Type") or "-"
        sys.stderr.write("POST %s content-type=%s length=%d\n"
                         % (self.path, ctype, len(body)))
        sys.stderr.flush()
        with State.lock:
            status, delay = State.status, State.delay
        if delay > 0:
            time.sleep(delay)
        if self.path != "/api/v2/spans":
            self._answer(404, b"not found\n")
            return
        try:
            line = json.dumps(json.loads(body.decode("utf-8")),
                              separators=(",", ":"))
        except (ValueError, UnicodeDecodeError):
            line = json.dumps({"_invalid": body.decode("latin-1")})
        # Only batches it accepts; one write per line in append mode, so
        # lines never interleave.
        if 200 <= status <= 299:
            with State.lock:
                os.write(State.out, (line + "\n").encode("utf-8"))
        self._answer(status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("out")
    ap.add_argument("--status", type=int, default=202)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--watch-parent", action="store_true")
    a = ap.parse_args()
    State.status = a.status
    State.delay = a.delay
    State.out = os.open(a.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    if a.watch_parent:
        ppid = os.getppid()

        def watch():
            while os.getppid() == ppid:
                time.sleep(0.5)
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
    sys.stderr.write("zipkin-collector listening on 127.0.0.1:%d\n" % a.port)
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
