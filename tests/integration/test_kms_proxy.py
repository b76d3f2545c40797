"""The KMS path end to end in a local enclave: an app calls odyn's KMS proxy, which attaches an
attestation document, re-signs with role credentials from the IMDS stand-in, and reaches
kms-local over TLS through the egress tunnel; the key policy allows Decrypt only for the EIF's
PCR0. The host uses the AWS CLI against the same kms-local."""
import base64
import json
import os
import re
import subprocess
import time

import pytest

from conftest import BUILD, run
import enclave_util as eu
from test_kms_local import KmsLocal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local launcher needs root")

MANIFEST = eu.MANIFEST + """egress:
  allow:
    - 169.254.169.254
    - kms.*.amazonaws.com
kms_proxy:
  listen_port: 9999
"""


def pcr0(eif):
    return json.loads(run("eif", "describe", "--json", eif).out)["Measurements"]["PCR0"]


def policy_for(pcr):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": ["kms:Create*", "kms:Describe*", "kms:Put*", "kms:Get*", "kms:Encrypt"], "Resource": "*"},
        {"Sid": "enclave", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/enclaver-local-enclave"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"], "Resource": "*",
         "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr}}}]})


def enclave(d, kms, app, env_extra=None):
    eif = eu.make_eif(d, MANIFEST, app)
    env = dict(kms.env, **(env_extra or {}))
    return eif, env


def run_enclave(d, eif, env):
    return subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(eif), "--manifest-file",
                           str(d / "enclaver.yaml")], capture_output=True, text=True, timeout=120, env=env)


def answers(out):
    return [json.loads(l[len("kms-body: "):]) for l in out.splitlines() if l.startswith("kms-body: ")]


def test_decrypt_through_the_proxy_only_for_this_image(tmp_path):
    kms = KmsLocal(tmp_path / "state")
    try:
        key = kms.aws("create-key")["KeyMetadata"]["KeyId"]
        (tmp_path / "secret").write_bytes(b"TLS key of the enclave")
        ct = kms.aws("encrypt", "--key-id", key, "--plaintext", f"fileb://{tmp_path}/secret")["CiphertextBlob"]
        body = json.dumps({"CiphertextBlob": ct})
        d = tmp_path / "good"
        d.mkdir()
        eif = eu.make_eif(d, MANIFEST, ["kms", "2", "0", "TrentService.Decrypt", body])
        (tmp_path / "policy.json").write_text(policy_for(pcr0(eif)))
        kms.aws("put-key-policy", "--key-id", key, "--policy-name", "default", "--policy", f"file://{tmp_path}/policy.json")
        p = run_enclave(d, eif, kms.env)
        assert p.returncode == 0, p.stdout + p.stderr
        got = answers(p.stdout)
        assert len(got) == 2 and all(base64.b64decode(g["Plaintext"]) == b"TLS key of the enclave" for g in got), got
        assert all("CiphertextForRecipient" not in g for g in got)
        assert "Starting KMS proxy on 127.0.0.1:9999" in p.stdout
        # the same app with any change: another PCR0, refused by the key policy, status passed through
        d2 = tmp_path / "changed"
        d2.mkdir()
        eif2 = eu.make_eif(d2, MANIFEST, ["kms", "1", "0", "TrentService.Decrypt", body], env=("PATH=/bin:/sbin", "X=1"))
        assert pcr0(eif2) != pcr0(eif)
        p = run_enclave(d2, eif2, kms.env)
        assert p.returncode == 1, p.stdout
        assert answers(p.stdout)[0]["__type"] == "AccessDeniedException"
        assert "kms-status: HTTP/1.1 400" in p.stdout
    finally:
        kms.stop()


def test_credentials_refresh_and_proxy_errors(tmp_path):
    kms = KmsLocal(tmp_path / "state")
    try:
        key = kms.aws("create-key")["KeyMetadata"]["KeyId"]
        d = tmp_path / "e"
        d.mkdir()
        # 30-second role credentials, renewed in their last quarter: twelve calls over ~33 s
        body = json.dumps({"NumberOfBytes": 16})
        eif = eu.make_eif(d, MANIFEST, ["kms", "12", "3000", "TrentService.GenerateRandom", body])
        (tmp_path / "policy.json").write_text(policy_for(pcr0(eif)))
        kms.aws("put-key-policy", "--key-id", key, "--policy-name", "default", "--policy", f"file://{tmp_path}/policy.json")
        p = run_enclave(d, eif, dict(kms.env, ENCLAVER_IMDS_CREDENTIAL_SECONDS="30"))
        assert p.returncode == 0, p.stdout
        got = answers(p.stdout)
        assert len(got) == 12 and all(len(base64.b64decode(g["Plaintext"])) == 16 for g in got)
        assert p.stdout.count("fetched role credentials from IMDSv2") >= 2, p.stdout
    finally:
        kms.stop()
    # no kms-local: the proxy answers with a KMS-style error instead of dropping the connection
    d = tmp_path / "none"
    d.mkdir()
    eif = eu.make_eif(d, MANIFEST, ["kms", "1", "0", "TrentService.Decrypt", "{\"CiphertextBlob\":\"AA==\"}"])
    p = run_enclave(d, eif, kms.env)
    got = answers(p.stdout)
    assert got and got[0]["__type"] == "KMSProxyNetworkException", p.stdout
    assert "no kms-local runs with the state folder" in p.stderr


def test_kms_closing_a_kept_connection_between_calls(tmp_path):
    """The proxy keeps its TLS connection to KMS between calls; KMS closing it while it sits idle
    (here: kms-local restarting) costs the next call nothing but a new connection."""
    kms = KmsLocal(tmp_path / "state")
    try:
        body = json.dumps({"NumberOfBytes": 16})
        eif = eu.make_eif(tmp_path, MANIFEST, ["kms", "4", "4000", "TrentService.GenerateRandom", body])
        p = subprocess.Popen([str(BUILD / "enclaver-run"), "--eif-file", str(eif), "--manifest-file",
                              str(tmp_path / "enclaver.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=kms.env)
        time.sleep(2)  # the first call is answered; the second comes at 4 s
        kms.restart()
        time.sleep(4 - 0.3)  # and again between the second and the third
        kms.restart()
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, out + err
        got = answers(out)
        assert len(got) == 4 and all(len(base64.b64decode(g["Plaintext"])) == 16 for g in got), out
        # one connection made at the start and one after each restart: the last call reused one
        assert "kms proxy: 4 attested calls over 3 TLS connections to KMS," in out, out
    finally:
        kms.stop()


def test_many_calls_on_kept_connections_one_client_and_sixteen(tmp_path):
    """An app that keeps its connection to the proxy, as the SDKs do, gets every answer on it;
    one client's calls share one TLS connection to KMS and one attestation document, and 16
    clients at once, more than the workers waiting, are all answered."""
    kms = KmsLocal(tmp_path / "state")
    try:
        body = json.dumps({"NumberOfBytes": 16}, separators=(",", ":"))
        eif = eu.make_eif(tmp_path, MANIFEST, ["seq", f"kms-bench 24 TrentService.GenerateRandom {body} 1",
                                               f"kms-bench 96 TrentService.GenerateRandom {body} 16"])
        p = run_enclave(tmp_path, eif, kms.env)
        assert p.returncode == 0, p.stdout + p.stderr
        runs = [l for l in p.stdout.splitlines() if l.startswith("kms-bench:")]
        assert runs[0].startswith("kms-bench: n=24 ok=24 "), p.stdout
        assert runs[1].startswith("kms-bench: n=96 ok=96 "), p.stdout
        # the one client's 24 calls went over one TLS connection; 16 clients opened at most 16
        used = re.search(r"kms proxy: 120 attested calls over (\d+) TLS connections to KMS, 1 attestation "
                         r"documents over 1 NSM connections", p.stdout)
        assert used and 1 <= int(used.group(1)) <= 16, p.stdout
    finally:
        kms.stop()


def test_a_kept_connection_with_a_refused_and_a_split_request(tmp_path):
    """The worker that answered a kept connection reads the app's next request itself: one
    written in two parts 5 ms apart is put together; one it does not take (no signature:
    refused) goes back to the loop, which answers it as ever; the connection serves on."""
    kms = KmsLocal(tmp_path / "state")
    try:
        body = json.dumps({"NumberOfBytes": 16}, separators=(",", ":"))
        eif = eu.make_eif(tmp_path, MANIFEST, ["kms-mixed", "TrentService.GenerateRandom", body])
        p = run_enclave(tmp_path, eif, kms.env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "kms-mixed: 200 200 400 200" in p.stdout, p.stdout
        assert "kms proxy: 3 attested calls over 1 TLS connections to KMS," in p.stdout, p.stdout
    finally:
        kms.stop()


def test_role_credentials_are_served_to_the_enclave_only(tmp_path):
    # The IMDS stand-in hands out the enclave role's credentials: it listens on no TCP port any
    # local user could reach, only on a Unix socket that root alone may connect to.
    import stat
    eif = eu.make_eif(tmp_path, MANIFEST, ["sleep", "600"])
    p = subprocess.Popen([str(BUILD / "enclaver-run"), "--eif-file", str(eif), "--manifest-file",
                          str(tmp_path / "enclaver.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        eu.wait_vsock(p.pid, 17000).close()
        sock = eu.state_dir(p.pid) / "imds.sock"
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
        inodes = {os.readlink(f"/proc/{p.pid}/fd/{f}") for f in os.listdir(f"/proc/{p.pid}/fd")}
        listening = set()
        for table in ("tcp", "tcp6"):
            for line in open(f"/proc/{p.pid}/net/{table}").read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening.add(f"socket:[{fields[9]}]")
        assert not (inodes & listening), "enclaver-run listens on TCP with no ingress port in the manifest"
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
                            f"import socket; socket.socket(socket.AF_UNIX).connect({str(sock)!r})"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr
    finally:
        p.terminate()
        p.communicate(timeout=30)
