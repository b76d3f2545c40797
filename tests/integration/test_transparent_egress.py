"""Transparent egress in the local enclave: the app, with no proxy settings, reaches allowed
hosts by name and by literal address; names resolve inside the enclave by the policy; everything
else fails at once; the app cannot undo the rules (spec/transparent-egress.md)."""
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading

import pytest

import enclave_util as eu
from conftest import BUILD, ROOT, run
from test_build import static_odyn
from test_kms_local import KmsLocal
from test_local_enclave import Enclave

sys.path.insert(0, str(ROOT / "scripts"))
import mkimage  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local launcher needs root")

MANIFEST = eu.MANIFEST + """egress:
  allow:
    - "*.egress.test"
    - 192.0.2.10
  deny:
    - no.egress.test
"""
HOSTS = ["--add-host", "echo.egress.test:127.0.0.1", "--add-host", "192.0.2.10:127.0.0.1",
         "--add-host", "down.egress.test:127.0.0.1"]


class EchoServer:
    """Answers each connection with "echo:" and what it sent until it half-closed; for `nconns`,
    echoes byte by byte while the connection stays open."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(4096)
        self.port = self.s.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        data = b""
        try:
            while True:
                b = c.recv(4096)
                if not b:
                    break
                if b == b"y":
                    c.sendall(b"y")
                    continue
                data += b
            c.sendall(b"echo:" + data)
        except OSError:
            pass
        c.close()

    def close(self):
        self.s.close()


def results(out):
    """{step: its output} from the probe's seq."""
    return {s.split("\n", 1)[0]: s.split("\n", 1)[1] if "\n" in s else "" for s in out.split("=== ")[1:]}


def test_apps_reach_allowed_hosts_with_no_proxy_and_nothing_else(tmp_path):
    echo = EchoServer()
    down = eu.free_port()
    steps = [
        "env",
        "cat /etc/resolv.conf",
        "dns 127.0.0.1 echo.egress.test 1",
        "dns 203.0.113.9 ECHO.egress.test 1",  # any server: the query lands on odyn
        "dns 127.0.0.1 no.egress.test 1",
        "dns 127.0.0.1 elsewhere.example 1",
        "dns 127.0.0.1 echo.egress.test 28",
        "dns 127.0.0.1 1.0.18.198.in-addr.arpa 12",
        f"nsend echo.egress.test {echo.port} by-name",
        f"tsend 192.0.2.10 {echo.port} by-address",
        f"tsend 192.0.2.11 {echo.port} denied-address",
        f"tsend 198.18.0.200 {echo.port} unknown-pool-address",
        f"nsend down.egress.test {down} host-cannot-connect",
        "tsend 127.0.0.1 10001 loop",
        "udp 192.0.2.10 9999",
        "udp 127.0.0.1 9999",
        "unrule",
        "vsock",
        f"nsend echo.egress.test {echo.port} after-unrule",
        f"connect 198.18.0.1:{echo.port} via-the-proxy",  # the proxy takes pool addresses for their names
        f"connect 198.18.0.77:{echo.port} unknown",
        f"nconns echo.egress.test {echo.port} 1000",
    ]
    e = Enclave(tmp_path, MANIFEST, ["seq", *steps], extra_args=HOSTS)
    assert e.wait() == 0, e.out + e.err
    echo.close()
    r = results(e.out)
    # the proxy variables stay for proxy-aware apps; nothing here uses them
    assert "http_proxy=http://127.0.0.1:10000" in r["env"]
    assert "nameserver 127.0.0.1" in r["cat /etc/resolv.conf"]
    assert "rcode 0 answers 1 198.18.0.1" in r[steps[2]]
    assert "rcode 0 answers 1 198.18.0.1" in r[steps[3]]
    assert "rcode 3 answers 0" in r[steps[4]] and "rcode 3 answers 0" in r[steps[5]]
    assert "rcode 0 answers 0" in r[steps[6]]
    assert "rcode 0 answers 1 echo.egress.test" in r[steps[7]]
    assert f"tsend 198.18.0.1:{echo.port}: echo:by-name" in r[steps[8]]
    assert f"tsend 192.0.2.10:{echo.port}: echo:by-address" in r[steps[9]]
    for s in steps[10:14]:
        assert "Connection reset by peer" in r[s], (s, r[s])
    assert "udp 192.0.2.10:9999: Operation not permitted" in r[steps[14]]
    assert "udp 127.0.0.1:9999: SENT" in r[steps[15]]
    assert "unrule raw socket: Operation not permitted" in r["unrule"]
    assert "unrule delete route: Operation not permitted" in r["unrule"]
    assert "unrule unshare net: Operation not permitted" in r["unrule"]
    assert "vsock socket: Address family not supported by protocol" in r["vsock"]
    assert "echo:after-unrule" in r[steps[-4]]
    assert r[steps[-3]].startswith("HTTP/1.1 200 OK\r\n\r\necho:via-the-proxy"), r[steps[-3]]
    assert "HTTP/1.1 401 Unauthorized" in r[steps[-2]]
    assert "nconns: 1000 of 1000 echoed while all were open" in r[steps[-1]]
    # odyn says what it refused and why; denied names never reached the host
    assert "dns: no.egress.test: NXDOMAIN (refused by a deny rule)" in e.out
    assert "dns: elsewhere.example: NXDOMAIN (no allow rule matches)" in e.out
    assert "egress: 192.0.2.11:%d (transparent) blocked (no allow rule matches)" % echo.port in e.out
    assert "egress: 198.18.0.200:%d blocked (an address of the synthetic pool that no name was given)" % echo.port in e.out
    assert re.search(rf"egress: down.egress.test:{down} \(transparent\) reset: the host cannot connect: .*Connection refused", e.out), e.out
    assert "no.egress.test" not in e.err and "elsewhere.example" not in e.err
    assert echo.accepted == 3 + 1 + 1000
    assert "Transparent egress on" in e.out


EXPECTED_RULES = {
    "iptables-legacy-save": """*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A OUTPUT -d 127.0.0.0/8 -o lo -j ACCEPT
-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset
-A OUTPUT -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A OUTPUT -d 127.0.0.0/8 -j ACCEPT
-A OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 53
-A OUTPUT -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 53
-A OUTPUT -p tcp -j REDIRECT --to-ports 10001
COMMIT""",
    "ip6tables-legacy-save": """*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A OUTPUT -d ::1/128 -o lo -j ACCEPT
-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset
-A OUTPUT -j REJECT --reject-with icmp6-port-unreachable
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A OUTPUT -d ::1/128 -j ACCEPT
-A OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 53
-A OUTPUT -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 53
-A OUTPUT -p tcp -j REDIRECT --to-ports 10001
COMMIT""",
}


def enclave_netns_run(run_pid, *argv):
    """argv run in the network namespace of enclaver-run `run_pid`'s enclave (host root may read it)."""
    init = eu.enclave_init_pid(run_pid)
    return subprocess.run(["nsenter", "-t", str(init), "-n", *argv], capture_output=True, text=True, timeout=30)


def test_the_rules_and_routes_are_the_designs_and_the_app_cannot_change_them(tmp_path):
    e = Enclave(tmp_path, MANIFEST, ["seq", "unrule", "sleep 600"], extra_args=HOSTS)
    eu.wait_app_step(e.proc.pid, "sleep 600")
    for tool, want in EXPECTED_RULES.items():
        got = enclave_netns_run(e.proc.pid, tool).stdout
        # counters and the comment lines carry no meaning here
        got = "\n".join(re.sub(r" \[\d+:\d+\]$", "", l) for l in got.splitlines() if not l.startswith("#"))
        assert got == want, (tool, got)
    routes = enclave_netns_run(e.proc.pid, "ip", "route").stdout
    assert "default dev lo scope link src 127.0.0.1" in routes
    assert "default dev lo" in enclave_netns_run(e.proc.pid, "ip", "-6", "route").stdout
    # (what the app's attempts printed is checked in the first test: a stop this early may come
    # before enclaver-run's log client has connected)
    assert e.stop() == 109


def test_off_in_the_manifest_means_proxy_only(tmp_path):
    manifest = MANIFEST + "  transparent: false\n"
    e = Enclave(tmp_path, manifest, ["seq", "cat /etc/resolv.conf", "tsend 192.0.2.10 80 x", "unrule"],
                extra_args=HOSTS)
    assert e.wait() == 0, e.out + e.err
    r = results(e.out)
    assert "written by odyn" not in r["cat /etc/resolv.conf"]
    assert "Network is unreachable" in r["tsend 192.0.2.10 80 x"]
    # without transparent egress there is nothing to protect: the app keeps root's capabilities
    assert "unrule raw socket: OPENED" in r["unrule"]
    assert "Transparent egress" not in e.out


def test_required_and_impossible_is_fatal_default_is_a_warning(tmp_path):
    # odyn without its bootstrap is not in an enclave's own network: it must not touch the rules
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    e = Enclave(tmp_path / "a", MANIFEST + "  transparent: true\n", ["exit", "0"], odyn_args=["--no-bootstrap"])
    assert e.wait() == 108, e.out + e.err
    assert "transparent egress (egress.transparent is true): odyn runs with --no-bootstrap" in e.out
    assert "Starting [" not in e.out  # the app never started
    e = Enclave(tmp_path / "b", MANIFEST, ["exit", "0"], odyn_args=["--no-bootstrap"])
    assert e.wait() == 0, e.out + e.err
    assert "transparent egress is off, apps reach the outside through the proxy only: odyn runs with" in e.out


# --- real clients: curl, Python's urllib, Node's fetch and the AWS SDK for JavaScript ---

APP = pathlib.Path(__file__).parent / "apps" / "egress"


@pytest.fixture(scope="module")
def egress_rootfs():
    p = subprocess.run([str(ROOT / "scripts" / "mkrootfs.sh"), "egress"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    return pathlib.Path(p.stdout.strip())


def tls_files(d):
    """A CA, and a server certificate it signed for api.egress.test and 192.0.2.10."""
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
         "/CN=egress test CA", "-keyout", d / "ca.key", "-out", d / "ca.pem")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=api.egress.test",
         "-keyout", d / "server.key", "-out", d / "server.csr")
    (d / "ext").write_text("subjectAltName=DNS:api.egress.test,IP:192.0.2.10\n")
    ossl("x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", d / "ext", "-out", d / "server.pem")


class HttpsServer:
    def __init__(self, d):
        import http.server
        import ssl

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = f"hello {self.path[1:]} via {self.headers.get('Host')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d / "server.pem", d / "server.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.mark.parametrize("launcher", ["local", "vm"])
def test_real_clients_reach_allowed_hosts_with_no_proxy_settings(tmp_path, egress_rootfs, launcher):
    tls_files(tmp_path)
    server = HttpsServer(tmp_path)
    kms = KmsLocal(tmp_path / "state")
    try:
        files = [("app", "d", b"", 0o755), ("app/ca.pem", "f", (tmp_path / "ca.pem").read_bytes(), 0o644)]
        files += [(f"app/{f.name}", "f", f.read_bytes(), 0o755) for f in sorted(APP.iterdir())]
        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"PORT={server.port}"]
        mkimage.docker_archive(tmp_path / "image.tar", [egress_rootfs, mkimage.layer(files)],
                               {"config": {"Entrypoint": ["/app/run.sh"], "Env": env}}, tag="egress:app")
        (tmp_path / "enclaver.yaml").write_text(f"""version: v1
name: egress
target: egress:enclave
sources:
  app: docker-archive:{tmp_path}/image.tar
egress:
  allow:
    - api.egress.test
    - 192.0.2.10
    - 169.254.169.254
    - kms.*.amazonaws.com
kms_proxy:
  listen_port: 9999
defaults:
  memory_mb: 1536
  cpu_count: 2
""")
        (tmp_path / "kernel").write_bytes(b"not a kernel")
        # the VM boots the default kit (its kernel, netfilter modules and a static enclaver-init,
        # as an image); the local enclave none
        kernel = ["--kernel", tmp_path / "kernel"]
        if launcher == "vm":
            from test_vm_enclave import kit_image
            kit_image(tmp_path / "kit.tar")
            kernel = ["--bootkit", f"docker-archive:{tmp_path}/kit.tar"]
        r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / "app.eif", *kernel,
                "--odyn", static_odyn())
        assert r.code == 0, r.err[-600:]
        p = subprocess.run([str(BUILD / "enclaver-run"), "--launcher", launcher, "--eif-file", str(tmp_path / "app.eif"),
                            "--manifest-file", str(tmp_path / "enclaver.yaml"), "--add-host", "api.egress.test:127.0.0.1",
                            "--add-host", "192.0.2.10:127.0.0.1"], capture_output=True, text=True, timeout=600,
                           env=kms.env)
    finally:
        server.close()
        kms.proc.terminate()
        kms.proc.wait()
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert re.search(r"198\.18\.\d+\.\d+\s+api\.egress\.test", out), out
    assert "getent denied: exit 2" in out
    host = f"api.egress.test:{server.port}"
    assert f"hello curl-by-name via {host}" in out
    assert f"hello curl-by-address via 192.0.2.10:{server.port}" in out
    # reset: before curl saw the connection up (7), during the TLS handshake (35) or after (56)
    assert re.search(r"curl denied: exit (7|35|56)\n", out), out
    assert f"python: 200 hello python-by-name via {host}" in out
    assert f"python: 200 hello python-by-address via 192.0.2.10:{server.port}" in out
    assert f"node fetch: 200 hello node-fetch via {host}" in out
    assert "node sdk credentials: an access key with a session token" in out
    assert "node sdk GenerateRandom: 32 bytes through the KMS proxy" in out
    assert "=== done" in out
    # the denied name never left the enclave: the host saw no request for it
    assert "dns: no.egress.test: NXDOMAIN (no allow rule matches)" in out
    assert "no.egress.test" not in p.stderr
