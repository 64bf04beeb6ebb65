#!/usr/bin/python3
"""bench/zipkin-collector.py PORT: a Zipkin v2 sink on 127.0.0.1:PORT for
bench/run's observability scenario (standard library only).

POST /api/v2/spans: reads the body, answers 202 (keep-alive HTTP/1.1, one
thread per connection) and counts the POSTs, the spans (length of the JSON
array) and the bytes.
GET /counts: "posts spans bytes bad" (bad: bodies that were no JSON array).
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTS = {"posts": 0, "spans": 0, "bytes": 0, "bad": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        if self.path.split("?")[0] != "/api/v2/spans":
            self.answer(404)
            return
        try:
            spans = json.loads(body)
            if not isinstance(spans, list):
                raise ValueError("not a JSON array")
        except ValueError:
            spans = None
        with LOCK:
            COUNTS["posts"] += 1
            COUNTS["bytes"] += len(body)
            if spans is None:
                COUNTS["bad"] += 1
            else:
                COUNTS["spans"] += len(spans)
        self.answer(202)

    def do_GET(self):
        if self.path != "/counts":
            self.answer(404)
            return
        with LOCK:
            line = "%(posts)d %(spans)d %(bytes)d %(bad)d\n" % COUNTS
        self.answer(200, line.encode())

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
