"""An image made by `docker build` runs in the enclave as `docker run` runs it. The image's files
as `docker export` gives them are compared, entry by entry, with the EIF's application ramdisk
and with a walk inside a running local enclave: paths, types, modes, owners, sizes, contents, link
targets, hard links and file capabilities. Then the app's user, folder, a relative read, a
capability-bound port and /tmp are compared with `docker run` of the same image."""
import io
import os
import subprocess
import tarfile
import zlib

import pytest

from conftest import BUILD, run
import enclave_util as eu
from test_build import static_odyn
from test_sources import docker, dockerd  # noqa: F401 (a fixture)

# security.capability as setcap writes it: cap_net_bind_service=+ep
NET_BIND_EP = bytes([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1000:\nextra:x:2000:other,app\n"

# Made by Docker, or by the enclave on purpose: never compared.
DOCKER_ONLY = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab", "dev", "proc", "sys"}
ENCLAVE_ONLY = {"sbin", "sbin/odyn", "etc/enclaver", "etc/enclaver/enclaver.yaml", "etc/enclaver/capabilities",
                "etc/hosts", "etc/resolv.conf", "etc/mtab", "dev", "dev/pts", "dev/shm", "proc", "sys", "run", "var"}
MOUNTED = {"dev", "proc", "sys", "run", "tmp"}  # a walk inside the enclave sees its mounts, not these


def under(path, names):
    return any(path == n or path.startswith(n + "/") for n in names)


def base_image(tag, accounts=True):
    """busybox and, unless told not to, /etc/passwd and /etc/group: imported, as no registry is
    reachable here."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        def add(name, kind, data=b"", mode=0o755):
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "f": tarfile.REGTYPE}[kind]
            if kind == "l":
                ti.linkname = data
            ti.size = len(data) if kind == "f" else 0
            t.addfile(ti, io.BytesIO(data) if kind == "f" else None)
        for d in ("bin", "etc", "home", "root"):
            add(d, "d", mode=0o700 if d == "root" else 0o755)
        add("tmp", "d", mode=0o1777)
        add("bin/busybox", "f", open("/bin/busybox", "rb").read())
        add("bin/sh", "l", "busybox")
        if accounts:
            add("etc/passwd", "f", PASSWD, 0o644)
            add("etc/group", "f", GROUP, 0o644)
    p = subprocess.run(["/usr/bin/docker", "import", "-", tag], input=b.getvalue(), capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr


def docker_build(ctx, tag, dockerfile, files):
    ctx.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_bytes(data)
        (ctx / name).chmod(0o755 if name == "probe" else 0o644)
    (ctx / "Dockerfile").write_text(dockerfile)
    p = docker("build", "-q", "-t", tag, ctx)
    assert p.returncode == 0, p.stderr


def caps_tar(name, data):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = len(data), 0o755
        ti.pax_headers = {"SCHILY.xattr.security.capability": NET_BIND_EP.decode("utf-8", "surrogateescape")}
        t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def entry(kind, mode, uid, gid, size, crc):
    # folders' sizes belong to their file system, not to the image
    return (kind, mode, uid, gid, None if kind == "d" else size, None if kind == "d" else crc)


def tree_of_export(tar_bytes):
    """path -> entry, the hard-link groups, path -> capabilities, from `docker export`."""
    files, groups, caps = {}, {}, {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        for m in t.getmembers():
            p = m.name.strip("/")
            if p.startswith("./"):
                p = p[2:]
            if not p or under(p, DOCKER_ONLY):
                continue
            cap = m.pax_headers.get("SCHILY.xattr.security.capability")
            if m.islnk():
                target = m.linkname.strip("/")
                files[p] = files[target]
                groups.setdefault(target, {target}).add(p)
                groups[p] = groups[target]
            elif m.isreg():
                data = t.extractfile(m).read()
                files[p] = entry("f", m.mode & 0o7777, m.uid, m.gid, len(data), zlib.crc32(data))
            elif m.issym():
                files[p] = entry("l", 0, m.uid, m.gid, len(m.linkname.encode()), zlib.crc32(m.linkname.encode()))
            elif m.isdir():
                files[p] = entry("d", m.mode & 0o7777, m.uid, m.gid, 0, 0)
            elif m.isfifo():
                files[p] = entry("p", m.mode & 0o7777, m.uid, m.gid, 0, 0)
            if cap is not None:
                caps[p] = cap.encode("utf-8", "surrogateescape").hex()
    return files, {frozenset(g) for g in groups.values()}, caps


def tree_of_ramdisk(data):
    """The same from the EIF's application ramdisk (cpio newc; later entries replace earlier
    ones; entries with nlink >= 2 and one ino are one file), capabilities from their record."""
    files, inos, off = {}, {}, 0
    while True:
        f = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        name = data[off + 110: off + 110 + f[11] - 1].decode("utf-8", "surrogateescape")
        off = (off + 110 + f[11] + 3) & ~3
        body = data[off: off + f[6]]
        off = (off + f[6] + 3) & ~3
        if name == "TRAILER!!!":
            break
        mode, kind = f[1], {0o10: "f", 0o04: "d", 0o12: "l", 0o01: "p"}.get(f[1] >> 12, "?")
        if not name.startswith("rootfs/"):
            continue
        p = name[len("rootfs/"):]
        if kind == "f" and f[4] >= 2 and f[0] in inos and not body:
            body = files[inos[f[0]]][1]  # a later name of a linked file: its data is the first's
        elif kind == "f" and f[4] >= 2:
            inos.setdefault(f[0], p)
        files[p] = (entry(kind, mode & 0o7777 if kind != "l" else 0, f[2], f[3], len(body), zlib.crc32(body)), body,
                    f[0] if kind == "f" and f[4] >= 2 else None)
    groups = {}
    for p, (_, _, ino) in files.items():
        if ino is not None:
            groups.setdefault(ino, set()).add(p)
    caps = {}
    record = files.get("etc/enclaver/capabilities", (None, b""))[1]
    for line in record.split(b"\0\n"):
        if line:
            path, value = line.split(b"\0")
            path = path.decode("utf-8", "surrogateescape").lstrip("/")
            # an attribute of the file: every name of it has it
            for p in next((g for g in groups.values() if path in g), {path}):
                caps[p] = value.decode()
    return ({p: e for p, (e, _, _) in files.items()}, {frozenset(g) for g in groups.values() if len(g) > 1}, caps)


def tree_of_walk(out):
    """The same from `probe walk /` inside the enclave."""
    files, groups, caps = {}, {}, {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) != 10 or not f[0].startswith("/"):
            continue
        p = f[0][1:]
        kind = {"10": "f", "4": "d", "12": "l", "1": "p"}.get(f[1], "?")
        mode = int(f[2], 8) if kind != "l" else 0
        files[p] = entry(kind, mode, int(f[3]), int(f[4]), int(f[5]), int(f[8], 16))
        if kind == "f" and int(f[6]) > 1:
            groups.setdefault(f[7], set()).add(p)
        if f[9] != "-":
            caps[p] = f[9]
    return files, {frozenset(g) for g in groups.values()}, caps


def compare(docker_tree, other, allowed_extra, missing_ok=()):
    d_files, d_groups, d_caps = docker_tree
    o_files, o_groups, o_caps = other
    wrong = {p: (e, o_files.get(p)) for p, e in d_files.items()
             if not under(p, missing_ok) and o_files.get(p) != e}
    extra = sorted(p for p in o_files if p not in d_files and not under(p, allowed_extra))
    assert not wrong, "differ from docker export: " + repr(sorted(wrong.items())[:10])
    assert not extra, f"not in docker export: {extra[:10]}"
    assert {g for g in o_groups if not any(under(p, allowed_extra) for p in g)} == d_groups
    assert o_caps == d_caps


APP_DOCKERFILE = """FROM {base} AS stage
RUN mkdir -p /out && echo from-stage > /out/built.txt && chmod 640 /out/built.txt

FROM {base}
ENV GREETING="héllo wörld" LANG=C.UTF-8
COPY probe /bin/probe
COPY --chown=1234:5678 ctx/ /copied/
COPY --from=stage /out/built.txt /copied/built.txt
ADD caps.tar /
RUN /bin/busybox --install -s /bin && mkdir -p /gone/deep /opq /repl /hl && echo x > /gone/deep/f && \\
    echo old > /opq/old && echo r > /repl/r && echo keep > /keep && echo linked > /hl/a && \
    echo v1 > /up1 && ln /up1 /up2 && ln /up1 /up3
RUN echo v2 > /up1 && rm -rf /gone /opq && mkdir /opq && echo new > /opq/new && rm -rf /repl && echo now-a-file > /repl && \\
    ln /hl/a /hl/b && mkdir /hl/sub && ln /hl/a /hl/sub/c && ln /bin/capped /bin/capped-too && \\
    ln -s /keep /abs-link && ln -s keep /rel-link && ln -s /nowhere /dangling && ln -s hl /dir-link && \\
    ln -s rel-link /chain && echo s > /suid && chmod 4755 /suid && echo g > /sgid && chmod 2755 /sgid && \\
    mkdir /sticky && chmod 1777 /sticky && echo z > /zero && chmod 000 /zero && echo o > /odd && chmod 611 /odd && \\
    echo u > /owned && chown 1000:1000 /owned && echo h > /high && chown 100000:4000000000 /high && \\
    echo n > /nobody && chown 65534:65534 /nobody && mkdir -p "/utf8/héllo-中文" && \\
    echo u > "/utf8/héllo-中文/ünïcode.txt" && \\
    d=/long/$(printf 'd%.0s' $(seq 60))/$(printf 'e%.0s' $(seq 60)) && mkdir -p $d && \\
    echo l > $d/$(printf 'f%.0s' $(seq 200)) && mkfifo /fifo && \\
    dd if=/dev/urandom of=/big bs=1M count=50 2>/dev/null
ENTRYPOINT ["/bin/probe"]
CMD ["walk", "/"]
"""

RUN_DOCKERFILE = """FROM {app}
RUN mkdir /work && echo read by a relative path > /work/rel.txt && chown -R app:app /work
WORKDIR /work
USER app
ENTRYPOINT ["/bin/capped"]
CMD ["seq", "id", "cat rel.txt", "bind 80", "write /tmp/t", "write /made-at-the-root"]
"""

BARE_DOCKERFILE = """FROM {base}
COPY probe /bin/probe
USER 4242
ENTRYPOINT ["/bin/probe"]
CMD ["seq", "id", "write /tmp/t", "write /made-at-the-root"]
"""


def enclave_of(d, tag):
    (d / "enclaver.yaml").write_text(f"version: v1\nname: app\ntarget: app:enclave\nsources:\n  app: {tag}\n"
                                     "defaults:\n  memory_mb: 512\n")
    (d / "kernel").write_bytes(b"kernel bytes")
    r = run("build", "-f", d / "enclaver.yaml", "--eif-only", d / "app.eif", "--kernel", d / "kernel", "--odyn",
            static_odyn())
    assert r.code == 0, r
    return d / "app.eif"


def run_enclave(d):
    p = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(d / "app.eif"), "--manifest-file",
                        str(d / "enclaver.yaml")], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode("utf-8", "surrogateescape")


def probe_sections(out):
    """What the seq subcommands printed, without the lines that belong to the run itself."""
    return [line for line in out.splitlines() if line.startswith(("=== ", "uid=", "bind ", "write ", "read "))]


def test_a_docker_built_image_runs_as_docker_run_runs_it(tmp_path, dockerd):  # noqa: F811
    pid = os.getpid()
    base, bare_base = f"enclaver-fidelity-base:{pid}", f"enclaver-fidelity-bare:{pid}"
    app, runner, bare = f"enclaver-fidelity-app:{pid}", f"enclaver-fidelity-run:{pid}", f"enclaver-fidelity-bb:{pid}"
    probe = eu._probe().read_bytes()
    try:
        base_image(base)
        base_image(bare_base, accounts=False)
        docker_build(tmp_path / "app", app, APP_DOCKERFILE.format(base=base), {
            "probe": probe, "caps.tar": caps_tar("bin/capped", probe),
            "ctx/a.txt": b"copied with an owner\n", "ctx/sub/b.txt": b"deeper\n"})
        docker_build(tmp_path / "run", runner, RUN_DOCKERFILE.format(app=app), {})
        docker_build(tmp_path / "bare", bare, BARE_DOCKERFILE.format(base=bare_base), {"probe": probe})

        # the files: docker export against the EIF and against a walk inside the enclave
        c = docker("create", app)
        assert c.returncode == 0, c.stderr
        cid = c.stdout.strip()
        exported = subprocess.run(["/usr/bin/docker", "export", cid], capture_output=True, timeout=300).stdout
        docker("rm", cid)
        want = tree_of_export(exported)
        assert want[0]["tmp"][1] == 0o1777 and want[0]["high"][2:4] == (100000, 4000000000)
        assert frozenset({"hl/a", "hl/b", "hl/sub/c"}) in want[1] and want[2]["bin/capped"] == NET_BIND_EP.hex()
        # an upper layer rewrote one name of a hard-linked file: the others keep the old data, together
        assert frozenset({"up2", "up3"}) in want[1] and want[0]["up1"][5] != want[0]["up2"][5]
        d = tmp_path / "eif"
        d.mkdir()
        eif = enclave_of(d, app)
        assert run("eif", "extract", eif, "--ramdisk", "1", "-o", d / "r1").code == 0
        compare(want, tree_of_ramdisk((d / "r1").read_bytes()), ENCLAVE_ONLY)
        compare(want, tree_of_walk(run_enclave(d)), ENCLAVE_ONLY, missing_ok=MOUNTED)

        # the app: who, where, a relative read, a capability-bound port, /tmp, as docker run gives them
        for tag in (runner, bare):
            d = tmp_path / tag.split(":")[0]
            d.mkdir()
            enclave_of(d, tag)
            under_docker = docker("run", "--rm", "--network", "none", tag)
            assert under_docker.returncode == 0, under_docker.stderr
            expected = probe_sections(under_docker.stdout)
            assert len(expected) >= 6, under_docker.stdout
            assert probe_sections(run_enclave(d)) == expected
    finally:
        docker("rmi", "-f", bare, runner, app, base, bare_base)
