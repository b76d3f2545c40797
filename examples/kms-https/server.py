"""An HTTPS service whose TLS key came from KMS and whose state lives outside the enclave, on a
store the host runs (reached through egress as "host", as Vault reaches Consul): it counts
visits, and the count survives a restart of the enclave."""
import http.server
import os
import ssl
import urllib.request

STORE = os.environ.get("STORE_URL", "http://host:18500/visits")


def visits():
    # urllib honours http_proxy: the request leaves through odyn's egress proxy
    with urllib.request.urlopen(STORE, timeout=10) as r:
        n = int(r.read() or b"0") + 1
    req = urllib.request.Request(STORE, data=str(n).encode(), method="PUT")
    urllib.request.urlopen(req, timeout=10).close()
    return n


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Hello from the enclave over TLS; visits: {visits()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("https:", fmt % args, flush=True)


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/app/cert.pem", "/run/key.pem")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 8443), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("serving HTTPS on 8443 with the key KMS released", flush=True)
srv.serve_forever()
