"""VM enclaves: the EIF's own kernel (the default boot kit's Debian kernel, its modules loaded by
enclaver-init) boots in QEMU under software emulation, and the guest's vsock reaches the host
through our vhost-user back-end. Every test here boots a real kernel."""
import base64
import glob
import json
import os
import signal
import socket
import subprocess
import threading
import time

from conftest import BUILD, run
import enclave_util as eu
from test_kms_local import KmsLocal
from test_kms_proxy import MANIFEST as KMS_MANIFEST, answers, pcr0, policy_for
from test_attest import api_doc

INGRESS = 5000


class VM:
    def __init__(self, d, manifest, app, extra_args=(), cli=False, env=None, eif=None, **kw):
        if "env_items" in kw:
            kw["env"] = kw.pop("env_items")
        self.eif = eif or eu.make_eif(d, manifest, app, kit=kw.pop("kit", True), **kw)
        self.d = d
        if cli:  # as a user starts one
            argv = [str(BUILD / "enclaver"), "run", "--eif", str(self.eif), "-f", str(d / "enclaver.yaml"), "--vm"]
        else:
            argv = [str(BUILD / "enclaver-run"), "--launcher", "vm", "--eif-file", str(self.eif),
                    "--manifest-file", str(d / "enclaver.yaml")]
        self.proc = subprocess.Popen([*argv, "--cpu-count", "1", *extra_args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait(self, timeout=120):
        out, err = self.proc.communicate(timeout=timeout)
        self.out, self.err = out.decode(errors="replace"), err.decode(errors="replace")
        return self.proc.returncode

    def tag(self):
        for owner in glob.glob("/tmp/enclaver-*/owner"):
            try:
                if int(open(owner).read()) == self.proc.pid:
                    return os.path.basename(os.path.dirname(owner))
            except (OSError, ValueError):
                pass
        return None

    def __del__(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def processes_of(tag):
    """This VM's processes (QEMU and the back-end name its state folder on their command line)."""
    found = []
    for c in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if tag.encode() in open(c, "rb").read():
                found.append(c)
        except OSError:
            pass
    return found


def wait_until(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def kit_release():
    return (eu.KIT / "release").read_text().strip()


def test_the_guest_kernel_runs_the_app_with_ingress_egress_and_stop(tmp_path):
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen()
    eport = echo.getsockname()[1]

    def serve():
        c, _ = echo.accept()
        c.sendall(b"echo:" + c.recv(100))
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    hport = eu.free_port()
    manifest = (eu.MANIFEST + f"ingress:\n  - listen_port: {INGRESS}\n"
                "egress:\n  allow:\n    - host\n")
    steps = ["uname", f"connect host:{eport} viahost", f"connect 10.1.2.3:{eport} x", f"echo {INGRESS}"]
    vm = VM(tmp_path, manifest, ["seq", *steps], ["-p", f"{hport}:{INGRESS}"])
    # ingress: the app's echo server through the host port, vsock and odyn
    deadline = time.time() + 60
    answer = b""
    while time.time() < deadline and not answer:
        assert vm.proc.poll() is None, vm.wait()
        try:
            with socket.create_connection(("127.0.0.1", hport), timeout=5) as s:
                s.sendall(b"through the VM\n")
                s.shutdown(socket.SHUT_WR)
                answer = s.recv(100)
        except OSError:
            time.sleep(0.2)
    tag = vm.tag()
    assert answer.startswith(b"through the VM"), answer
    assert vm.proc.send_signal(signal.SIGTERM) is None
    assert vm.wait() == 109, vm.err
    res = {s.split("\n", 1)[0]: s.split("\n", 1)[1] for s in vm.out.split("=== ")[1:]}
    # the guest's own kernel, not this machine's
    assert f"uname {kit_release()}" in res["uname"], vm.out
    assert kit_release() != os.uname().release
    # egress: allowed through the host, refused by the policy
    assert "echo:viahost" in res[steps[1]], vm.out
    assert "HTTP/1.1 401 Unauthorized\r\n" in res[steps[2]], vm.out
    assert "VM ENCLAVE" in vm.err
    # nothing left: no QEMU, no back-end, no folder
    assert tag and wait_until(lambda: not processes_of(tag), 5), processes_of(tag)
    assert not os.path.exists(f"/tmp/{tag}")


def test_exit_codes_and_the_nsm(tmp_path):
    (tmp_path / "a").mkdir()
    vm = VM(tmp_path / "a", eu.MANIFEST, ["exit", "3"], cli=True)
    assert vm.wait() == 3, vm.err
    assert "probe exiting with 3" in vm.out
    # odyn's entropy came from the host's NSM emulator, over the guest's vsock
    assert "odyn: info: Seeding /dev/random with entropy from nsm device" in vm.out
    (tmp_path / "b").mkdir()
    vm = VM(tmp_path / "b", eu.MANIFEST, ["signal", "9"])
    assert vm.wait() == 107, vm.err
    assert "enclave stopped due to signal 9 (SIGKILL)" in vm.err


def test_a_kernel_that_does_not_boot(tmp_path):
    bad = tmp_path / "bad-kernel"
    bad.write_bytes(b"MZ" + os.urandom(1 << 20))
    vm = VM(tmp_path, eu.MANIFEST, ["exit", "0"], kit=False, kernel=bad)
    t0 = time.time()
    assert vm.wait() == 110, vm.err
    assert time.time() - t0 < 30
    errors = [l for l in vm.err.splitlines() if "error:" in l]
    assert errors == ["enclaver-run: error: the enclave did not boot: QEMU exited with 1 (its console is above)"], vm.err
    # QEMU's own word on it is in the tail
    assert "qemu: linux kernel too old to load a ram disk" in vm.err.split("the end of the enclave's console:", 1)[1]
    assert not glob.glob(f"/tmp/enclaver-*/owner") or all(
        int(open(o).read()) != vm.proc.pid for o in glob.glob("/tmp/enclaver-*/owner"))


def test_killed_enclaver_run_leaves_nothing_running(tmp_path):
    (tmp_path / "a").mkdir()
    vm = VM(tmp_path / "a", eu.MANIFEST, ["sleep", "60"])
    assert wait_until(vm.tag, 30)
    tag = vm.tag()
    assert tag and wait_until(lambda: len(processes_of(tag)) >= 2, 30)
    vm.proc.kill()
    vm.proc.wait()
    # QEMU and the back-end die with it
    assert wait_until(lambda: not processes_of(tag), 10), processes_of(tag)
    # its folder goes with the next run
    (tmp_path / "b").mkdir()
    nxt = VM(tmp_path / "b", eu.MANIFEST, ["exit", "0"])
    assert nxt.wait() == 0, nxt.err
    assert not os.path.exists(f"/tmp/{tag}")


def test_attestation_and_a_pcr0_bound_decrypt_in_the_vm(tmp_path):
    """odyn in the guest: its API's attestation document verifies against the EIF with its nonce,
    and the KMS proxy's Decrypt succeeds under a key policy bound to this image's PCR0 only."""
    kms = KmsLocal(tmp_path / "state")
    try:
        key = kms.aws("create-key")["KeyMetadata"]["KeyId"]
        (tmp_path / "secret").write_bytes(b"unsealed in the VM")
        ct = kms.aws("encrypt", "--key-id", key, "--plaintext", f"fileb://{tmp_path}/secret")["CiphertextBlob"]
        nonce = os.urandom(16)
        api = json.dumps({"nonce": base64.b64encode(nonce).decode()}, separators=(",", ":"))
        body = json.dumps({"CiphertextBlob": ct}, separators=(",", ":"))
        manifest = KMS_MANIFEST + "api:\n  listen_port: 9444\n"
        steps = [f"api 9444 POST /v1/attestation {api}", f"kms 1 0 TrentService.Decrypt {body}"]
        good, other = tmp_path / "good", tmp_path / "other"
        good.mkdir()
        other.mkdir()
        eif = eu.make_eif(good, manifest, ["seq", *steps], kit=True)
        (tmp_path / "policy.json").write_text(policy_for(pcr0(eif)))
        kms.aws("put-key-policy", "--key-id", key, "--policy-name", "default", "--policy",
                f"file://{tmp_path}/policy.json")
        vm = VM(good, manifest, ["seq", *steps], env=kms.env)
        assert vm.wait() == 0, vm.out + vm.err
        got = answers(vm.out)
        assert len(got) == 1 and base64.b64decode(got[0]["Plaintext"]) == b"unsealed in the VM", vm.out
        _, doc = api_doc(vm.out.split("api-end")[0])
        (tmp_path / "doc.cose").write_bytes(doc)
        r = run("attest", "verify-eif", vm.eif, tmp_path / "doc.cose", "--root",
                tmp_path / "state" / "dev-ca" / "root.pem", "--nonce", nonce.hex())
        assert r.code == 0, r
        # another image: another PCR0, refused by the key policy
        vm = VM(other, manifest, ["seq", *steps], env=kms.env, env_items=("PATH=/bin:/sbin", "X=1"))
        assert vm.wait() == 0, vm.err
        assert answers(vm.out)[0]["__type"] == "AccessDeniedException", vm.out
    finally:
        kms.stop()


def kit_image(path):
    """AWS's blobs layout in an image, holding the default kit's kernel and modules and the plain
    build's static enclaver-init (a sanitized build's own would not run as a real PID 1)."""
    import test_build  # noqa: F401 (it puts scripts/ on the path)
    import mkimage
    from mkimage import layer

    kit = "usr/share/nitro_enclaves/blobs/x86_64/"
    entries = [(d, "d", b"", 0o755) for d in ["usr", "usr/share", "usr/share/nitro_enclaves",
                                               "usr/share/nitro_enclaves/blobs", kit.rstrip("/"), kit + "modules"]]
    entries += [(kit + "bzImage", "f", (eu.KIT / "bzImage").read_bytes(), 0o644),
                (kit + "init", "f", eu._static("enclaver-init").read_bytes(), 0o755),
                (kit + "cmdline", "f", eu.KIT_CMDLINE.encode() + b"\n", 0o644),
                (kit + "unrelated", "f", b"not taken", 0o644)]
    entries += [(kit + "modules/net", "d", b"", 0o755)]
    entries += [(kit + "modules/" + str(m.relative_to(eu.KIT / "modules")), "f", m.read_bytes(), 0o644)
                for m in sorted((eu.KIT / "modules").rglob("*.ko"))]
    mkimage.docker_archive(path, [layer(entries)], {"architecture": "amd64", "os": "linux", "config": {}})


def test_a_boot_kit_read_from_an_image(tmp_path):
    """--bootkit IMAGE: AWS's blobs layout in an image (here the default kit's kernel, modules and
    enclaver-init), recorded with its digest, and the EIF it builds boots."""
    from test_build import app_layers, docker_archive, static_odyn, write_manifest

    kit_image(tmp_path / "kit.tar")
    docker_archive(tmp_path / "app.tar", app_layers())
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / "app.eif", "--bootkit",
            f"docker-archive:{tmp_path}/kit.tar", "--odyn", static_odyn(), "--json")
    assert r.code == 0, r
    summary = json.loads(r.out)
    assert summary["Sources"]["BootKit"]["ID"].startswith("sha256:"), summary
    assert f"boot kit: image docker-archive:{tmp_path}/kit.tar (sha256:" in r.err
    assert "is not known to boot on Nitro" in r.err  # no nsm.ko: not AWS's kit
    vm = VM(tmp_path, None, None, eif=tmp_path / "app.eif")
    assert vm.wait() == 7, vm.err  # the image's CMD: exit 7
    # an image without a kit: one line that says what is missing
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / "none.eif", "--bootkit",
            f"docker-archive:{tmp_path}/app.tar", "--odyn", static_odyn())
    assert r.code == 1 and "has no /usr/share/nitro_enclaves/blobs/x86_64/bzImage" in r.err, r
    assert not (tmp_path / "none.eif").exists()


def test_the_default_boot_kit_is_what_the_vm_tests_boot(tmp_path):
    """enclaver build with no kit named: Debian's kernel from the default kit, its boot modules in
    the bootstrap ramdisk, and the cmdline the VM tests' EIFs carry (eu.KIT_CMDLINE), which makes
    the distribution kernel behave as AWS's enclave kernel is built."""
    from test_build import app_layers, docker_archive, static_odyn, write_manifest

    if os.path.exists("/usr/share/nitro_enclaves/blobs/bzImage"):
        import pytest
        pytest.skip("AWS's blobs are installed: enclaver build takes them before the default kit")
    docker_archive(tmp_path / "app.tar", app_layers())
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    env = {k: v for k, v in os.environ.items() if k != "ENCLAVER_KERNEL"}
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / "app.eif", "--odyn", static_odyn(),
            env=env)
    assert r.code == 0, r
    assert f"boot kit: kernel {eu.KIT}/bzImage with enclaver-init and its boot modules" in r.err, r.err
    assert "is not known to boot on Nitro" in r.err
    r = run("eif", "extract", tmp_path / "app.eif", "--cmdline", "-o", tmp_path / "cmdline")
    assert r.code == 0, r
    assert (tmp_path / "cmdline").read_text() == eu.KIT_CMDLINE
    r = run("eif", "extract", tmp_path / "app.eif", "--ramdisk", "0", "-o", tmp_path / "bootstrap.cpio")
    assert r.code == 0, r
    bootstrap = (tmp_path / "bootstrap.cpio").read_bytes()
    # the boot modules, and in net/ those transparent egress loads when it is on
    mods = sorted((eu.KIT / "modules").rglob("*.ko"))
    assert any(m.parent.name == "net" for m in mods) and any(m.parent.name == "modules" for m in mods)
    for m in mods:
        name = m.relative_to(eu.KIT / "modules")
        assert f"enclaver-modules/{name}\0".encode() in bootstrap and m.read_bytes() in bootstrap, name


def test_what_a_vm_enclave_needs_is_said_before_it_starts(tmp_path):
    # no QEMU: one line that says what to install; nothing started, nothing left
    (tmp_path / "a").mkdir()
    vm = VM(tmp_path / "a", eu.MANIFEST, ["exit", "0"], env=dict(os.environ, ENCLAVER_QEMU="/nonexistent/qemu"))
    assert vm.wait() == 1
    errors = [l for l in vm.err.splitlines() if "error:" in l]
    assert errors == ["enclaver-run: error: /nonexistent/qemu is not installed: apt-get install qemu-system-x86 "
                      "(scripts/install-deps.sh does)"], vm.err
    # too little memory for the EIF: nitro-cli's rule, before anything boots
    (tmp_path / "b").mkdir()
    vm = VM(tmp_path / "b", eu.MANIFEST, ["exit", "0"], extra_args=["--memory-mb", "64"])
    assert vm.wait() == 1
    assert "MB must be allocated (which is 4 times the EIF file size); raise memory_mb" in vm.err, vm.err
    assert vm.tag() is None


def test_a_release_image_in_a_vm_enclave(tmp_path):
    """enclaver run IMAGE --vm: the release image's EIF and manifest, taken out of the image,
    boot on this machine (the default boot kit's kernel); nothing of them is left."""
    from test_build import app_layers, docker_archive, static_enclaver_run, static_odyn, write_manifest

    docker_archive(tmp_path / "app.tar", app_layers())
    kit_image(tmp_path / "kit.tar")
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--output", f"docker-archive:{tmp_path}/release.tar",
            "--odyn", static_odyn(), "--enclaver-run", static_enclaver_run(), "--bootkit",
            f"docker-archive:{tmp_path}/kit.tar")
    assert r.code == 0, r
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = subprocess.run([str(BUILD / "enclaver"), "run", f"docker-archive:{tmp_path}/release.tar", "--vm"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, TMPDIR=str(tmp)))
    assert p.returncode == 7, p.stderr  # the app image's CMD: exit 7
    assert "its EIF boots in a VM enclave on this machine" in p.stderr and "VM ENCLAVE" in p.stderr
    assert os.listdir(tmp) == []
    # not a release image: said in one line
    p = subprocess.run([str(BUILD / "enclaver"), "run", f"docker-archive:{tmp_path}/app.tar", "--vm"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, TMPDIR=str(tmp)))
    assert p.returncode == 1 and "is not a release image (no /enclave/application.eif" in p.stderr, p.stderr
    assert os.listdir(tmp) == []


def test_a_boot_that_dies_is_reported_with_the_console_tail(tmp_path):
    """The kit's kernel without its modules: no vsock, so init cannot send its heartbeat and dies;
    the kernel panics, and the launcher says so at once, with the end of the console."""
    vm = VM(tmp_path, eu.MANIFEST, ["exit", "0"], kit=False, kernel=eu.KIT / "bzImage")
    t0 = time.time()
    assert vm.wait() == 110, vm.err
    assert time.time() - t0 < 20  # not the 60 s bound, nor the kernel's panic=30
    tail, error = vm.err.split("enclaver-run: the end of the enclave's console:\n", 1)[1].split("enclaver-run: error: ")
    assert error.startswith("the enclave did not boot: its kernel panicked (its console is above)"), vm.err
    # what init said before it died, and the kernel's verdict
    assert "enclaver-init: vsock socket: Address family not supported by protocol" in tail, tail
    assert "Kernel panic - not syncing: Attempted to kill init!" in tail, tail
    assert vm.tag() is None


def test_an_image_runs_in_the_vm_as_docker_run_runs_it(tmp_path):
    """The real kernel and init with an image's USER, WORKDIR, file capabilities, owners above
    65535 and hard links: what the local enclave shows, the VM shows too."""
    from test_build import static_odyn
    from test_image_fidelity import NET_BIND_EP, PASSWD, GROUP, image, layer, write_manifest

    xattr = {"pax": {"SCHILY.xattr.security.capability": NET_BIND_EP.decode("utf-8", "surrogateescape")}}
    probe = eu._probe().read_bytes()
    image(tmp_path / "app.tar", [layer([
        ("bin", "d", b"", 0o755), ("bin/bound", "f", probe, 0o755, xattr), ("tmp", "d", b"", 0o1777),
        ("etc", "d", b"", 0o755), ("etc/passwd", "f", PASSWD, 0o644), ("etc/group", "f", GROUP, 0o644),
        ("work", "d", b"", 0o750, {"uid": 1000, "gid": 1000}),
        ("work/data.txt", "f", b"read by a relative path\n", 0o640, {"uid": 1000, "gid": 1000}),
        ("work/same.txt", "h", "work/data.txt", 0o640, {"uid": 1000, "gid": 1000}),
        ("work/high", "f", b"h", 0o644, {"uid": 2**32 - 2, "gid": 70000})])],
        Entrypoint=["/bin/bound"], Cmd=["seq", "id", "cat data.txt", "bind 80", "write /tmp/x", "walk /work"],
        User="app", WorkingDir="/work")
    kit_image(tmp_path / "kit.tar")
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / "app.eif", "--bootkit",
            f"docker-archive:{tmp_path}/kit.tar", "--odyn", static_odyn())
    assert r.code == 0, r
    vm = VM(tmp_path, None, None, eif=tmp_path / "app.eif")
    assert vm.wait() == 0, vm.err
    out = vm.out
    assert "uid=1000 gid=1000 groups=1000,2000,4000 cwd=/work home=/home/app\n" in out, out
    assert "read by a relative path\n" in out and "bind 80: ok\n" in out and "write /tmp/x: ok\n" in out, out
    rows = {f[0]: f for f in (line.split("\t") for line in out.splitlines() if line.startswith("/work/"))}
    assert rows["/work/data.txt"][1:] == rows["/work/same.txt"][1:] and rows["/work/data.txt"][6] == "2", rows
    assert rows["/work/high"][3:5] == [str(2**32 - 2), "70000"], rows


def test_transparent_egress_in_the_vm_loads_its_modules_and_holds(tmp_path):
    """The guest kernel's own netfilter: the kit's net/ modules are loaded by odyn only when
    transparent egress is on, and then names resolve inside, allowed hosts are reached with no
    proxy, the rest fails at once, and the app cannot undo it."""
    from test_transparent_egress import MANIFEST as T_MANIFEST, HOSTS, EchoServer, results

    echo = EchoServer()
    steps = ["cat /etc/resolv.conf", "dns 203.0.113.9 echo.egress.test 1", "dns 127.0.0.1 no.egress.test 1",
             f"nsend echo.egress.test {echo.port} by-name", f"tsend 192.0.2.10 {echo.port} by-address",
             f"tsend 192.0.2.11 {echo.port} denied", "udp 192.0.2.10 9999", "unrule", "vsock"]
    vm = VM(tmp_path, T_MANIFEST, ["seq", *steps], extra_args=HOSTS)
    assert vm.wait(180) == 0, vm.out + vm.err
    echo.close()
    r = results(vm.out)
    assert "Transparent egress on" in vm.out
    assert "nameserver 127.0.0.1" in r[steps[0]]
    assert "rcode 0 answers 1 198.18.0.1" in r[steps[1]] and "rcode 3 answers 0" in r[steps[2]]
    assert "echo:by-name" in r[steps[3]] and "echo:by-address" in r[steps[4]]
    assert "Connection reset by peer" in r[steps[5]]
    assert "Operation not permitted" in r[steps[6]]
    assert "unrule raw socket: Operation not permitted" in r["unrule"]
    assert "unrule delete route: Operation not permitted" in r["unrule"]
    assert "vsock socket: Address family not supported by protocol" in r["vsock"]


def test_without_egress_the_vm_loads_no_netfilter(tmp_path):
    """An enclave that does not use transparent egress does not pay for its modules."""
    vm = VM(tmp_path, eu.MANIFEST, ["seq", "cat /proc/modules"])
    assert vm.wait(120) == 0, vm.out + vm.err
    assert "vmw_vsock_virtio_transport" in vm.out
    assert "nf_conntrack" not in vm.out and "ip_tables" not in vm.out


def test_a_kernel_without_netfilter_says_which_module_is_missing(tmp_path):
    """A kit without the net/ modules: transparent egress cannot be set up. Asked for, that is a
    fatal status and the app never starts; by default one warning line names the missing module
    and the enclave has the proxy only."""
    import shutil
    from test_transparent_egress import MANIFEST as T_MANIFEST

    kit = tmp_path / "kit"
    (kit / "modules").mkdir(parents=True)
    shutil.copy(eu.KIT / "bzImage", kit / "bzImage")
    for m in (eu.KIT / "modules").glob("*.ko"):
        shutil.copy(m, kit / "modules" / m.name)
    saved, eu.KIT = eu.KIT, kit
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        vm = VM(tmp_path / "a", T_MANIFEST + "  transparent: true\n", ["exit", "0"])
        assert vm.wait(120) == 108, vm.out + vm.err
        assert ("Fatal error: transparent egress (egress.transparent is true): the kernel has no legacy iptables "
                "table nat (module iptable_nat missing)") in vm.out, vm.out
        assert "Starting [" not in vm.out
        vm = VM(tmp_path / "b", T_MANIFEST, ["exit", "0"])
        assert vm.wait(120) == 0, vm.out + vm.err
        warnings = [l for l in vm.out.splitlines() if "transparent egress is off" in l]
        assert warnings == ["odyn: warning: transparent egress is off, apps reach the outside through the proxy only: "
                            "the kernel has no legacy iptables table nat (module iptable_nat missing)"], vm.out
    finally:
        eu.KIT = saved
