"""The seed scenario with software from Debian (examples/kms-https): an app image built from a
Debian root file system whose entrypoint decrypts its TLS key through the KMS proxy with the
AWS CLI (and calls KMS with boto3), then serves HTTPS through ingress, keeping its state on a
host service reached through egress "host"; the state survives a restart of the enclave. The
key policy allows Decrypt only for the EIF's PCR0; a changed image is refused and exits 1."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import BUILD, ROOT, run
from enclave_util import free_port
from test_build import static_enclaver_run, static_odyn
from test_kms_local import KmsLocal
from test_sources import docker, dockerd  # noqa: F401 (a fixture)

sys.path.insert(0, str(ROOT / "scripts"))
import mkimage  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local launcher needs root")
EXAMPLE = ROOT / "examples" / "kms-https"
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "AWS_DEFAULT_REGION=us-east-1"]




@pytest.fixture(scope="module")
def rootfs():
    p = subprocess.run([str(ROOT / "scripts" / "mkrootfs.sh")], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    return pathlib.Path(p.stdout.strip())


def build_image(d, rootfs, store_port, extra_env=()):
    app = d / "app"
    app.mkdir()
    for f in ("entrypoint.sh", "server.py"):
        (app / f).write_bytes((EXAMPLE / f).read_bytes())
        (app / f).chmod(0o755)
    for f in ("cert.pem", "key.pem.enc"):
        (app / f).write_bytes((d.parent / f).read_bytes())
    layer = mkimage.layer([("app", "d", b"", 0o755)] + [(f"app/{f.name}", "f", f.read_bytes(), f.stat().st_mode & 0o777)
                                                         for f in sorted(app.iterdir())])
    env = ENV + [f"STORE_URL=http://host:{store_port}/visits", *extra_env]
    mkimage.docker_archive(d / "image.tar", [rootfs, layer], {"config": {"Entrypoint": ["/app/entrypoint.sh"], "Env": env}},
                           tag="kms-https:app")
    text = (EXAMPLE / "enclaver.yaml").read_text().replace('app: "docker-archive:kms-https.tar:kms-https:app"', f'app: "docker-archive:{d}/image.tar"')
    (d / "enclaver.yaml").write_text(text)
    (d / "kernel").write_bytes(b"not a kernel")
    r = run("build", "-f", d / "enclaver.yaml", "--eif-only", d / "app.eif", "--kernel", d / "kernel", "--odyn",
            static_odyn())
    assert r.code == 0, r.err[-600:]
    return json.loads(r.out.split("EIF Info:\n", 1)[1])["Measurements"]["PCR0"]


def c_view(proc):
    """A Running around an already started process (for Running.get)."""
    r = Running.__new__(Running)
    r.proc = proc
    return r


class Running:
    def __init__(self, d, env):
        self.proc = subprocess.Popen([str(BUILD / "enclaver-run"), "--eif-file", str(d / "app.eif"), "--manifest-file",
                                      str(d / "enclaver.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)

    def get(self, cert, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return None
            p = subprocess.run(["curl", "-s", "--max-time", "5", "--cacert", str(cert), "https://127.0.0.1:8443/"],
                               capture_output=True, text=True)
            if p.returncode == 0 and p.stdout:
                return p.stdout
            time.sleep(0.3)
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err


def test_tls_key_from_kms_state_on_the_host(tmp_path, rootfs, dockerd):
    kms = KmsLocal(tmp_path / "state")
    store_port = free_port()
    store = subprocess.Popen([sys.executable, str(EXAMPLE / "store.py"), str(tmp_path / "store"), str(store_port)])
    try:
        # the TLS key, encrypted on the host with a key kms-local holds
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "2", "-nodes",
                        "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"), "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
        key = kms.aws("create-key", "--description", "TLS key of kms-https")["KeyMetadata"]["KeyId"]
        blob = kms.aws("encrypt", "--key-id", key, "--plaintext", f"fileb://{tmp_path}/key.pem", "--query",
                       "CiphertextBlob")
        import base64
        (tmp_path / "key.pem.enc").write_bytes(base64.b64decode(blob))
        (tmp_path / "key.pem").unlink()
        good = tmp_path / "good"
        good.mkdir()
        pcr0 = build_image(good, rootfs, store_port)
        policy = {"Version": "2012-10-17", "Statement": [
            {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Create*", "kms:Describe*", "kms:Put*", "kms:Get*", "kms:Encrypt"], "Resource": "*"},
            {"Sid": "only this image", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt",
             "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr0}}}]}
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        kms.aws("put-key-policy", "--key-id", key, "--policy-name", "default", "--policy", f"file://{tmp_path}/policy.json")
        # first run: the key comes from KMS, the page over TLS, the count from the host
        e = Running(good, kms.env)
        page = e.get(tmp_path / "cert.pem")
        code, out, err = e.stop()
        assert page == "Hello from the enclave over TLS; visits: 1\n", out + err
        assert "boto3: GenerateRandom gave 32 bytes through the KMS proxy" in out
        assert code == 109, err
        # a restart of the enclave: the state was outside it
        e = Running(good, kms.env)
        page = e.get(tmp_path / "cert.pem")
        e.stop()
        assert page == "Hello from the enclave over TLS; visits: 2\n"
        # the release image through Docker: enclaver run of it reaches the same kms-local and store
        r = run("build", "-f", good / "enclaver.yaml", "--kernel", good / "kernel", "--odyn", static_odyn(),
                "--enclaver-run", static_enclaver_run(), env=kms.env)
        assert r.code == 0, r
        try:
            c = subprocess.Popen([str(BUILD / "enclaver"), "run", "kms-https:enclave"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=kms.env)
            page = Running.get(c_view(c), tmp_path / "cert.pem")
            c.send_signal(signal.SIGINT)
            out, err = c.communicate(timeout=90)
            assert page == "Hello from the enclave over TLS; visits: 3\n", out + err
            assert c.returncode == 109 and "stopped on request" in err
        finally:
            docker("rmi", "-f", "kms-https:enclave")
        # the same app with one change: another PCR0, KMS refuses, the app's error and exit code come out
        changed = tmp_path / "changed"
        changed.mkdir()
        assert build_image(changed, rootfs, store_port, ["CHANGED=1"]) != pcr0
        p = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(changed / "app.eif"), "--manifest-file",
                            str(changed / "enclaver.yaml")], capture_output=True, text=True, timeout=180, env=kms.env)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "AccessDeniedException" in p.stdout and "KMS refused to decrypt the TLS key" in p.stdout
    finally:
        store.terminate()
        kms.stop()
