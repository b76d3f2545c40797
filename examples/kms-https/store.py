#!/usr/bin/env python3
"""The host's state store for the example (the part Consul plays for Vault): GET and PUT of
small values under a path, kept in a folder, so they survive the enclave. Loopback only.
Usage: store.py DIR [PORT]"""
import http.server
import os
import pathlib
import sys

root = pathlib.Path(sys.argv[1])
root.mkdir(parents=True, exist_ok=True)


class Store(http.server.BaseHTTPRequestHandler):
    def path_file(self):
        name = self.path.strip("/").replace("/", "_") or "root"
        return root / name

    def do_GET(self):
        f = self.path_file()
        body = f.read_bytes() if f.exists() else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        tmp = self.path_file().with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path_file())
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 18500), Store).serve_forever()
