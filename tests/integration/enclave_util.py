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


def make_eif(d, manifest, app, env=("PATH=/bin:/sbin",), extra_files=None, odyn_args=()):
    """An EIF whose /cmd runs odyn with `app` (probe arguments, or an absolute argv)."""
    d = pathlib.Path(d)
    root = d / "rootfs"
    for sub in ["sbin", "bin", "etc/enclaver", "dev", "run", "sys", "var", "proc", "tmp"]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sbin" / "odyn").write_bytes((BUILD / "odyn").read_bytes())
    (root / "sbin" / "odyn").chmod(0o755)
    _copy_shared_libs(BUILD / "odyn", root)
    (root / "bin" / "probe").write_bytes(_probe().read_bytes())
    (root / "bin" / "probe").chmod(0o755)
    (root / "etc" / "enclaver" / "enclaver.yaml").write_text(manifest)
    for rel, data in (extra_files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    argv = list(app) if app and app[0].startswith("/") else ["/bin/probe", *app]
    cmd = ["/sbin/odyn", *odyn_args, "--config-dir", "/etc/enclaver", "--", *argv]
    c = ref.Cpio()
    _add_tree(c, root, "rootfs")
    c.add("cmd", 0o644, 0o10, "".join(a + "\n" for a in cmd).encode(), mtime=ref.LINUXKIT_MTIME)
    c.add("env", 0o644, 0o10, "".join(e + "\n" for e in env).encode(), mtime=ref.LINUXKIT_MTIME)
    (d / "customer.cpio").write_bytes(c.close())
    r = run("eif", "bootstrap", "--init", BUILD / "enclaver-init", "-o", d / "bootstrap.cpio")
    assert r.code == 0, r
    (d / "kernel").write_bytes(b"not a kernel: the local launcher boots none")
    r = run("eif", "build", "--kernel", d / "kernel", "--cmdline", "console=ttyS0", "--ramdisk",
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
