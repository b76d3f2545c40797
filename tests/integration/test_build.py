"""enclaver build from daemonless image sources (docker-archive, OCI layout), checked by running
the result in the local enclave, by describe, and by building twice."""
import gzip
import hashlib
import io
import json
import re
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import BUILD, ROOT, run
import enclave_util as eu

sys.path.insert(0, str(ROOT / "scripts"))
import mkimage  # noqa: E402
from mkimage import layer  # noqa: E402


def static_binary(name, why):
    for b in (BUILD, ROOT / "build"):
        out = subprocess.run(["file", "-L", str(b / name)], capture_output=True, text=True).stdout
        if "static" in out:
            return b / name
    pytest.skip(f"no static {name} built ({why})")


def static_odyn():
    return static_binary("odyn", "a sanitized odyn is dynamic and would not run in an enclave")


def static_enclaver_run():
    return static_binary("enclaver-run", "the release image is FROM scratch")


def app_layers():
    probe = eu._probe().read_bytes()
    l1 = layer([("bin", "d", b"", 0o755), ("bin/probe", "f", probe, 0o755), ("etc", "d", b"", 0o755),
                ("etc/gone", "f", b"removed later", 0o644), ("etc/hostname", "f", b"dropped", 0o644)])
    l2 = layer([("etc/.wh.gone", "f", b"", 0o644), ("etc/greeting", "f", b"hello from the image\n", 0o644)])
    return [l1, l2]


CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Entrypoint": ["/bin/probe"], "Cmd": ["exit", "7"], "Env": ["PATH=/bin", "FOO=bar"]}}


def docker_archive(path, layers):
    mkimage.docker_archive(path, layers, CONFIG)


def oci_layout(d, layers):
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data):
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": "sha256:" + h, "size": len(data)}
    gz = [gzip.compress(l, mtime=0) for l in layers]
    cfg = dict(CONFIG, rootfs={"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]})
    manifest = {"schemaVersion": 2, "config": dict(put(json.dumps(cfg).encode()), mediaType="application/vnd.oci.image.config.v1+json"),
                "layers": [dict(put(g), mediaType="application/vnd.oci.image.layer.v1.tar+gzip") for g in gz]}
    m = put(json.dumps(manifest).encode())
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        dict(m, mediaType="application/vnd.oci.image.manifest.v1+json",
             annotations={"org.opencontainers.image.ref.name": "v1"})]}))
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def write_manifest(d, app):
    (d / "enclaver.yaml").write_text(f"version: v1\nname: app\ntarget: app:enclave\nsources:\n  app: \"{app}\"\n"
                                     "defaults:\n  memory_mb: 256\n")


def build(d, out="app.eif", env=None):
    (d / "kernel").write_bytes(b"kernel bytes")
    return run("build", "-f", d / "enclaver.yaml", "--eif-only", d / out, "--kernel", d / "kernel",
               "--odyn", static_odyn(), env=env)


def test_pcr0_measures_what_the_enclave_uses_of_the_manifest_not_its_text(tmp_path):
    docker_archive(tmp_path / "app.tar", app_layers())
    (tmp_path / "kernel").write_bytes(b"kernel bytes")
    base = ("version: v1\nname: app\ntarget: app:enclave\nsources:\n  app: docker-archive:app.tar\n"
            "ingress:\n  - listen_port: 8443\n  - listen_port: 80\negress:\n  allow: [example.com]\n")
    same = [
        base,
        "# a comment\n" + base.replace("name: app", "name: renamed  # another"),
        base.replace("target: app:enclave", "target: team/app:v2").replace(
            "app: docker-archive:app.tar", f"app: docker-archive:{tmp_path}/app.tar"),
        base.replace("  - listen_port: 8443\n  - listen_port: 80\n", "  - listen_port: 80\n  - listen_port: 8443\n")
        + "defaults:\n  memory_mb: 1024\n  cpu_count: 4\n",
        base.replace("egress:\n  allow: [example.com]\n", "egress:\n  proxy_port: 10000\n  allow:\n    - example.com\n"),
    ]
    other = [
        base.replace("allow: [example.com]", "allow: [example.com, example.org]"),
        base.replace("listen_port: 80\n", "listen_port: 81\n"),
        base + "api:\n  listen_port: 9000\n",
    ]

    def pcr0(text, i):
        (tmp_path / "enclaver.yaml").write_text(text)
        r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / f"{i}.eif", "--kernel",
                tmp_path / "kernel", "--odyn", static_odyn(), env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"))
        assert r.code == 0, r
        return json.loads(run("eif", "describe", tmp_path / f"{i}.eif", "--json").out)["Measurements"]["PCR0"]
    first = pcr0(same[0], 0)
    assert [pcr0(t, i) for i, t in enumerate(same[1:], 1)] == [first] * (len(same) - 1)
    values = [pcr0(t, i) for i, t in enumerate(other, 10)]
    assert first not in values and len(set(values)) == len(values)


def test_relative_paths_in_the_manifest_are_taken_from_its_folder(tmp_path):
    sub = tmp_path / "app"
    sub.mkdir()
    docker_archive(sub / "app.tar", app_layers())
    write_manifest(sub, "docker-archive:app.tar")
    (sub / "kernel").write_bytes(b"kernel bytes")
    args = ["build", "-f", "app/enclaver.yaml", "--eif-only", "x.eif", "--kernel", sub / "kernel", "--odyn",
            static_odyn()]
    # from the manifest's parent folder, where no app.tar is: found beside the manifest
    r = run(*args, cwd=tmp_path)
    assert r.code == 0 and (tmp_path / "x.eif").exists(), r
    r = run("manifest", "-f", "app/enclaver.yaml", cwd=tmp_path)
    assert json.loads(r.out)["sources"]["app"] == "docker-archive:app/app.tar", r.out
    # a path that exists only beside the current folder is not taken
    (sub / "app.tar").rename(tmp_path / "app.tar")
    r = run(*args, cwd=tmp_path)
    assert r.code == 1 and "app/app.tar" in r.err, r
    # from standard input, the current folder is the manifest's
    r = run("manifest", "-f", "-", input=(sub / "enclaver.yaml").read_text(), cwd=tmp_path)
    assert json.loads(r.out)["sources"]["app"] == "docker-archive:app.tar", r.out


def test_build_from_docker_archive_and_run(tmp_path):
    docker_archive(tmp_path / "app.tar", app_layers())
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar:app:latest")
    r = build(tmp_path)
    assert r.code == 0, r
    assert r.out.startswith(f"Built EIF: {tmp_path}/app.eif\nEIF Info:\n")
    printed = json.loads(r.out.split("EIF Info:\n", 1)[1])["Measurements"]
    described = json.loads(run("eif", "describe", "--json", tmp_path / "app.eif").out)["Measurements"]
    assert printed == {k: described[k] for k in ("PCR0", "PCR1", "PCR2")}
    p = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(tmp_path / "app.eif"), "--manifest-file",
                        str(tmp_path / "enclaver.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 7, p.stderr
    assert "probe exiting with 7" in p.stdout


def test_ramdisk_layout_and_reproducible(tmp_path):
    docker_archive(tmp_path / "app.tar", app_layers())
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    assert build(tmp_path, "a.eif", env).code == 0
    assert build(tmp_path, "b.eif", env).code == 0
    assert (tmp_path / "a.eif").read_bytes() == (tmp_path / "b.eif").read_bytes()
    assert run("eif", "extract", tmp_path / "a.eif", "--ramdisk", "1", "-o", tmp_path / "r1").code == 0
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=(tmp_path / "r1").read_bytes(),
                   cwd=x, check=True)
    assert (x / "cmd").read_text() == "/sbin/odyn\n--config-dir\n/etc/enclaver\n--\n/bin/probe\nexit\n7\n"
    # HOME as docker run adds it to an image without one (no /etc/passwd here: "/")
    assert (x / "env").read_text() == "PATH=/bin\nFOO=bar\nHOME=/\n"
    # the manifest in the form PCR0 measures: what the enclave uses, as manifest --measured prints it
    measured = run("manifest", "-f", tmp_path / "enclaver.yaml", "--measured").out
    assert (x / "rootfs/etc/enclaver/enclaver.yaml").read_text() == measured
    assert '"name": "-"' in measured and "docker-archive" not in measured
    assert (x / "rootfs/sbin/odyn").read_bytes() == static_odyn().read_bytes()
    assert (x / "rootfs/etc/greeting").read_text() == "hello from the image\n"
    assert not (x / "rootfs/etc/gone").exists() and not (x / "rootfs/etc/hostname").exists()
    assert os.readlink(x / "rootfs/etc/resolv.conf") == "/run/resolvconf/resolv.conf"
    for d in ("dev", "run", "sys", "var", "proc", "tmp"):
        assert (x / "rootfs" / d).is_dir()


def test_build_from_oci_layout_with_gzip_layers(tmp_path):
    oci_layout(tmp_path / "oci", app_layers())
    write_manifest(tmp_path, f"oci:{tmp_path}/oci:v1")
    r = build(tmp_path)
    assert r.code == 0, r
    p = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(tmp_path / "app.eif"), "--manifest-file",
                        str(tmp_path / "enclaver.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 7, p.stderr
    # the same files as from the docker-archive (only the manifest inside differs: it names the source)
    (tmp_path / "d").mkdir()
    docker_archive(tmp_path / "d" / "app.tar", app_layers())
    write_manifest(tmp_path / "d", f"docker-archive:{tmp_path}/d/app.tar")
    assert build(tmp_path / "d").code == 0
    trees = []
    for d in (tmp_path, tmp_path / "d"):
        assert run("eif", "extract", d / "app.eif", "--ramdisk", "1", "-o", d / "r1").code == 0
        (d / "x").mkdir()
        subprocess.run(["cpio", "-idm", "--quiet"], input=(d / "r1").read_bytes(), cwd=d / "x", check=True)
        trees.append({str(p.relative_to(d / "x")): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                      for p in sorted((d / "x").rglob("*")) if "enclaver.yaml" not in p.name})
    assert trees[0] == trees[1]


def test_hostile_or_corrupt_images_build_nothing(tmp_path):
    evil = layer([("../escape", "f", b"x", 0o644)])
    docker_archive(tmp_path / "evil.tar", [evil])
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/evil.tar")
    r = build(tmp_path)
    errors = [l for l in r.err.splitlines() if "error:" in l]
    assert r.code == 1 and len(errors) == 1 and "../escape: path escapes the root" in errors[0], r
    assert not (tmp_path / "app.eif").exists()
    assert not list(tmp_path.glob("app.eif.tmp*"))
    # a layer whose bytes do not match the config's digest
    layers = app_layers()
    docker_archive(tmp_path / "bad.tar", layers)
    data = bytearray((tmp_path / "bad.tar").read_bytes())
    i = data.find(b"hello from the image")
    data[i] = ord("J")
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/bad.tar")
    r = build(tmp_path)
    assert r.code == 1 and "digest mismatch" in r.err, r
    assert not (tmp_path / "app.eif").exists()
    write_manifest(tmp_path, "not an image")
    r = build(tmp_path)
    assert r.code == 1 and "image not an image: not an image reference" in r.err, r


def test_release_image_docker_archive(tmp_path):
    docker_archive(tmp_path / "app.tar", app_layers())
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    (tmp_path / "kernel").write_bytes(b"kernel bytes")
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    args = ["build", "-f", tmp_path / "enclaver.yaml", "--kernel", tmp_path / "kernel", "--odyn", static_odyn()]
    r = run(*args, "--output", f"docker-archive:{tmp_path}/release.tar", env=env)
    assert r.code == 0, r
    image_id = r.out.split("Built Release Image: ")[1].split()[0]
    assert r.out.startswith(f"Built Release Image: {image_id} (app:enclave)\nEIF Info:\n")
    assert not list(tmp_path.glob("release.tar.*"))  # the EIF built on the way is gone
    with tarfile.open(tmp_path / "release.tar") as t:
        manifest = json.load(t.extractfile("manifest.json"))[0]
        assert manifest["RepoTags"] == ["app:enclave"]
        cfg_bytes = t.extractfile(manifest["Config"]).read()
        assert "sha256:" + hashlib.sha256(cfg_bytes).hexdigest() == image_id
        cfg = json.loads(cfg_bytes)
        assert cfg["config"]["Entrypoint"] == ["/usr/local/bin/enclaver-run"]
        layers = [t.extractfile(l).read() for l in manifest["Layers"]]
    assert cfg["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    with tarfile.open(fileobj=io.BytesIO(layers[0])) as l0:
        assert l0.extractfile("usr/local/bin/enclaver-run").read() == (BUILD / "enclaver-run").read_bytes()
        assert l0.getmember("usr/local/bin/enclaver-run").mode == 0o755
    with tarfile.open(fileobj=io.BytesIO(layers[1])) as l1:
        eif = l1.extractfile("enclave/application.eif").read()
        assert l1.extractfile("enclave/enclaver.yaml").read() == (tmp_path / "enclaver.yaml").read_bytes()
    # the EIF inside is the one --eif-only builds from the same inputs
    assert run(*args, "--eif-only", tmp_path / "only.eif", env=env).code == 0
    assert eif == (tmp_path / "only.eif").read_bytes()
    # our own docker-archive reader accepts it, digests checked, and a second build is identical
    r2 = run(*args, "--output", f"docker-archive:{tmp_path}/again.tar", env=env)
    assert r2.code == 0 and (tmp_path / "again.tar").read_bytes() == (tmp_path / "release.tar").read_bytes()
    (tmp_path / "re").mkdir()
    write_manifest(tmp_path / "re", f"docker-archive:{tmp_path}/release.tar:app:enclave")
    assert build(tmp_path / "re").code == 0
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--kernel", tmp_path / "kernel", "--output", "tar:x")
    assert r.code == 2 and "use docker, docker-archive:PATH or oci:DIR" in r.err


def test_json_build_summary(tmp_path):
    docker_archive(tmp_path / "app.tar", app_layers())
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    (tmp_path / "kernel").write_bytes(b"kernel bytes")
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--kernel", tmp_path / "kernel", "--odyn", static_odyn(),
            "--output", f"docker-archive:{tmp_path}/release.tar", "--json")
    assert r.code == 0, r
    summary = json.loads(r.out)
    assert list(summary) == ["Sources", "Measurements", "Image"]
    assert summary["Image"]["Name"] == "app:enclave" and summary["Image"]["ID"].startswith("sha256:")
    assert summary["Sources"]["App"]["ID"].startswith("sha256:")
    assert sorted(summary["Measurements"]) == ["PCR0", "PCR1", "PCR2"]


def test_image_too_large_for_memory_mb_is_refused_without_writing_it(tmp_path):
    # A small archive that expands to 300 MiB (zeros compress well), for an enclave of 256 MiB:
    # Nitro wants 4 times the EIF's size, so the build stops writing at 64 MiB, removes what it
    # wrote, and says how much memory the image needs.
    big = layer([("data", "d", b"", 0o755), ("data/zeros", "f", bytes(300 << 20), 0o644)])
    d = tmp_path / "oci"
    oci_layout(d, app_layers() + [big])
    assert sum(f.stat().st_size for f in (d / "blobs" / "sha256").iterdir()) < 2 << 20
    write_manifest(tmp_path, f"oci:{d}:v1")
    r = build(tmp_path)
    assert r.code == 1, r
    errors = [l for l in r.err.splitlines() if "error:" in l]
    assert len(errors) == 1, r.err
    m = re.search(r"defaults\.memory_mb = 256 is too small for this image: its EIF would be (\d+) MiB, and an "
                  r"enclave needs 4 times that: set memory_mb to at least (\d+)", errors[0])
    assert m and 300 <= int(m.group(1)) < 320 and int(m.group(2)) >= 4 * 300, errors[0]
    assert not (tmp_path / "app.eif").exists() and not list(tmp_path.glob("app.eif.tmp*"))
    # with the memory it asked for, the same image builds
    (tmp_path / "enclaver.yaml").write_text((tmp_path / "enclaver.yaml").read_text().replace(
        "memory_mb: 256", f"memory_mb: {m.group(2)}"))
    assert build(tmp_path).code == 0
