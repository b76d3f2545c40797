"""enclaver build from every kind of source — a registry (anonymous and bearer-token, image
indexes), an OCI archive, the Docker daemon — and to every output: the daemon, an OCI layout.
The results are run: in the local enclave, and as a release image with `docker run`."""
import gzip
import hashlib
import json
import os
import subprocess
import tarfile
import time

import pytest

from conftest import BUILD, run
import enclave_util as eu
import registry_util
from test_build import (CONFIG, app_layers, build, docker_archive, oci_layout, static_enclaver_run, static_odyn,
                        write_manifest)
from mkimage import layer

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
# what docker run of a release image needs for the local enclave (see the README)
LOCAL_CAPS = ["--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined"]


def run_local(d, eif="app.eif"):
    return subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(d / eif), "--manifest-file",
                           str(d / "enclaver.yaml")], capture_output=True, text=True, timeout=60)


def extract_rootfs(d, eif):
    assert run("eif", "extract", d / eif, "--ramdisk", "1", "-o", d / (eif + ".r1")).code == 0
    x = d / (eif + ".x")
    x.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=(d / (eif + ".r1")).read_bytes(), cwd=x, check=True)
    return x / "rootfs"


def push_app(reg, repo, tag, greeting=b"hello from the image\n"):
    layers = app_layers()
    if greeting != b"hello from the image\n":
        layers[1] = layer([("etc/greeting", "f", greeting, 0o644)])
    cfg = dict(CONFIG, rootfs={"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]})
    return reg.push_image(repo, tag, [gzip.compress(l, mtime=0) for l in layers], cfg)


def test_registry_index_resolved_to_amd64(tmp_path):
    with registry_util.registry(tmp_path / "reg") as reg:
        amd = push_app(reg, "team/app", "amd64-only")
        arm = push_app(reg, "team/app", "arm64-only", b"wrong platform\n")
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            dict(arm, platform={"architecture": "arm64", "os": "linux"}),
            dict(amd, platform={"architecture": "amd64", "os": "linux"})]}
        reg.put_manifest("team/app", "v1", index, "application/vnd.oci.image.index.v1+json")
        write_manifest(tmp_path, f"docker://{reg.host}/team/app:v1")
        (tmp_path / "kernel").write_bytes(b"kernel bytes")
        r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / "app.eif", "--kernel",
                tmp_path / "kernel", "--odyn", static_odyn(), "--json")
        assert r.code == 0, r
        summary = json.loads(r.out)
        assert summary["Sources"]["App"]["RepoDigest"] == f"{reg.host}/team/app@{amd['digest']}"
        assert (extract_rootfs(tmp_path, "app.eif") / "etc/greeting").read_text() == "hello from the image\n"
        p = run_local(tmp_path)
        assert p.returncode == 7 and "probe exiting with 7" in p.stdout, p.stderr
        # by digest, and a tag that is not there
        write_manifest(tmp_path, f"docker://{reg.host}/team/app@{arm['digest']}")
        assert build(tmp_path, "arm.eif").code == 0
        assert (extract_rootfs(tmp_path, "arm.eif") / "etc/greeting").read_text() == "wrong platform\n"
        write_manifest(tmp_path, f"docker://{reg.host}/team/app:nope")
        r = build(tmp_path, "nope.eif")
        assert r.code == 1 and "HTTP 404" in r.err and not (tmp_path / "nope.eif").exists(), r


def test_registry_bearer_token_and_docker_schema(tmp_path):
    with registry_util.registry(tmp_path / "reg", token=True) as reg:
        push_app(reg, "private/app", "v2", b"behind a token\n")
        # docker's own manifest schema too
        layers = app_layers()
        cfg = dict(CONFIG, rootfs={"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]})
        reg.push_image("private/app", "docker", [gzip.compress(l, mtime=0) for l in layers], cfg, media="docker")
        reg.token.requests.clear()
        for tag, greeting in (("v2", "behind a token\n"), ("docker", "hello from the image\n")):
            write_manifest(tmp_path, f"docker://{reg.host}/private/app:{tag}")
            r = build(tmp_path, f"{tag}.eif")
            assert r.code == 0, r
            assert (extract_rootfs(tmp_path, f"{tag}.eif") / "etc/greeting").read_text() == greeting
        assert reg.token.requests and all(q["scope"] == ["repository:private/app:pull"] and
                                          q["service"] == ["enclaver-test-registry"] for q in reg.token.requests)


def test_registry_corrupt_blob_is_named(tmp_path):
    with registry_util.registry(tmp_path / "reg") as reg:
        m = push_app(reg, "team/app", "v1")
        manifest = json.loads(subprocess.run(["curl", "-s", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                                              f"http://{reg.host}/v2/team/app/manifests/v1"],
                                             capture_output=True, check=True).stdout)
        assert "sha256:" + hashlib.sha256(json.dumps(manifest).encode()).hexdigest() == m["digest"]
        victim = manifest["layers"][1]["digest"]
        data = next((tmp_path / "reg" / "storage").rglob(victim[7:] + "/data"))
        raw = bytearray(data.read_bytes())
        raw[-5] ^= 0xFF
        data.write_bytes(bytes(raw))
        write_manifest(tmp_path, f"docker://{reg.host}/team/app:v1")
        r = build(tmp_path)
        errors = [l for l in r.err.splitlines() if "error" in l]
        assert r.code == 1 and len(errors) == 1 and f"blob {victim}: digest mismatch" in errors[0], r
        assert not (tmp_path / "app.eif").exists()
        assert not list(tmp_path.glob("app.eif*"))


def test_oci_archive_source(tmp_path):
    oci_layout(tmp_path / "oci", app_layers())
    with tarfile.open(tmp_path / "app-oci.tar", "w") as t:
        for p in sorted((tmp_path / "oci").rglob("*")):
            t.add(p, arcname=str(p.relative_to(tmp_path / "oci")), recursive=False)
    write_manifest(tmp_path, f"oci-archive:{tmp_path}/app-oci.tar:v1")
    r = build(tmp_path)
    assert r.code == 0, r
    assert run_local(tmp_path).returncode == 7
    write_manifest(tmp_path, f"oci-archive:{tmp_path}/app-oci.tar:v9")
    r = build(tmp_path, "v9.eif")
    assert r.code == 1 and "no image v9" in r.err


def test_oci_output_and_manifest_from_stdin(tmp_path):
    docker_archive(tmp_path / "app.tar", app_layers())
    (tmp_path / "kernel").write_bytes(b"kernel bytes")
    text = (f"version: v1\nname: app\ntarget: registry.example:5000/team/app:enclave\nsources:\n"
            f"  app: docker-archive:{tmp_path}/app.tar\ndefaults:\n  memory_mb: 256\n")
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    args = ["build", "-f", "-", "--kernel", tmp_path / "kernel", "--odyn", static_odyn()]
    r = run(*args, "--output", f"oci:{tmp_path}/out", input=text, env=env)
    assert r.code == 0, r
    image_id = r.out.split("Built Release Image: ")[1].split()[0]
    index = json.loads((tmp_path / "out/index.json").read_text())
    desc = index["manifests"][0]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "enclave"
    manifest = json.loads((tmp_path / "out/blobs/sha256" / desc["digest"][7:]).read_bytes())
    assert manifest["config"]["digest"] == image_id
    for blob in [manifest["config"]] + manifest["layers"]:
        data = (tmp_path / "out/blobs/sha256" / blob["digest"][7:]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"] and len(data) == blob["size"]
    assert not list(tmp_path.glob("out.*"))
    # the manifest read from stdin went into the image byte for byte; the image reads back as a source
    (tmp_path / "re").mkdir()
    write_manifest(tmp_path / "re", f"oci:{tmp_path}/out:enclave")
    assert build(tmp_path / "re").code == 0
    root = extract_rootfs(tmp_path / "re", "app.eif")
    assert (root / "enclave/enclaver.yaml").read_text() == text
    # same inputs, same layout (the directory is replaced in one rename)
    r2 = run(*args, "--output", f"oci:{tmp_path}/out", input=text, env=env)
    assert r2.code == 0 and r2.out == r.out


def test_without_a_daemon(tmp_path):
    docker_archive(tmp_path / "app.tar", app_layers())
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    (tmp_path / "kernel").write_bytes(b"k")
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    # no daemon to load the release image into: it is written as a docker-archive named after the target
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--kernel", tmp_path / "kernel", "--odyn", static_odyn(),
            env=env, cwd=tmp_path)
    assert r.code == 0 and "no Docker daemon answers at unix://" in r.err, r
    assert "written to docker-archive:app_enclave.tar" in r.err
    with tarfile.open(tmp_path / "app_enclave.tar") as t:
        assert json.load(t.extractfile("manifest.json"))[0]["RepoTags"] == ["app:enclave"]
    write_manifest(tmp_path, "team/app:latest")
    r = run("build", "-f", tmp_path / "enclaver.yaml", "--kernel", tmp_path / "kernel", "--eif-only",
            tmp_path / "x.eif", env=env)
    assert r.code == 1 and "Docker daemon at unix://" in r.err and not (tmp_path / "x.eif").exists(), r
    # the error says what is missing and what to do, not curl's "port 80"
    lines = r.err.strip().splitlines()
    assert lines[-1] == (f"enclaver: error: image team/app:latest: no Docker daemon at unix://{tmp_path}/none.sock "
                         f"({tmp_path}/none.sock does not exist): start dockerd, or set DOCKER_HOST to the daemon's "
                         "socket"), r.err
    r = run("run", "team/app:latest", env=env)
    assert r.code == 1 and "does not exist): start dockerd" in r.err and "port 80" not in r.err, r
    (tmp_path / "dead.sock").write_bytes(b"")
    r = run("run", "team/app:latest", env=dict(env, DOCKER_HOST=f"unix://{tmp_path}/dead.sock"))
    assert r.code == 1 and "does not answer on its socket: is dockerd running?" in r.err, r
    assert "port 80" not in r.err


# --- with a Docker daemon ---

@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    """The machine's Docker daemon, started here when none answers. One started here stays up:
    another test run on this machine may be using it by the time this one ends."""
    def answers():
        return subprocess.run([DOCKER, "version"], capture_output=True, timeout=30).returncode == 0
    if not answers():
        log = open(tmp_path_factory.mktemp("dockerd") / "dockerd.log", "w")
        proc = subprocess.Popen([DOCKERD], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while not answers():
            assert time.time() < deadline and proc.poll() is None, "dockerd did not start"
            time.sleep(0.5)
    yield DOCKER


def docker(*args, **kw):
    return subprocess.run([DOCKER, *map(str, args)], capture_output=True, text=True, timeout=180, **kw)


def load_and_build(d, tag, target, config, *extra, manifest_extra=""):
    """Loads an app image into the daemon, then builds its release image into the daemon."""
    import mkimage
    mkimage.docker_archive(d / "app.tar", app_layers(), config, tag=tag)
    assert docker("load", "-i", d / "app.tar").returncode == 0
    (d / "enclaver.yaml").write_text(f"version: v1\nname: app\ntarget: {target}\nsources:\n  app: {tag}\n"
                                     "defaults:\n  memory_mb: 256\n" + manifest_extra)
    (d / "kernel").write_bytes(b"kernel bytes")
    r = run("build", "-f", d / "enclaver.yaml", "--kernel", d / "kernel", "--odyn", static_odyn(),
            "--enclaver-run", static_enclaver_run(), *extra)
    assert r.code == 0, r
    return r


def test_daemon_source_and_output_and_docker_run(tmp_path, dockerd):
    tag = f"enclaver-test-app:{os.getpid()}"
    target = f"enclaver-test-release:{os.getpid()}"
    try:
        r = load_and_build(tmp_path, tag, target, CONFIG)
        image_id = r.out.split("Built Release Image: ")[1].split()[0]
        assert r.out.startswith(f"Built Release Image: {image_id} ({target})\nEIF Info:\n")
        assert docker("image", "inspect", "-f", "{{.Id}}", target).stdout.strip() == image_id
        app_id = docker("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
        js = load_and_build(tmp_path, tag, target, CONFIG, "--json")
        assert json.loads(js.out)["Sources"]["App"]["ID"] == app_id
        # the release image runs the local enclave under plain docker run; the app's exit code comes out
        p = docker("run", "--rm", *LOCAL_CAPS, target)
        assert p.returncode == 7, p
        assert "probe exiting with 7" in p.stdout and "LOCAL ENCLAVE" in p.stderr
        # enclaver run IMAGE: the same through the Engine API, and the container is removed (this
        # test's containers only: others may run beside it)
        def ours(image):
            return docker("ps", "-aq", "--filter", f"ancestor={image}").stdout.split()
        r = run("run", target)
        assert r.code == 7 and "probe exiting with 7" in r.out and "LOCAL ENCLAVE" in r.err, r
        assert "container exited with code 7" in r.err
        assert ours(target) == []
        r = run("run", "-f", tmp_path / "enclaver.yaml", target)
        assert r.code == 2 and "both an image name and a manifest file were specified" in r.err
        # -p for a port the manifest does not publish: nothing in the enclave listens there
        r = run("run", "-p", "80", target)
        assert r.code == 2 and "the manifest publishes no port 80 (its ingress: none)" in r.err, r
        assert ours(target) == []
        r = run("run", "-p", "8o", target)
        assert r.code == 2 and "'8o' does not match the format 'host_port:container_port'" in r.err
        # --json: the app's output on stderr, and how the run ended as the last line of stdout
        r = run("run", "--json", target)
        assert r.code == 7 and "probe exiting with 7" in r.err, r
        assert json.loads(r.out.splitlines()[-1]) == {"Name": json.loads(r.out.splitlines()[-1])["Name"],
                                                      "ExitCode": 7, "Status": "exited"}
        assert ours(target) == []
        # the app image itself is refused, and nothing of it runs (it would run bare, with every
        # capability and the host's network)
        r = run("run", tag)
        assert r.code == 1 and r.out == "", r
        assert f"{tag} is not a release image (it has no /enclave/application.eif): run enclaver build" in r.err
        assert "probe" not in r.err and "local enclave" not in r.err.lower()
        assert ours(tag) == [] and ours(target) == []
    finally:
        docker("rmi", "-f", tag, target)


def test_run_of_a_target_never_built_says_to_build_it_and_pulls_nothing(tmp_path, dockerd):
    target = f"enclaver-never-built-{os.getpid()}:latest"
    write_manifest(tmp_path, "team/app:latest")
    text = (tmp_path / "enclaver.yaml").read_text().replace("target: app:enclave", f"target: {target}")
    (tmp_path / "enclaver.yaml").write_text(text)
    r = run("run", "-f", tmp_path / "enclaver.yaml")
    assert r.code == 1 and r.err.count("\n") == 1 and "pulling" not in r.err, r
    assert (f"{target}, the target of {tmp_path}/enclaver.yaml, is not in the Docker daemon at "
            f"unix:///var/run/docker.sock: build it with 'enclaver build -f {tmp_path}/enclaver.yaml'") in r.err
    r = run("run", target)
    assert r.code == 1 and "pulling" not in r.err and "build it with 'enclaver build'" in r.err, r
    # a reference that names a registry is pulled as docker run pulls it; --pull never refuses to
    r = run("run", "--pull", "never", "127.0.0.1:9/none/such:1")
    assert r.code == 1 and "is not in the Docker daemon" in r.err and "pulling" not in r.err, r
    r = run("run", "127.0.0.1:9/none/such:1")
    assert r.code == 1 and "pulling 127.0.0.1:9/none/such:1" in r.err, r
    r = run("run", "--pull", "sometimes", target)
    assert r.code == 2 and "--pull sometimes: use missing, always or never" in r.err, r


def test_enclaver_run_ctrl_c_stops_and_removes(tmp_path, dockerd):
    import signal
    tag, target = f"enclaver-test-sleeper:{os.getpid()}", f"enclaver-test-sleeper-release:{os.getpid()}"
    cfg = dict(CONFIG, config=dict(CONFIG["config"], Cmd=["sleep", "120"]))
    try:
        load_and_build(tmp_path, tag, target, cfg)

        def ours(*flags):  # this test's containers only: others may run beside it
            return docker("ps", "-q", *flags, "--filter", f"ancestor={target}").stdout.split()
        p = subprocess.Popen([str(BUILD / "enclaver"), "run", "-f", str(tmp_path / "enclaver.yaml")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not ours():
            assert time.time() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.2)
        # of the state folder the container gets what the launcher reads, read-only: never the
        # key store, its master key, or the development CA's root key
        cid = ours()[0]
        binds = json.loads(docker("inspect", "-f", "{{json .HostConfig.Binds}}", cid).stdout)
        state = os.environ["ENCLAVER_STATE_DIR"]
        assert sorted(binds) == sorted(f"{state}/{f}:/var/lib/enclaver/{f}:ro" for f in (
            "dev-ca/root.pem", "dev-ca/intermediate.pem", "dev-ca/intermediate.key", "kms/credentials.json",
            "endpoints")), binds
        time.sleep(2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 109, err  # enclaver-run's "stopped on request"
        assert "received SIGINT: stopping the container" in err and "stopped on request" in err
        assert ours("-a") == []
    finally:
        docker("rmi", "-f", tag, target)


def test_detached_release_image_named_published_listed_logged_stopped_removed(tmp_path, dockerd):
    port, hport = eu.free_port(), eu.free_port()
    tag, target = f"enclaver-test-echo:{os.getpid()}", f"enclaver-test-echo-release:{os.getpid()}"
    name = f"enclaver-test-echo-{os.getpid()}"
    cfg = dict(CONFIG, config=dict(CONFIG["config"], Cmd=["echo", str(port)]))
    try:
        load_and_build(tmp_path, tag, target, cfg, manifest_extra=f"ingress:\n  - listen_port: {port}\n")
        inspect = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", target).stdout)
        assert inspect["ExposedPorts"] == {f"{port}/tcp": {}}
        # refused before anything starts: a port the manifest does not publish
        r = run("run", "--detach", "--name", name, "-p", f"{hport}:{port + 1}", target)
        assert r.code == 2 and f"the manifest publishes no port {port + 1} (its ingress: {port})" in r.err, r
        assert docker("ps", "-aq", "--filter", f"name=^{name}$").stdout == ""
        r = run("run", "--detach", "--name", name, "-p", f"127.0.0.1:{hport}:{port}", "-e",
                "ENCLAVER_IMDS_CREDENTIAL_SECONDS=900", target)
        assert r.code == 0 and r.out == f"{name}\n", r
        env = json.loads(docker("inspect", "-f", "{{json .Config.Env}}", name).stdout)
        assert "ENCLAVER_IMDS_CREDENTIAL_SECONDS=900" in env
        eu.wait_echo(hport, timeout=60)
        assert eu.listening(hport) == ["127.0.0.1"]  # this address only, as docker run -p 127.0.0.1:H:C
        mine = [x for x in json.loads(run("ps", "--json").out) if x["Name"] == name]
        assert len(mine) == 1 and mine[0]["Kind"] == "container" and mine[0]["State"] == "running", mine
        assert mine[0]["Ports"] == f"127.0.0.1:{hport}->{port}/tcp" and mine[0]["From"] == target
        assert name in run("ps", "-q").out.split()
        deadline = time.time() + 30  # the app's line comes through the enclave's log stream
        while f"echo listening on {port}" not in (r := run("logs", name)).out and time.time() < deadline:
            time.sleep(0.2)
        assert r.code == 0 and f"echo listening on {port}" in r.out, r
        r = run("run", "--detach", "--name", name, target)
        assert r.code == 1 and f"the name {name} is in use by a container" in r.err, r
        r = run("rm", name)
        assert r.code == 1 and f"{name} is running: stop it with 'enclaver stop {name}'" in r.err, r
        r = run("stop", "-t", "30", name)
        assert r.code == 0 and r.out == f"{name}\n", r
        mine = [x for x in json.loads(run("ps", "-a", "--json").out) if x["Name"] == name]
        assert mine[0]["State"] == "exited" and mine[0]["ExitCode"] == 109, mine
        assert name not in run("ps", "-q").out.split()
        r = run("rm", name)
        assert r.code == 0 and r.out == f"{name}\n"
        assert docker("ps", "-aq", "--filter", f"name=^{name}$").stdout == ""
        r = run("logs", name)
        assert r.code == 1 and f"no enclave named {name}: 'enclaver ps -a' lists them" in r.err
    finally:
        docker("rm", "-f", name)
        docker("rmi", "-f", tag, target)


def test_pull_through_the_daemon_from_a_registry(tmp_path, dockerd):
    with registry_util.registry(tmp_path / "reg") as reg:
        layers = app_layers()
        cfg = dict(CONFIG, rootfs={"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]})
        reg.push_image("team/pulled", "v1", [gzip.compress(l, mtime=0) for l in layers], cfg, media="docker")
        ref = f"{reg.host}/team/pulled:v1"
        docker("rmi", "-f", ref)
        try:
            write_manifest(tmp_path, ref)
            r = build(tmp_path, "a.eif")
            assert r.code == 0, r
            assert "pulling" in r.err
            assert docker("image", "inspect", ref).returncode == 0
            # --pull pulls again even though the daemon has it; without it the daemon's copy is used
            (tmp_path / "kernel").write_bytes(b"kernel bytes")
            r = run("build", "-f", tmp_path / "enclaver.yaml", "--eif-only", tmp_path / "b.eif", "--kernel",
                    tmp_path / "kernel", "--odyn", static_odyn(), "--pull", "--json")
            assert r.code == 0 and "pulling" in r.err, r
            assert json.loads(r.out)["Sources"]["App"]["RepoDigest"].startswith(f"{reg.host}/team/pulled@sha256:")
            r = build(tmp_path, "c.eif")
            assert r.code == 0 and "pulling" not in r.err, r
            a = json.loads(run("eif", "describe", "--json", tmp_path / "a.eif").out)["Measurements"]
            assert a == json.loads(run("eif", "describe", "--json", tmp_path / "c.eif").out)["Measurements"]
            assert run_local(tmp_path, "a.eif").returncode == 7
        finally:
            docker("rmi", "-f", ref)
