"""A real registry (Debian's docker-registry, the CNCF distribution server) on loopback, with an
optional token server for bearer auth, and a small OCI distribution client to push test images."""
import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

from enclave_util import free_port

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
import datetime

REGISTRY = "/usr/bin/docker-registry"




def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    """Issues ES256 JWTs the registry trusts (x5c header, certificate in its rootcertbundle)."""

    def __init__(self, d, service, issuer="enclaver-test-issuer"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(1)
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(hours=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = d / "token-cert.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.service, self.issuer = service, issuer
        self.requests = []
        self.port = free_port()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                outer.requests.append(q)
                body = json.dumps({"token": outer.token(q.get("scope", [""])[0])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.realm = f"http://127.0.0.1:{self.port}/token"

    def token(self, scope):
        access = []
        m = re.match(r"repository:([^:]+):(.+)", scope or "")
        if m:
            access.append({"type": "repository", "name": m.group(1), "actions": m.group(2).split(",")})
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "", "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        r, s = decode_dss_signature(self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return signing + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def close(self):
        self.httpd.shutdown()


class Registry:
    def __init__(self, d, token=False):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.token = TokenServer(d, "enclaver-test-registry") if token else None
        cfg = {"version": 0.1, "log": {"level": "error"},
               "storage": {"filesystem": {"rootdirectory": str(d / "storage")}, "delete": {"enabled": True}},
               "http": {"addr": self.host}}
        if self.token:
            cfg["auth"] = {"token": {"realm": self.token.realm, "service": self.token.service,
                                     "issuer": self.token.issuer, "rootcertbundle": str(self.token.cert_path)}}
        (d / "registry.yml").write_text(json.dumps(cfg))  # JSON is YAML
        self.log = open(d / "registry.log", "w")
        self.proc = subprocess.Popen([REGISTRY, "serve", str(d / "registry.yml")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.auth = None
        deadline = time.time() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("docker-registry did not start: " + (d / "registry.log").read_text())
                time.sleep(0.05)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
        if self.token:
            self.token.close()

    # --- a small push client ---
    def _req(self, method, path, data=None, headers=None, repo=None):
        url = path if path.startswith("http") else f"http://{self.host}{path}"
        for attempt in range(2):
            h = dict(headers or {})
            if self.auth:
                h["Authorization"] = self.auth
            req = urllib.request.Request(url, data=data, method=method, headers=h)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, dict(r.headers), r.read()
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0 and self.token:
                    self.auth = "Bearer " + self.token.token(f"repository:{repo}:pull,push")
                    continue
                raise

    def put_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _, h, _ = self._req("POST", f"/v2/{repo}/blobs/uploads/", data=b"", repo=repo)
        loc = h["Location"]
        if not loc.startswith("http"):
            loc = f"http://{self.host}{loc}"
        sep = "&" if "?" in loc else "?"
        self._req("PUT", f"{loc}{sep}digest={digest}", data=data,
                  headers={"Content-Type": "application/octet-stream"}, repo=repo)
        return {"digest": digest, "size": len(data)}

    def put_manifest(self, repo, ref, manifest, media_type):
        data = json.dumps(manifest).encode() if not isinstance(manifest, bytes) else manifest
        self._req("PUT", f"/v2/{repo}/manifests/{ref}", data=data, headers={"Content-Type": media_type}, repo=repo)
        return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data), "mediaType": media_type}

    def push_image(self, repo, ref, layers_gz, config, media="oci"):
        cfg = self.put_blob(repo, json.dumps(config).encode())
        if media == "oci":
            mt, cmt, lmt = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.config.v1+json",
                            "application/vnd.oci.image.layer.v1.tar+gzip")
        else:
            mt, cmt, lmt = ("application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.docker.container.image.v1+json",
                            "application/vnd.docker.image.rootfs.diff.tar.gzip")
        manifest = {"schemaVersion": 2, "mediaType": mt, "config": dict(cfg, mediaType=cmt),
                    "layers": [dict(self.put_blob(repo, l), mediaType=lmt) for l in layers_gz]}
        return self.put_manifest(repo, ref, manifest, mt)


@contextlib.contextmanager
def registry(d, token=False):
    d.mkdir(parents=True, exist_ok=True)
    r = Registry(d, token)
    try:
        yield r
    finally:
        r.close()
