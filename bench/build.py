#!/usr/bin/python3
"""bench/build: `enclaver build --eif-only` of a large container image (>= 500 MB unpacked,
>= 20,000 files, gzip layers, as a docker-archive) against, in the same run, `zcat` of its
layers piped to `sha384sum` -- the least any builder must do: decompress every byte once and
hash it once. Prints the time ratio (budget <= 1.5) and the builder's peak memory.

The image is generated once, deterministically, and kept in BENCH_CACHE (default
/var/tmp/enclaver-bench). The EIF goes to tmpfs (BENCH_DIR, default /dev/shm) so that the
disk's writeback does not decide the result."""
import gzip
import hashlib
import io
import json
import os
import pathlib
import random
import subprocess
import sys
import tarfile
import tempfile
import time

BUDGET = 1.5
FILES = int(os.environ.get("BENCH_BUILD_FILES", "24000"))
TARGET_MB = int(os.environ.get("BENCH_BUILD_MB", "560"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LAYERS = 4
VERSION = 1  # of the generator: a new one makes a new image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import mkimage  # noqa: E402


def file_bytes(rng, size):
    """Like a real image: some already-compressed data, mostly text and code that gzip shrinks."""
    if rng.random() < 0.25:
        return rng.randbytes(size)
    words = [rng.randbytes(rng.randint(3, 9)).hex().encode() for _ in range(64)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
    return bytes(out[:size])


def make_image(path):
    rng = random.Random(20261123)
    per_layer = FILES // LAYERS
    total = TARGET_MB << 20
    # sizes: many small files, a few large ones, summing to about the target
    sizes = [int(rng.paretovariate(1.1) * 4096) for _ in range(FILES)]
    scale = total / sum(sizes)
    sizes = [max(1, min(int(s * scale), 64 << 20)) for s in sizes]
    layers, diff_ids = [], []
    for li in range(LAYERS):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            for i in range(li * per_layer, (li + 1) * per_layer):
                d = f"usr/lib/pkg{i % 700:03d}"
                name = f"{d}/file{i:06d}.dat"
                data = file_bytes(rng, sizes[i])
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
                t.addfile(info, io.BytesIO(data))
        raw = raw.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        layers.append(gzip.compress(raw, compresslevel=6, mtime=0))
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    # a docker-archive with gzip layers (as newer `docker save` and registries give them)
    tmp = path.with_suffix(".part")
    with tarfile.open(tmp, "w") as t:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1700000000
            t.addfile(info, io.BytesIO(data))
        names = []
        for l in layers:
            n = f"blobs/sha256/{hashlib.sha256(l).hexdigest()}"
            add(n, l)
            names.append(n)
        c = json.dumps(cfg).encode()
        cn = f"blobs/sha256/{hashlib.sha256(c).hexdigest()}"
        add(cn, c)
        add("manifest.json", json.dumps([{"Config": cn, "RepoTags": ["bench:big"], "Layers": names}]).encode())
    tmp.rename(path)
    return sum(sizes)


def layer_members(path):
    with tarfile.open(path) as t:
        m = json.load(t.extractfile("manifest.json"))[0]
        return [(t.getmember(n).offset_data, t.getmember(n).size) for n in m["Layers"]]


def timed(cmd, shell=False):
    os.sync()
    t = time.perf_counter()
    subprocess.run(cmd, check=True, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def peak_rss_kib(build, cmd):
    """The builder's own peak, measured by bench/maxrss (a small process that forks it): the
    kernel's peak survives exec, so a child of this large Python process would report ours."""
    p = subprocess.run([str(build / "bench" / "maxrss"), *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    assert p.returncode == 0, (cmd, p.stderr)
    return int(p.stderr.rsplit("maxrss: ", 1)[1])


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build").resolve()
    cache = pathlib.Path(os.environ.get("BENCH_CACHE", "/var/tmp/enclaver-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    image = cache / f"big-v{VERSION}-{FILES}-{TARGET_MB}.tar"
    if not image.exists():
        print(f"generating the benchmark image ({FILES} files, {TARGET_MB} MB) in {image} ...", flush=True)
        make_image(image)
    members = layer_members(image)
    with tarfile.open(image) as t:
        m = json.load(t.extractfile("manifest.json"))[0]
        files = 0
        unpacked = 0
        for n in m["Layers"]:
            with tarfile.open(fileobj=gzip.GzipFile(fileobj=t.extractfile(n))) as lt:
                for e in lt:
                    files += 1
                    unpacked += e.size
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/dev/shm")) as d:
        d = pathlib.Path(d)
        (d / "kernel").write_bytes(os.urandom(8 << 20))
        (d / "enclaver.yaml").write_text(f"version: v1\nname: bench\ntarget: bench:enclave\nsources:\n"
                                         f"  app: docker-archive:{image}\n")
        out = d / "out.eif"
        build_cmd = [str(build / "enclaver"), "build", "-f", str(d / "enclaver.yaml"), "--eif-only", str(out),
                     "--kernel", str(d / "kernel")]
        # the baseline: every layer decompressed once and hashed once, read from the same file
        zcat = " ; ".join(f"tail -c +{off + 1} {image} | head -c {size} | zcat" for off, size in members)
        base_cmd = f"( {zcat} ) | sha384sum"
        timed(base_cmd, shell=True)  # warm the page cache
        t_base = [timed(base_cmd, shell=True) for _ in range(ROUNDS)]
        timed(build_cmd)
        t_build = []
        for _ in range(ROUNDS):
            out.unlink()
            t_build.append(timed(build_cmd))
        out.unlink()
        rss = peak_rss_kib(build, build_cmd)
    ratio = min(t_build) / min(t_base)
    print(f"image: {files} files, {unpacked / 1e6:.0f} MB unpacked, {image.stat().st_size / 1e6:.0f} MB of gzip layers")
    print(f"enclaver build --eif-only: {min(t_build):.2f} s; zcat layers | sha384sum: {min(t_base):.2f} s "
          f"(best of {ROUNDS})")
    print(f"ratio build/(zcat|sha384sum): {ratio:.2f} (budget <= {BUDGET})")
    print(f"builder peak RSS: {rss / 1024:.1f} MiB")
    ok = ratio <= BUDGET and files >= 20000 and unpacked >= 500e6
    print("bench build:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
