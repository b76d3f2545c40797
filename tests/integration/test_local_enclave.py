"""The local enclave end to end: enclaver-run boots an EIF holding odyn and the probe program in
namespaces, and the tests act as its users do: through published ports, the egress proxy, the
exit code and the log stream."""
import glob
import hashlib
import json
import http.server
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BUILD
import enclave_util as eu

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local launcher needs root")


free_port = eu.free_port
wait_port = eu.wait_echo


class Enclave:
    def __init__(self, d, manifest, app, extra_args=(), **kw):
        self.eif = eu.make_eif(d, manifest, app, **kw)
        self.d = d
        self.proc = subprocess.Popen([str(BUILD / "enclaver-run"), "--eif-file", str(self.eif), "--manifest-file",
                                      str(d / "enclaver.yaml"), *extra_args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait(self, timeout=60):
        out, err = self.proc.communicate(timeout=timeout)
        self.out, self.err = out.decode(errors="replace"), err.decode(errors="replace")
        return self.proc.returncode

    def booted(self, timeout=15):
        """Until odyn serves this enclave's status port."""
        eu.wait_vsock(self.proc.pid, 17000, timeout).close()

    def leftovers(self):
        return eu.leftovers(self.err)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.wait()

    def __del__(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # lets enclaver-run clean up
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_exit_code_and_logs(tmp_path):
    e = Enclave(tmp_path, eu.MANIFEST, ["exit", "3"])
    assert e.wait() == 3, e.err
    assert "probe exiting with 3" in e.out
    assert "odyn: info: Entrypoint exited with 3" in e.out
    assert "LOCAL ENCLAVE" in e.err and "enclave exited with code 3" in e.err
    assert e.leftovers() == []


def test_signal_gives_107(tmp_path):
    e = Enclave(tmp_path, eu.MANIFEST, ["signal", "15"])
    assert e.wait() == 107, e.err
    assert "enclave stopped due to signal 15 (SIGTERM)" in e.err
    assert e.leftovers() == []


def test_odyn_fatal_gives_108_and_stays_readable(tmp_path):
    # the manifest baked into the image is broken: odyn reports fatal and keeps serving status
    e = Enclave(tmp_path, eu.MANIFEST, ["exit", "0"],
                extra_files={"etc/enclaver/enclaver.yaml": b"version: v1\nname: x\nbogus: 1\n"})
    assert e.wait() == 108, e.err
    assert 'unknown key \\"bogus\\"' in e.err or 'unknown key "bogus"' in e.err
    assert e.leftovers() == []


def test_sigterm_gives_109_and_cleans_up(tmp_path):
    e = Enclave(tmp_path, eu.MANIFEST, ["sleep", "600"])
    e.booted()
    time.sleep(0.3)
    assert e.stop(signal.SIGTERM) == 109, e.err
    assert e.leftovers() == []
    (tmp_path / "again").mkdir()
    e = Enclave(tmp_path / "again", eu.MANIFEST, ["sleep", "600"])
    time.sleep(1)
    assert e.stop(signal.SIGINT) == 109
    assert e.leftovers() == []


def test_killed_runs_are_swept_by_the_next(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    e = Enclave(tmp_path / "a", eu.MANIFEST, ["sleep", "600"])
    e.booted()
    state = eu.state_dir(e.proc.pid)
    e.proc.kill()  # SIGKILL: no cleanup possible; the enclave dies with it (parent-death signal)
    e.wait()
    time.sleep(0.3)
    assert state.exists()
    e2 = Enclave(tmp_path / "b", eu.MANIFEST, ["exit", "0"])
    assert e2.wait() == 0
    assert f"removed {state}, left by an enclaver-run that was killed" in e2.err
    assert not state.exists()
    assert e2.leftovers() == []


def test_enclave_cannot_point_the_host_at_host_sockets(tmp_path):
    # The attack: replace the vsock name of an ingress port with a symlink to a host socket
    # (Docker's, say) so that enclaver-run, root on the host, relays ingress clients to it.
    victim_path = str(tmp_path / "victim.sock")
    victim = socket.socket(socket.AF_UNIX)
    victim.bind(victim_path)
    victim.listen()
    victim.settimeout(0.5)
    port = free_port()
    manifest = eu.MANIFEST + f"ingress:\n  - listen_port: {port}\n"
    vdir = "/run/enclaver/vsock"
    e = Enclave(tmp_path, manifest, ["seq", f"plant {victim_path} {vdir}/16.{port}",
                                     f"plant {victim_path} {vdir}/3.17002", f"fill {vdir}/junk 64",
                                     "sleep 600"])
    eu.wait_app_step(e.proc.pid, "sleep 600")  # the app's own attempts are over
    state = eu.state_dir(e.proc.pid)
    # the folder is the host's: nothing the enclave writes lands in it (nor on the host's disk)
    # the host's own: the NSM emulator's and the development root's ports, and the root's copy
    assert sorted(os.listdir(state / "v")) == ["3.1314081024", "3.1314081025", "dev-root.pem"]
    assert not any(n.startswith("16.") or n == "junk" for n in os.listdir(state / "v"))
    # even a link that is there (the host's own doing) is never followed for an enclave's port
    os.symlink(victim_path, state / "v" / f"16.{port}")
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"GET /containers/json HTTP/1.0\r\n\r\n")
    c.settimeout(5)
    try:
        c.recv(100)
    except OSError:
        pass
    c.close()
    with pytest.raises(socket.timeout):
        victim.accept()
    victim.close()
    assert e.stop() == 109
    for target in (f"16.{port}", "3.17002", "junk"):
        line = [l for l in e.out.splitlines() if l.startswith(f"plant {vdir}/{target}") or
                l.startswith(f"fill {vdir}/{target}")]
        assert line and ("Permission denied" in line[0] or "Read-only file system" in line[0]), (target, e.out)
    assert e.leftovers() == []


def test_tunnel_frames_from_the_app_are_held_to_the_policy(tmp_path):
    # An app that skips odyn's proxy and writes tunnel frames to the host's egress port itself
    # is refused by enclaver-run for what the manifest does not allow, and nothing is dialled.
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen()
    target.settimeout(0.5)
    tport = target.getsockname()[1]
    manifest = eu.MANIFEST + "egress:\n  allow:\n    - host\n  deny:\n    - 10.0.0.0/8\n"
    e = Enclave(tmp_path, manifest, ["seq", f"tunnel 127.0.0.1 {tport}", f"tunnel localhost {tport}",
                                     f"tunnel 10.1.2.3 {tport}", f"tunnel host {tport}"])
    assert e.wait() == 0, e.err
    for h in ("127.0.0.1", "localhost", "10.1.2.3"):
        assert f"tunnel {h}:{tport}: " in e.out and "blocked by egress security policy" in \
            e.out.split(f"tunnel {h}:{tport}: ")[1].split("\n")[0], e.out
        assert f"egress: {h}:{tport} refused: not allowed by the manifest's egress policy" in e.err
    assert "deny rule 10.0.0.0/8" in e.err
    # what the manifest allows still goes through ("host" is the parent's loopback)
    assert f'tunnel host:{tport}: "Ok"' in e.out
    c, _ = target.accept()  # the one allowed connection, and only that one
    c.close()
    with pytest.raises(socket.timeout):
        target.accept()
    target.close()


def test_tunnel_flood_is_capped_and_host_memory_stays_small(tmp_path):
    # Thousands of connections to the host's egress port, each holding half a frame: the host
    # caps them (and says so) and keeps a few KiB per connection, not 64.
    manifest = eu.MANIFEST + "egress:\n  allow:\n    - host\n"
    e = Enclave(tmp_path, manifest, ["tunnel-flood", "5000"])
    deadline = time.time() + 30
    peak = 0
    while e.proc.poll() is None and time.time() < deadline:
        try:
            status = open(f"/proc/{e.proc.pid}/status").read()
            peak = max(peak, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.1)
    assert e.wait() == 0, e.err
    sent, closed = map(int, re.search(r"tunnel-flood: (\d+) sent, (\d+) closed by the host", e.out).groups())
    assert sent == 5000 and closed == 5000 - 4096, e.out + e.err
    assert "egress tunnel: 4096 connections open, the limit: refusing new ones" in e.err
    # 64 KiB for each of 4,096 connections would be 256 MiB. ASan's allocator roughly doubles a
    # program's resident memory (redzones around each block, shadow memory, its own caches):
    # the plain build peaks near 23 MiB here, the sanitized one between 44 and 55.
    sanitized = b"__asan_init" in subprocess.run(["nm", "-D", str(BUILD / "enclaver-run")],
                                                 capture_output=True).stdout
    assert peak < (96 if sanitized else 48) * 1024, f"enclaver-run peaked at {peak} KiB"


def test_an_app_holding_every_console_slot_cannot_hide_its_exit(tmp_path):
    # The app fills odyn's status slots; the launcher (the parent) still gets through, both the
    # enclaver-run that waits for the exit code and any new connection from the host.
    e = Enclave(tmp_path, eu.MANIFEST, ["hold-console", "80", "3", "5"])
    eu.wait_app_step(e.proc.pid, "hold-console")
    time.sleep(1)  # the slots are taken now
    s = eu.vsock_socket(e.proc.pid, 17000)
    s.settimeout(5)
    assert s.recv(1024) == b'{ "status": "running" }\n'
    s.close()
    assert e.wait() == 5, e.err
    assert "hold-console: holding 64" in e.out
    assert "console: too many clients, refusing one" in e.out
    assert "enclave exited with code 5" in e.err


def test_fork_bomb_stops_at_the_process_limit(tmp_path):
    # 256 MiB: 1024 processes or threads in the whole enclave (odyn and init among them)
    e = Enclave(tmp_path, eu.MANIFEST, ["forkbomb"])
    assert e.wait() == 107  # the probe ends itself and its children with SIGKILL
    m = re.search(r"forkbomb: (\d+) children, then: (.*)", e.out)
    assert m, e.out + e.err
    assert 900 < int(m.group(1)) < 1024 and m.group(2) == "Resource temporarily unavailable", m.group(0)
    assert e.leftovers() == []


def test_idle_clients_of_the_egress_proxy_cost_odyn_little(tmp_path):
    # 5,000 connections to odyn's egress proxy that never send a request: odyn caps them at
    # 4,096 and holds a few hundred bytes for each (it used to take 128 KiB each, and 5,000 of
    # them were more than a 256 MiB enclave has).
    manifest = eu.MANIFEST + "egress:\n  allow:\n    - host\n"
    e = Enclave(tmp_path, manifest, ["idle-conns", "10000", "5000", "4"])
    eu.wait_app_step(e.proc.pid, "idle-conns")
    odyn = eu.enclave_init_pid(eu.enclave_init_pid(e.proc.pid))
    peak = 0
    while e.proc.poll() is None:
        try:
            peak = max(peak, int(open(f"/proc/{odyn}/status").read().split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.1)
    assert e.wait() == 0, e.err
    ok, closed = map(int, re.search(r"idle-conns: (\d+) connected, (\d+) closed by the proxy", e.out).groups())
    assert ok == 5000 and closed == 5000 - 4096, e.out
    assert "egress proxy: 4096 connections open, the limit: refusing new ones" in e.out
    assert peak < 24 * 1024, f"odyn peaked at {peak} KiB"


def _processes_of(marker, what="cmdline"):
    """Processes whose command line (or cgroup) holds marker, a name only this test uses."""
    out = []
    for f in glob.glob(f"/proc/[0-9]*/{what}"):
        try:
            if marker in open(f, "rb").read().decode(errors="replace"):
                out.append(f)
        except OSError:  # gone meanwhile
            pass
    return out


def test_sigkill_at_any_instant_of_start_leaves_nothing_running(tmp_path):
    # enclaver-run killed at every stage of a start: before, during and after the namespaces,
    # the cgroups and the boot. The enclave's PID 1 (a clone of enclaver-run, which holds its
    # command line) and everything in its cgroups die with it; the next run removes the rest.
    killed = []
    for i, delay in enumerate([0, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6]):
        d = tmp_path / f"k{i}"
        d.mkdir()
        e = Enclave(d, eu.MANIFEST, ["sleep", "600"])
        time.sleep(delay)
        state = eu.state_dir(e.proc.pid)
        e.proc.kill()
        e.wait()
        killed.append((e.proc.pid, state, str(e.eif)))
    time.sleep(0.5)
    for pid, state, eif in killed:
        assert _processes_of(eif) == [], (pid, state)
        if state is not None:
            assert _processes_of(state.name, "cgroup") == [], state
    (tmp_path / "next").mkdir()
    e = Enclave(tmp_path / "next", eu.MANIFEST, ["exit", "0"])
    assert e.wait() == 0, e.err
    for pid, state, eif in killed:
        assert state is None or not state.exists(), state
    assert e.leftovers() == []


@pytest.mark.parametrize("entry", ["env", "cmd", "rootfs"])
def test_crafted_eif_links_never_lead_out_of_the_image(tmp_path, entry):
    # An EIF whose /env, /cmd or /rootfs is a link to the host's files: the local launcher must
    # not read the host's file into the app's environment, nor make the host's tree its root.
    import shutil
    import tempfile
    host = pathlib.Path(tempfile.mkdtemp(prefix="host-files-"))  # readable by any user, as /etc is
    host.chmod(0o755)
    secret = host / "secret"
    secret.write_text("HOST_SECRET=do-not-read\n")
    secret.chmod(0o644)
    try:
        e = Enclave(tmp_path, eu.MANIFEST, ["env"], links={entry: str(secret) if entry != "rootfs" else "/"})
        code = e.wait()
    finally:
        shutil.rmtree(host)
    assert code == 1, (code, e.out, e.err)
    assert "do-not-read" not in e.out + e.err
    want = {"env": "/env: is a symbolic link, not a file", "cmd": "/cmd: is a symbolic link, not a file",
            "rootfs": "the EIF's /rootfs is missing or not a folder"}[entry]
    assert "local enclave failed to boot" in e.err and want in e.err, e.err
    assert e.leftovers() == []


def test_app_runs_as_root_in_its_own_world(tmp_path):
    host_port = free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", host_port))
    srv.listen()
    e = Enclave(tmp_path, eu.MANIFEST, ["seq", "whoami", "vsock", "pids", f"tcp 127.0.0.1 {host_port}"])
    assert e.wait() == 0, e.err
    srv.close()
    assert "uid=0 gid=0" in e.out
    # AF_VSOCK is refused: vsock is not namespaced and would reach real peers
    assert "vsock socket: Address family not supported by protocol" in e.out
    # also with high bits set in the register, which the kernel ignores
    assert "vsock socket (high bits): Address family not supported by protocol" in e.out
    assert "vsock socketpair (high bits): Address family not supported by protocol" in e.out
    # the host's processes are invisible: PID 1, odyn, the probe and its child
    count = int(e.out.split("visible processes: ")[1].split()[0])
    assert 2 <= count <= 6, e.out
    # the host's loopback is not the enclave's: the listener above cannot be reached
    assert f"tcp 127.0.0.1:{host_port}: Connection refused" in e.out


def test_memory_limit_kills_and_is_reported(tmp_path):
    manifest = eu.MANIFEST.replace("memory_mb: 256", "memory_mb: 96")
    e = Enclave(tmp_path, manifest, ["alloc", "400"])
    code = e.wait()
    assert code == 107, (code, e.err)
    assert "ran out of memory" in e.err
    assert e.leftovers() == []


def test_filling_the_enclaves_memory_with_files_kills_the_writer_not_odyn(tmp_path):
    # The app writes into the enclave's tmpfs past memory_mb: the OOM killer takes the writer,
    # and odyn lives to report it (107, killed), not a failure of the enclave itself.
    manifest = eu.MANIFEST.replace("memory_mb: 256", "memory_mb: 96")
    e = Enclave(tmp_path, manifest, ["fill", "/tmp/big", "400"])
    code = e.wait()
    assert code == 107, (code, e.out, e.err)
    assert "Entrypoint terminated by SIGKILL" in e.out
    assert "enclave stopped due to signal 9 (SIGKILL)" in e.err
    assert "the enclave stopped before its app finished" not in e.err
    assert e.leftovers() == []


def test_early_logs_replayed_and_burst_does_not_block(tmp_path):
    e = Enclave(tmp_path, eu.MANIFEST, ["seq", "burst 1048576", "sleep 4"])
    eu.wait_vsock(e.proc.pid, 17001).close()
    time.sleep(1.5)  # the burst is long over: this client joins late
    sock = eu.vsock_socket(e.proc.pid, 17001)
    sock.settimeout(2)
    data = b""
    try:
        while b"burst done" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    sock.close()
    # the retained backlog: the newest 128 KiB, ending with the line after the burst
    assert b"burst done" in data
    assert 64 * 1024 < len(data) <= 128 * 1024 + 4096
    assert e.wait() == 0, e.err
    assert "burst done" in e.out


def test_ingress_gigabyte_each_way_with_half_close(tmp_path):
    port = free_port()
    manifest = eu.MANIFEST + f"ingress:\n  - listen_port: {port}\n"
    e = Enclave(tmp_path, manifest, ["echo", str(port)])
    wait_port(port)
    total = 1 << 30
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    sent, got = hashlib.sha256(), hashlib.sha256()
    s = socket.create_connection(("127.0.0.1", port))
    received = [0]

    def reader():
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got.update(chunk)
            received[0] += len(chunk)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(total // len(block)):
        b = block[i % 64:] + block[:i % 64]
        s.sendall(b)
        sent.update(b)
    s.shutdown(socket.SHUT_WR)  # half-close: the echo must still come back in full
    t.join(timeout=300)
    s.close()
    assert received[0] == total
    assert sent.hexdigest() == got.hexdigest()
    assert e.stop() == 109


def test_ingress_5000_concurrent_connections(tmp_path):
    port = free_port()
    manifest = eu.MANIFEST + f"ingress:\n  - listen_port: {port}\n"
    e = Enclave(tmp_path, manifest, ["echo", str(port)])
    wait_port(port)
    n = 5000
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"conn %05d\n" % i)
        socks.append(s)
    ok = 0
    for i, s in enumerate(socks):
        s.settimeout(30)
        want = b"conn %05d\n" % i
        data = b""
        while len(data) < len(want):
            chunk = s.recv(64)
            if not chunk:
                break
            data += chunk
        ok += data == want
    # all 5000 open and idle: each proxy holds its two sockets per connection and no pipes
    fds = {}
    for name, p in (("enclaver-run", e.proc.pid), ("odyn", eu.enclave_init_pid(eu.enclave_init_pid(e.proc.pid)))):
        fds[name] = len(os.listdir(f"/proc/{p}/fd"))
        pipes = sum(os.readlink(f"/proc/{p}/fd/{f}").startswith("pipe:") for f in os.listdir(f"/proc/{p}/fd"))
        assert pipes < 16, (name, pipes)
    for s in socks:
        s.close()
    assert ok == n
    assert all(2 * n <= v < 2 * n + 64 for v in fds.values()), fds
    assert e.stop() == 109


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"path={self.path} host={self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        out = b"got " + self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def test_egress_policy_and_tunnel(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    hport = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen()
    eport = echo.getsockname()[1]

    def echo_once():
        for _ in range(3):
            c, _ = echo.accept()
            c.sendall(b"echo:" + c.recv(100))
            c.close()

    threading.Thread(target=echo_once, daemon=True).start()
    closed = free_port()
    manifest = eu.MANIFEST + ("egress:\n  allow:\n    - 127.0.0.1\n    - host\n    - \"*.allowed.test\"\n"
                              "  deny:\n    - blocked.allowed.test\n")
    steps = [f"connect 127.0.0.1:{eport} ping", f"get http://127.0.0.1:{hport}/some/path?q=1",
             f"connect host:{eport} viahost", "get http://example.com/", "connect BLOCKED.allowed.test:443",
             "connect 2130706433:80", "connect 127.1:80", "connect 127.0.0.1.:80", f"connect 127.0.0.1:{closed} x",
             "connect 127.0.0.1"]
    e = Enclave(tmp_path, manifest, ["seq", *steps])
    assert e.wait() == 0, e.err
    httpd.shutdown()
    out = e.out.split("=== ")
    res = {s.split("\n", 1)[0]: s.split("\n", 1)[1] for s in out[1:]}
    assert res[steps[0]].startswith("HTTP/1.1 200 OK\r\n\r\necho:ping")
    assert "HTTP/1.0 200 OK" in res[steps[1]] and f"path=/some/path?q=1 host=127.0.0.1:{hport}" in res[steps[1]]
    assert "echo:viahost" in res[steps[2]]
    # odyn's own log lines share the stream with the app's output: look for the answers
    for s in steps[3:8]:
        assert "HTTP/1.1 401 Unauthorized\r\n" in res[s], (s, res[s])
        assert res[s].rstrip().endswith("blocked by egress security policy")
    assert "HTTP/1.1 503 Service Unavailable\r\n" in res[steps[8]], res[steps[8]]
    assert "Connection refused (os error 111)" in res[steps[8]]
    assert "HTTP/1.1 400 Bad Request\r\n" in res[steps[9]] and "missing a port" in res[steps[9]]


def test_root_can_chown_and_drop_to_a_user(tmp_path):
    # Vault's entrypoint chowns its files and drops to its own user: root inside must be able to
    e = Enclave(tmp_path, eu.MANIFEST, ["drop"])
    assert e.wait() == 0, e.out + e.err
    assert "as uid=100: wrote its own file" in e.out


def test_egress_post_body_and_names_resolved_on_the_host(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    manifest = eu.MANIFEST + "egress:\n  allow:\n    - localhost\n"
    # "localhost" is resolved on the host (c-ares reads /etc/hosts), never inside the enclave
    e = Enclave(tmp_path, manifest, ["post", f"http://localhost:{port}/submit", "payload-123"])
    assert e.wait() == 0, e.err
    httpd.shutdown()
    assert "HTTP/1.0 201" in e.out and "got payload-123" in e.out


def test_ingress_tls_termination(tmp_path):
    import ssl
    port = free_port()
    tlsdir = tmp_path / "tls"
    tlsdir.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tlsdir / "key.pem", "-out", tlsdir / "cert.pem", "-days", "2", "-subj",
                    "/CN=enclave.test"], check=True, capture_output=True)
    manifest = eu.MANIFEST + f"ingress:\n  - listen_port: {port}\n    tls:\n      key_file: k\n      cert_file: c\n"
    e = Enclave(tmp_path, manifest, ["echo", str(port)], extra_files={
        f"etc/enclaver/tls/server/{port}/cert.pem": (tlsdir / "cert.pem").read_bytes(),
        f"etc/enclaver/tls/server/{port}/key.pem": (tlsdir / "key.pem").read_bytes()})
    ctx = ssl.create_default_context(cafile=str(tlsdir / "cert.pem"))
    ctx.check_hostname = False
    deadline = time.time() + 15
    while True:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname="enclave.test")
            break
        except (OSError, ssl.SSLError):
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    assert s.getpeercert()["subject"] == ((("commonName", "enclave.test"),),)
    # one thread: an SSL object must not be read and written from two at once
    payload = os.urandom(300000)
    got = b""
    s.settimeout(30)
    for i in range(0, len(payload), 16384):
        block = payload[i:i + 16384]
        s.sendall(block)
        want = len(got) + len(block)
        while len(got) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    assert got == payload
    s.close()
    assert e.stop() == 109


def test_enclaver_run_command(tmp_path):
    eu.make_eif(tmp_path, eu.MANIFEST, ["exit", "4"])
    p = subprocess.run([str(BUILD / "enclaver"), "run", "--eif", str(tmp_path / "app.eif"), "-f",
                        str(tmp_path / "enclaver.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 4, p.stderr
    assert "probe exiting with 4" in p.stdout
    p = subprocess.run([str(BUILD / "enclaver"), "run", "--eif", str(tmp_path / "app.eif")], cwd="/",
                       capture_output=True, text=True)
    assert p.returncode == 1 and "enclaver.yaml" in p.stderr and "-f" in p.stderr


def enclaver(*args, **kw):
    return subprocess.run([str(BUILD / "enclaver"), *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


def ps(name, *flags):
    """This test's run in enclaver ps --json (others may be listed beside it), or None."""
    mine = [x for x in json.loads(enclaver("ps", "--json", *flags).stdout) if x["Name"] == name]
    return mine[0] if mine else None


def test_enclaver_run_detached_named_published_listed_logged_stopped_removed(tmp_path):
    port, other, h1, h2 = free_port(), free_port(), free_port(), free_port()
    manifest = eu.MANIFEST + f"ingress:\n  - listen_port: {port}\n  - listen_port: {other}\n"
    eu.make_eif(tmp_path, manifest, ["echo", str(port)])
    name = f"echo-{os.getpid()}"
    base = ["run", "--eif", tmp_path / "app.eif", "-f", tmp_path / "enclaver.yaml"]
    r = enclaver(*base, "--detach", "--name", name, "-p", f"{h1}:{port + 1 if port + 1 != other else port + 2}")
    assert r.returncode == 2 and "the manifest publishes no port" in r.stderr and ps(name, "-a") is None, r
    r = enclaver(*base, "--detach", "--name", "../x")
    assert r.returncode == 2 and "--name ../x: a name is 2 to 64 letters" in r.stderr
    # one port published twice, on loopback only; the manifest's other port stays on itself
    r = enclaver(*base, "--detach", "--name", name, "-p", f"127.0.0.1:{h1}:{port}", "-p", f"127.0.0.1:{h2}:{port}")
    try:
        assert r.returncode == 0 and r.stdout == f"{name}\n", r
        wait_port(h1)
        wait_port(h2)
        assert eu.listening(h1) == ["127.0.0.1"] and eu.listening(h2) == ["127.0.0.1"]
        assert eu.listening(other) == ["0.0.0.0"] and eu.listening(port) == []
        me = ps(name)
        assert me["Kind"] == "eif" and me["State"] == "running" and me["From"] == str(tmp_path / "app.eif"), me
        assert me["Ports"] == f"127.0.0.1:{h1}->{port}/tcp, 127.0.0.1:{h2}->{port}/tcp, 0.0.0.0:{other}->{other}/tcp"
        deadline = time.time() + 30
        while f"echo listening on {port}" not in (r := enclaver("logs", name)).stdout and time.time() < deadline:
            time.sleep(0.2)
        assert r.returncode == 0 and "LOCAL ENCLAVE" in r.stdout and f"echo listening on {port}" in r.stdout, r
        r = enclaver(*base, "--detach", "--name", name)
        assert r.returncode == 1 and f"the name {name} is in use by a running enclave" in r.stderr, r
        r = enclaver("rm", name)
        assert r.returncode == 1 and f"{name} is running: stop it with 'enclaver stop {name}'" in r.stderr
        # logs -f follows until the run ends; stop ends it as Ctrl-C would
        follow = subprocess.Popen([str(BUILD / "enclaver"), "logs", "-f", name], stdout=subprocess.PIPE, text=True)
        r = enclaver("stop", name)
        assert r.returncode == 0 and r.stdout == f"{name}\n", r
        out, _ = follow.communicate(timeout=30)
        assert follow.returncode == 0 and "stopping the enclave" in out and f"echo listening on {port}" in out
        assert ps(name) is None
        me = ps(name, "-a")
        assert me["State"] == "exited" and me["ExitCode"] == 109, me
        assert eu.listening(h1) == [] and eu.listening(other) == []
        assert enclaver("logs", name).returncode == 0  # kept until rm
        r = enclaver("rm", name)
        assert r.returncode == 0 and r.stdout == f"{name}\n" and ps(name, "-a") is None
        r = enclaver("stop", name)
        assert r.returncode == 1 and f"no enclave named {name}" in r.stderr
    finally:
        enclaver("rm", "-f", name)


def test_enclaver_run_in_the_foreground_is_named_stoppable_and_says_how_it_ended(tmp_path):
    eu.make_eif(tmp_path, eu.MANIFEST, ["exit", "4"])
    base = ["run", "--eif", tmp_path / "app.eif", "-f", tmp_path / "enclaver.yaml"]
    r = enclaver(*base, "--json")
    assert r.returncode == 4 and "probe exiting with 4" in r.stderr, r
    status = json.loads(r.stdout.splitlines()[-1])
    assert status["ExitCode"] == 4 and status["Status"] == "exited" and status["Name"].startswith("enclaver-")
    assert ps(status["Name"], "-a") is None  # a foreground run is gone once it ended
    # another process stops a foreground run by its name
    eu.make_eif(tmp_path, eu.MANIFEST, ["sleep", "600"])
    name = f"sleeper-{os.getpid()}"
    p = subprocess.Popen([str(BUILD / "enclaver"), *map(str, base), "--name", name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not (ps(name) or {}).get("Status", "").endswith("(foreground)"):
            assert time.time() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.2)
        r = enclaver("logs", name)
        assert r.returncode == 1 and "runs in the foreground: its output goes to the terminal" in r.stderr
        eu.wait_app_step(p.pid, "sleep")
        assert enclaver("stop", name).returncode == 0
        assert p.wait(timeout=60) == 109
        assert ps(name, "-a") is None
    finally:
        if p.poll() is None:
            p.kill()


def test_file_capabilities_work_inside(tmp_path):
    # Vault's entrypoint: setcap cap_ipc_lock=+ep on its binary, then runs it as its own user
    e = Enclave(tmp_path, eu.MANIFEST, ["setcap"])
    assert e.wait() == 0, e.out + e.err
    capeff = int(e.out.split("uid=100 CapEff:")[1].split()[0], 16)
    assert capeff == 1 << 14  # exactly CAP_IPC_LOCK


def test_limits_and_subcommands(tmp_path):
    manifest = eu.MANIFEST.replace("cpu_count: 1", "cpu_count: 3")
    e = Enclave(tmp_path, manifest, ["sleep", "600"], extra_args=["--memory-mb", "200"])
    e.booted()
    tag = eu.state_dir(e.proc.pid).name
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    if v2:
        cpu = open(f"/sys/fs/cgroup/{tag}/cpu.max").read().split()
        mem = int(open(f"/sys/fs/cgroup/{tag}/memory.max").read())
        assert cpu == ["300000", "100000"]
    else:
        quota = int(open(f"/sys/fs/cgroup/cpu/{tag}/cpu.cfs_quota_us").read())
        mem = int(open(f"/sys/fs/cgroup/memory/{tag}/memory.limit_in_bytes").read())
        assert quota == 300000  # cpu_count from the manifest, 3 CPUs' worth of time
    assert mem == 200 << 20  # --memory-mb overrides the manifest
    assert e.stop() == 109
    r = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(tmp_path / "app.eif"), "--manifest-file",
                        str(tmp_path / "enclaver.yaml"), "print-manifest"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == manifest
    r = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(tmp_path / "app.eif"), "--manifest-file",
                        str(tmp_path / "enclaver.yaml"), "describe-eif"], capture_output=True, text=True)
    d = subprocess.run([str(BUILD / "enclaver"), "eif", "describe", "--json", str(tmp_path / "app.eif")],
                       capture_output=True, text=True)
    import json
    m = json.loads(d.stdout)["Measurements"]
    assert json.loads(r.stdout) == {"Measurements": m}
    r = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(tmp_path / "missing.eif"), "--manifest-file",
                        str(tmp_path / "enclaver.yaml")], capture_output=True, text=True)
    assert r.returncode == 1 and "failed to open EIF file at" in r.stderr
    r = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(tmp_path / "app.eif"), "--manifest-file",
                        str(tmp_path / "enclaver.yaml"), "--cpu-count", "0"], capture_output=True, text=True)
    assert r.returncode == 1 and "at least 1 CPU is required, got: 0" in r.stderr
    assert e.leftovers() == []
