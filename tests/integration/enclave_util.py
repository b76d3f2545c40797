"""Builds small EIFs for local-enclave tests: a root file system holding odyn, the probe test
program and a manifest, packed as nitro-cli packs a customer ramdisk."""
import os
import pathlib
import re
import shutil
import socket
import stat
import subprocess
import time

from conftest import BUILD, ROOT, run
import nitro_ref as ref


def _add_tree(cpio, src, prefix):
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        name = prefix if rel == "." else f"{prefix}/{rel}"
        st = os.lstat(dirpath)
        cpio.add(name, stat.S_IMODE(st.st_mode), 0o04, mtime=ref.LINUXKIT_MTIME)
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                cpio.add(f"{name}/{f}", 0o777, 0o12, os.readlink(p).encode(), mtime=ref.LINUXKIT_MTIME)
            else:
                cpio.add(f"{name}/{f}", stat.S_IMODE(st.st_mode), 0o10, pathlib.Path(p).read_bytes(),
                         mtime=ref.LINUXKIT_MTIME)


def _probe():
    # the probe is static and never sanitized: a sanitized build borrows the plain build's
    for b in (BUILD, ROOT / "build"):
        if (b / "tests" / "probe").exists():
            return b / "tests" / "probe"
    raise FileNotFoundError("tests/probe: build the plain build first")


def _copy_shared_libs(binary, root):
    """A sanitized odyn is dynamically linked: give the enclave the libraries it loads."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    for path in re.findall(r"(/\S+\.so[.\d]*)", out):
        dst = root / path.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dst)


KIT = pathlib.Path("/usr/local/share/enclaver/bootkit/x86_64")
# The cmdline `enclaver build` gives an EIF with the default boot kit (src/cmd/build.c); a test of
# the VM enclave checks that the two agree.
KIT_CMDLINE = ("reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp "
               "i8042.dumbkbd random.trust_cpu=on cryptomgr.notests nokaslr no5lvl init_on_alloc=0 "
               "hardened_usercopy=off")


def _static(name):
    """A real kernel runs what the EIF holds and nothing of this machine: a sanitized build's
    odyn and enclaver-init are dynamic, so a VM's EIF takes the plain build's static ones."""
    for b in (BUILD, ROOT / "build"):
        out = subprocess.run(["file", "-L", str(b / name)], capture_output=True, text=True).stdout
        if "static" in out:
            return b / name
    raise FileNotFoundError(f"{name}: a VM enclave needs the plain build's static one: build it first")


def make_eif(d, manifest, app, env=("PATH=/bin:/sbin",), extra_files=None, odyn_args=(), links=None, kit=False,
             kernel=None):
    """An EIF whose /cmd runs odyn with `app` (probe arguments, or an absolute argv). links:
    {"env" | "cmd" | "rootfs": target} makes that entry a symbolic link instead (a crafted EIF).
    kit: booted by a real kernel, the default boot kit's, with its modules (a VM enclave's EIF);
    kernel: that file as the kernel instead."""
    links = links or {}
    d = pathlib.Path(d)
    root = d / "rootfs"
    for sub in ["sbin", "bin", "etc/enclaver", "dev", "run", "sys", "var", "proc", "tmp"]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    odyn = _static("odyn") if kit else BUILD / "odyn"
    (root / "sbin" / "odyn").write_bytes(odyn.read_bytes())
    (root / "sbin" / "odyn").chmod(0o755)
    _copy_shared_libs(odyn, root)
    (root / "bin" / "probe").write_bytes(_probe().read_bytes())
    (root / "bin" / "probe").chmod(0o755)
    (root / "etc" / "enclaver" / "enclaver.yaml").write_text(manifest)
    for rel, data in (extra_files or {}).items():  # data, or (data, mode)
        data, mode = data if isinstance(data, tuple) else (data, 0o644)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        (root / rel).chmod(mode)
    argv = list(app) if app and app[0].startswith("/") else ["/bin/probe", *app]
    cmd = ["/sbin/odyn", *odyn_args, "--config-dir", "/etc/enclaver", "--", *argv]
    c = ref.Cpio()
    if "rootfs" in links:
        c.add("rootfs", 0o777, 0o12, links["rootfs"].encode(), mtime=ref.LINUXKIT_MTIME)
    else:
        _add_tree(c, root, "rootfs")
    for name, lines in (("cmd", cmd), ("env", env)):
        if name in links:
            c.add(name, 0o777, 0o12, links[name].encode(), mtime=ref.LINUXKIT_MTIME)
        else:
            c.add(name, 0o644, 0o10, "".join(a + "\n" for a in lines).encode(), mtime=ref.LINUXKIT_MTIME)
    (d / "customer.cpio").write_bytes(c.close())
    r = run("eif", "bootstrap", "--init", _static("enclaver-init") if kit or kernel else BUILD / "enclaver-init",
            *(["--modules", KIT / "modules"] if kit else []),
            "-o", d / "bootstrap.cpio")
    assert r.code == 0, r
    if kit:
        assert (KIT / "bzImage").exists(), f"no boot kit at {KIT}: run scripts/install-deps.sh"
        (d / "kernel").write_bytes((KIT / "bzImage").read_bytes())
    elif kernel:
        (d / "kernel").write_bytes(pathlib.Path(kernel).read_bytes())
    else:
        (d / "kernel").write_bytes(b"not a kernel: the local launcher boots none")
    r = run("eif", "build", "--kernel", d / "kernel", "--cmdline", KIT_CMDLINE if kit else "console=ttyS0", "--ramdisk",
            d / "bootstrap.cpio", "--ramdisk", d / "customer.cpio", "-o", d / "app.eif")
    assert r.code == 0, r
    (d / "enclaver.yaml").write_text(manifest)
    return d / "app.eif"


MANIFEST = """version: v1
name: test
target: test:enclave
sources:
  app: test:latest
defaults:
  memory_mb: 256
  cpu_count: 1
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(port):
    """The IPv4 addresses this network namespace listens on at TCP port, as "a.b.c.d"."""
    found = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:
            found.append(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def wait_echo(port, timeout=20):
    """Waits until something on 127.0.0.1:port echoes a byte back."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"x")
            s.shutdown(socket.SHUT_WR)
            if s.recv(1) == b"x":
                s.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nothing echoes on 127.0.0.1:{port}")


# --- a test's own local enclave, found from its enclaver-run's pid (never by looking at the
# whole machine, so that the suite passes while other enclaves run) ---

import ctypes
import glob

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def state_dir(run_pid):
    """The state folder of the local enclave that enclaver-run `run_pid` launched, or None."""
    for owner in glob.glob("/tmp/enclaver-*/owner"):
        try:
            if int(pathlib.Path(owner).read_text()) == run_pid:
                return pathlib.Path(owner).parent
        except (OSError, ValueError):
            pass
    return None


def enclave_init_pid(run_pid):
    """PID 1 of the enclave: enclaver-run's child."""
    try:
        kids = pathlib.Path(f"/proc/{run_pid}/task/{run_pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def wait_app_step(run_pid, word, timeout=30):
    """Until the app (odyn's child) or the step it runs (its child, for the probe's seq) runs
    with arguments that start with `word`: the enclave's processes, found from enclaver-run's pid."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = enclave_init_pid(run_pid)
        for _ in range(4):  # init, odyn, the app, the app's step
            if pid is None:
                break
            try:
                args = pathlib.Path(f"/proc/{pid}/cmdline").read_text().split("\0")[1:-1]
                if args[:len(word.split())] == word.split():
                    return
            except OSError:
                break
            pid = enclave_init_pid(pid)
        time.sleep(0.05)
    raise AssertionError(f"the enclave of enclaver-run {run_pid} never ran {word!r}")


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def vsock_socket(run_pid, port, cid=16):
    """A connected socket to the enclave's vsock port, as enclaver-run makes one: inside the
    enclave's network namespace, to the abstract name the emulated transport gives the port."""
    state, init = state_dir(run_pid), enclave_init_pid(run_pid)
    if state is None or init is None:
        raise ConnectionRefusedError(f"no local enclave for enclaver-run {run_pid}")
    st = os.stat(state / "v")
    name = f"\0enclaver-vsock/{st.st_dev:x}.{st.st_ino:x}/{cid}.{port}"
    ns = os.open(f"/proc/{init}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(ns)
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        finally:
            _setns(own)
    finally:
        os.close(ns)
        os.close(own)
    try:
        s.connect(name)
    except OSError:
        s.close()
        raise
    return s


def wait_vsock(run_pid, port, timeout=15):
    """Until the enclave listens on its vsock port; returns a connected socket."""
    deadline = time.time() + timeout
    while True:
        try:
            return vsock_socket(run_pid, port)
        except OSError:
            if time.time() > deadline:
                raise AssertionError(f"the enclave of enclaver-run {run_pid} never listened on vsock {port}")
            time.sleep(0.05)


def enclave_id(stderr):
    """The local enclave's id (its state folder's and cgroups' suffix), from enclaver-run's log."""
    m = re.search(r"started enclave ID=local-(\w+)", stderr)
    return m.group(1) if m else None


def leftovers(stderr):
    """What this enclave could have left: its state folder, cgroups, mounts and processes."""
    eid = enclave_id(stderr)
    if eid is None:
        return []
    tag = f"enclaver-{eid}"
    out = glob.glob(f"/tmp/{tag}") + glob.glob(f"/sys/fs/cgroup/*/{tag}") + glob.glob(f"/sys/fs/cgroup/{tag}")
    out += [l for l in open("/proc/mounts") if tag in l]
    for cg in glob.glob("/proc/[0-9]*/cgroup"):
        try:
            if tag in open(cg).read():
                out.append(cg)
        except OSError:
            pass
    return out
