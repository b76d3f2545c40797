#!/usr/bin/python3
"""Makes a container image without Docker or a registry: a docker-archive (what `docker save`
writes) from a folder, for the demo, and the helpers the tests use to make hostile ones.

    mkimage.py ROOTFS OUT.tar --tag NAME:TAG --entrypoint /bin/sh /app.sh [--env K=V]...
               [--base-layer ROOTFS.tar]

--base-layer puts a ready-made layer (a root file system tar, such as mmdebstrap writes) under
the folder's layer.
"""
import argparse
import hashlib
import io
import json
import os
import stat
import tarfile


def layer(entries):
    """A layer tar from (name, kind, data, mode[, extra]) with kind f(ile), d(ir), l(ink: data =
    target) or h(ard link: data = the name linked to); extra: {"uid", "gid", "pax"} (PAX records,
    e.g. SCHILY.xattr.*)."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode, *extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.mtime = 1000
            extra = extra[0] if extra else {}
            ti.uid, ti.gid = extra.get("uid", 0), extra.get("gid", 0)
            ti.pax_headers = dict(extra.get("pax", {}))
            if kind == "d":
                ti.type = tarfile.DIRTYPE
            elif kind == "l":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
            elif kind == "h":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
            else:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if kind == "f" else None)
    return b.getvalue()


def layer_from_dir(root):
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            entries.append((rel, "d", b"", stat.S_IMODE(os.lstat(dirpath).st_mode)))
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            name = os.path.normpath(os.path.join(rel, f))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entries.append((name, "l", os.readlink(p), 0o777))
            else:
                entries.append((name, "f", open(p, "rb").read(), stat.S_IMODE(st.st_mode)))
    return layer(entries)


def _digest(l):
    if isinstance(l, (bytes, bytearray)):
        return hashlib.sha256(l).hexdigest()
    h = hashlib.sha256()
    with open(l, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def docker_archive(path, layers, config, tag="app:latest"):
    """Writes a docker-archive holding one image made of layers (bottom first): bytes, or paths
    of layer tars (streamed)."""
    cfg = dict(config, architecture="amd64", os="linux",
               rootfs={"type": "layers", "diff_ids": ["sha256:" + _digest(l) for l in layers]})
    cfg_bytes = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    with tarfile.open(path, "w") as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        names = []
        for i, l in enumerate(layers):
            names.append(f"l{i}/layer.tar")
            if isinstance(l, (bytes, bytearray)):
                add(names[-1], l)
            else:
                ti = tarfile.TarInfo(names[-1])
                ti.size = os.path.getsize(l)
                with open(l, "rb") as f:
                    t.addfile(ti, f)
        add(cfg_name, cfg_bytes)
        add("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]).encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rootfs")
    ap.add_argument("out")
    ap.add_argument("--tag", default="app:latest")
    ap.add_argument("--entrypoint", nargs="+", required=True)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--base-layer")
    a = ap.parse_args()
    docker_archive(a.out, ([a.base_layer] if a.base_layer else []) + [layer_from_dir(a.rootfs)],
                   {"config": {"Entrypoint": a.entrypoint, "Env": a.env or ["PATH=/bin"]}}, a.tag)


if __name__ == "__main__":
    main()
