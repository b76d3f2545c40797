"""enclaver kms-local with real clients: Debian's AWS CLI v2 and boto3 on the host create keys,
set policies and encrypt; Recipient documents from the NSM emulator get CiphertextForRecipient
that `openssl cms -decrypt` opens, only when the key policy's PCR0 matches; bad signatures,
other roots, expired and debug-mode documents are refused; keys survive a restart."""
import base64
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, run
from enclave_util import free_port

AWS = "/usr/bin/aws"




class KmsLocal:
    def __init__(self, state, *args):
        self.state, self.port, self.tls_port, self.args = state, free_port(), free_port(), args
        self.env = dict(os.environ, ENCLAVER_STATE_DIR=str(state))
        self.start()
        deadline = time.time() + 10
        while not (state / "endpoints" / "kms.json").exists():
            assert time.time() < deadline and self.proc.poll() is None, self.proc.communicate()
            time.sleep(0.05)
        exports = run("kms-local", "env", env=self.env).out
        self.creds = dict(l[len("export "):].split("=", 1) for l in exports.splitlines() if l.startswith("export "))
        assert self.creds["AWS_ENDPOINT_URL_KMS"] == f"http://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen([str(BUILD / "enclaver"), "kms-local", "--listen", f"127.0.0.1:{self.port}",
                                      "--tls-listen", f"127.0.0.1:{self.tls_port}", *self.args],
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def restart(self):
        """Stopped (every connection to it closed) and started again on the same ports and state."""
        self.stop()
        self.start()
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=1).close()
                return
            except OSError:
                assert time.time() < deadline and self.proc.poll() is None, self.proc.communicate()
                time.sleep(0.05)

    def aws(self, *args, creds=None, check=True):
        env = dict(os.environ, **(creds or self.creds), AWS_PAGER="", AWS_CONFIG_FILE="/dev/null",
                   AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        p = subprocess.run([AWS, "--endpoint-url", f"http://127.0.0.1:{self.port}", "--output", "json", "kms",
                            *map(str, args)], env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, p.stderr
            return json.loads(p.stdout) if p.stdout.strip() else {}
        return p

    def call(self, op, body):
        """A KMS JSON 1.1 request signed by botocore's SigV4 signer (Debian's botocore predates
        Recipient in its KMS model, so the request is built here). Errors raise with their __type."""
        import urllib.request
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = f"http://127.0.0.1:{self.port}/"
        req = AWSRequest(method="POST", url=url, data=json.dumps(body).encode(), headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{op}"})
        SigV4Auth(Credentials(self.creds["AWS_ACCESS_KEY_ID"], self.creds["AWS_SECRET_ACCESS_KEY"]), "kms",
                  self.creds["AWS_DEFAULT_REGION"]).add_auth(req)
        r = urllib.request.Request(url, data=req.body, headers=dict(req.headers), method="POST")
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            err = json.loads(e.read())
            raise RuntimeError(f"{err['__type']}: {err['message']}") from None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


@pytest.fixture
def kms(tmp_path):
    k = KmsLocal(tmp_path / "state")
    yield k
    if k.proc.poll() is None:
        k.stop()


def test_aws_cli_round_trips_and_persistence(kms, tmp_path):
    key = kms.aws("create-key", "--description", "vault unseal")["KeyMetadata"]
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT" and key["Arn"].endswith(key["KeyId"])
    kms.aws("create-alias", "--alias-name", "alias/vault", "--target-key-id", key["KeyId"])
    assert [a["AliasName"] for a in kms.aws("list-aliases")["Aliases"]] == ["alias/vault"]
    assert kms.aws("describe-key", "--key-id", "alias/vault")["KeyMetadata"]["KeyId"] == key["KeyId"]
    (tmp_path / "p").write_bytes(b"the TLS private key")
    ct = kms.aws("encrypt", "--key-id", "alias/vault", "--plaintext", f"fileb://{tmp_path}/p",
                 "--encryption-context", "purpose=tls")["CiphertextBlob"]
    (tmp_path / "ct").write_bytes(base64.b64decode(ct))
    pt = kms.aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct", "--encryption-context", "purpose=tls")
    assert base64.b64decode(pt["Plaintext"]) == b"the TLS private key" and pt["KeyId"] == key["Arn"]
    p = kms.aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct", check=False)
    assert p.returncode != 0 and "InvalidCiphertextException" in p.stderr
    # data keys, key pairs, random, re-encryption
    dk = kms.aws("generate-data-key", "--key-id", key["KeyId"], "--key-spec", "AES_256")
    assert len(base64.b64decode(dk["Plaintext"])) == 32
    (tmp_path / "dk").write_bytes(base64.b64decode(dk["CiphertextBlob"]))
    assert kms.aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/dk")["Plaintext"] == dk["Plaintext"]
    assert "Plaintext" not in kms.aws("generate-data-key-without-plaintext", "--key-id", key["KeyId"],
                                      "--number-of-bytes", "16")
    pair = kms.aws("generate-data-key-pair", "--key-id", key["KeyId"], "--key-pair-spec", "RSA_2048")
    der = base64.b64decode(pair["PrivateKeyPlaintext"])
    spki = subprocess.run(["openssl", "pkey", "-inform", "DER", "-pubout", "-outform", "DER"], input=der,
                          capture_output=True, check=True).stdout
    assert spki == base64.b64decode(pair["PublicKey"])
    assert len(base64.b64decode(kms.aws("generate-random", "--number-of-bytes", "64")["Plaintext"])) == 64
    other = kms.aws("create-key")["KeyMetadata"]["KeyId"]
    re = kms.aws("re-encrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct", "--source-encryption-context",
                 "purpose=tls", "--destination-key-id", other)
    assert re["KeyId"].endswith(other) and re["SourceKeyId"] == key["Arn"]
    # a restart keeps everything; material is sealed on disk
    code, _ = kms.stop()
    assert code == 0 and not (kms.state / "endpoints" / "kms.json").exists()
    for f in ("keys.json", "master.key", "credentials.json"):
        assert oct(os.stat(kms.state / "kms" / f).st_mode & 0o777) == "0o600", f
    stored = json.loads((kms.state / "kms" / "keys.json").read_text())
    assert len(stored["Keys"]) == 2 and all(len(base64.b64decode(k["Material"])) == 60 for k in stored["Keys"])
    again = KmsLocal(kms.state)
    try:
        pt = again.aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct", "--encryption-context", "purpose=tls")
        assert base64.b64decode(pt["Plaintext"]) == b"the TLS private key"
        assert len(again.aws("list-keys")["Keys"]) == 2
    finally:
        again.stop()


def test_signatures_and_credentials_are_checked(kms):
    bad = dict(kms.creds, AWS_SECRET_ACCESS_KEY="x" * 40)
    p = kms.aws("list-keys", creds=bad, check=False)
    assert p.returncode != 0 and "InvalidSignatureException" in p.stderr
    unknown = dict(kms.creds, AWS_ACCESS_KEY_ID="AKIAUNKNOWNUNKNOWN00")
    p = kms.aws("list-keys", creds=unknown, check=False)
    assert p.returncode != 0 and "UnrecognizedClientException" in p.stderr
    wrong_region = dict(kms.creds, AWS_DEFAULT_REGION="eu-west-1", AWS_REGION="eu-west-1")
    p = kms.aws("list-keys", creds=wrong_region, check=False)
    assert p.returncode != 0 and "InvalidSignatureException" in p.stderr


def test_boto3_on_the_host(kms):
    code = f"""
import boto3
kms = boto3.client("kms", endpoint_url="http://127.0.0.1:{kms.port}")
k = kms.create_key(Description="boto3")["KeyMetadata"]["KeyId"]
ct = kms.encrypt(KeyId=k, Plaintext=b"from boto3", EncryptionContext={{"a": "b"}})["CiphertextBlob"]
print(kms.decrypt(CiphertextBlob=ct, EncryptionContext={{"a": "b"}})["Plaintext"].decode())
try:
    kms.decrypt(CiphertextBlob=ct[:-1] + bytes([ct[-1] ^ 1]), EncryptionContext={{"a": "b"}})
except kms.exceptions.InvalidCiphertextException:
    print("refused")
"""
    env = dict(os.environ, **kms.creds)
    p = subprocess.run(["/usr/bin/python3", "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.split() == ["from", "boto3", "refused"], p.stderr


def recipient_key(d):
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    str(d / "enclave.pem")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(d / "enclave.pem"), "-pubout", "-outform", "DER", "-out",
                    str(d / "enclave.spki")], check=True, capture_output=True)


def document(state, pcr0, d, name, *extra):
    p = subprocess.run([str(BUILD / "tests" / "nsm-doc"), str(state), pcr0, str(d / "enclave.spki"), str(d / name),
                        *extra], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return base64.b64encode((d / name).read_bytes()).decode()


def test_recipient_and_pcr0_policy(tmp_path):
    kms = KmsLocal(tmp_path / "state", "--max-document-age", "3")
    try:
        good = hashlib.sha384(b"the measured image").hexdigest()
        bad = hashlib.sha384(b"an image with a change").hexdigest()
        key = kms.aws("create-key")["KeyMetadata"]
        policy = {"Version": "2012-10-17", "Statement": [
            {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": ["kms:Create*", "kms:Describe*", "kms:Put*", "kms:Get*", "kms:Encrypt", "kms:GenerateDataKey*"],
             "Resource": "*"},
            {"Sid": "decrypt only in the enclave", "Effect": "Allow", "Principal": {"AWS": "*"},
             "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": good.upper(),
                                                      "kms:RecipientAttestation:ImageSha384": good}}}]}
        (tmp_path / "policy.json").write_text(json.dumps(policy))
        kms.aws("put-key-policy", "--key-id", key["KeyId"], "--policy-name", "default", "--policy",
                f"file://{tmp_path}/policy.json")
        assert json.loads(kms.aws("get-key-policy", "--key-id", key["KeyId"], "--policy-name", "default")["Policy"]) == policy
        (tmp_path / "p").write_bytes(b"vault unseal key")
        ct = base64.b64decode(kms.aws("encrypt", "--key-id", key["KeyId"], "--plaintext", f"fileb://{tmp_path}/p")["CiphertextBlob"])
        (tmp_path / "ct").write_bytes(ct)
        recipient_key(tmp_path)

        def decrypt(doc):
            return kms.call("Decrypt", {"CiphertextBlob": base64.b64encode(ct).decode(), "Recipient": {
                "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": doc}})

        # the measured image: the plaintext comes back for the enclave's key only
        r = decrypt(document(tmp_path / "state", good, tmp_path, "good.cose"))
        assert "Plaintext" not in r or not r["Plaintext"]
        (tmp_path / "cfr.ber").write_bytes(base64.b64decode(r["CiphertextForRecipient"]))
        opened = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "cfr.ber"),
                                 "-inkey", str(tmp_path / "enclave.pem"), "-binary"], capture_output=True, check=True)
        assert opened.stdout == b"vault unseal key"
        # anything else is refused, each for its reason
        refusals = {
            "changed image": (document(tmp_path / "state", bad, tmp_path, "bad.cose"), "AccessDeniedException"),
            "debug mode": (document(tmp_path / "state", good, tmp_path, "dbg.cose", "debug"), "debug-mode"),
            "another root": (document(tmp_path / "other", good, tmp_path, "other.cose"), "not valid"),
        }
        sig = bytearray((tmp_path / "good.cose").read_bytes())
        sig[-3] ^= 1
        refusals["bad signature"] = (base64.b64encode(bytes(sig)).decode(), "signature")
        for what, (doc, expect) in refusals.items():
            with pytest.raises(Exception) as e:
                decrypt(doc)
            assert expect in str(e.value), (what, str(e.value))
        # no Recipient: the conditional statement does not apply
        p = kms.aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct", check=False)
        assert p.returncode != 0 and "AccessDeniedException" in p.stderr
        # a document older than --max-document-age
        stale = document(tmp_path / "state", good, tmp_path, "stale.cose")
        time.sleep(4)
        with pytest.raises(Exception) as e:
            decrypt(stale)
        assert "expired" in str(e.value)
        # GenerateDataKey with a Recipient: the key for the enclave, the blob for storage
        dk = kms.call("GenerateDataKey", {"KeyId": key["KeyId"], "KeySpec": "AES_256", "Recipient": {
            "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            "AttestationDocument": document(tmp_path / "state", good, tmp_path, "g2.cose")}})
        assert not dk.get("Plaintext") and dk["CiphertextBlob"] and dk["CiphertextForRecipient"]
    finally:
        kms.stop()


def test_idle_https_connections_neither_hang_it_nor_outlive_sigterm(kms):
    # Thousands of HTTPS connections that never say a word: kms-local caps them, keeps serving,
    # and SIGTERM still ends it at once.
    ep = json.loads((kms.state / "endpoints" / "kms.json").read_text())
    host, port = ep["https"].rsplit(":", 1)
    idle = []
    for _ in range(2000):
        idle.append(socket.create_connection((host, int(port)), timeout=5))
    assert len(kms.call("GenerateRandom", {"NumberOfBytes": 16})["Plaintext"]) > 0
    code, err = kms.stop()
    for s in idle:
        s.close()
    assert code == 0, err
    assert "HTTPS: 512 connections open, the limit: refusing new ones until some close" in err


def test_a_second_instance_on_one_state_folder_refuses_to_start(kms, tmp_path):
    # Two kms-local on one folder would each save the key store from their own copy and lose
    # keys the other had acknowledged: the second stops at once, naming the first.
    key = kms.aws("create-key")["KeyMetadata"]["KeyId"]
    p = subprocess.run([str(BUILD / "enclaver"), "kms-local", "--listen", f"127.0.0.1:{free_port()}"],
                       env=kms.env, capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"another kms-local (pid {kms.proc.pid}) serves the state folder" in lines[0], p.stderr
    key2 = kms.aws("create-key")["KeyMetadata"]["KeyId"]
    code, _ = kms.stop()
    again = KmsLocal(kms.state)
    try:
        ids = {k["KeyId"] for k in again.aws("list-keys")["Keys"]}
        assert {key, key2} <= ids
    finally:
        again.stop()


def test_env_names_the_running_instances_port(kms):
    exports = run("kms-local", "env", env=kms.env).out
    assert f"export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:{kms.port}\n" in exports


def test_json_start_line_on_kernel_picked_ports_and_json_env(tmp_path):
    state = tmp_path / "state"
    env = dict(os.environ, ENCLAVER_STATE_DIR=str(state))
    p = subprocess.Popen([str(BUILD / "enclaver"), "kms-local", "--listen", "127.0.0.1:0", "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = json.loads(p.stdout.readline())  # written once it serves
        http, https = line["Http"], line["Https"]
        assert http.startswith("http://127.0.0.1:") and https.startswith("https://127.0.0.1:"), line
        assert line["Region"] == "us-east-1" and line["State"] == str(state) and line["Keys"] == 0
        assert line["Pid"] == p.pid and line["AttestationRoot"] == "dev"
        assert int(http.rsplit(":", 1)[1]) > 0 and int(https.rsplit(":", 1)[1]) > 0
        r = run("kms-local", "env", "--json", env=env)
        settings = json.loads(r.out)
        assert settings["AWS_ENDPOINT_URL_KMS"] == http and settings["AWS_REGION"] == "us-east-1", settings
        assert settings["AWS_CA_BUNDLE"] == str(state / "dev-ca" / "root.pem")
        # the settings work: a key is made with them and the start line's address
        out = subprocess.run([AWS, "kms", "create-key", "--endpoint-url", http, "--query", "KeyMetadata.KeyId",
                              "--output", "text"], env=dict(os.environ, AWS_CONFIG_FILE="/dev/null",
                              AWS_SHARED_CREDENTIALS_FILE="/dev/null", **settings), capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and len(out.stdout.strip()) == 36, out
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_keys_are_disabled_enabled_and_scheduled_for_deletion_as_in_kms(kms, tmp_path):
    key = kms.aws("create-key")["KeyMetadata"]
    kid, arn = key["KeyId"], key["Arn"]
    (tmp_path / "p").write_bytes(b"sealed before")
    (tmp_path / "ct").write_bytes(base64.b64decode(
        kms.aws("encrypt", "--key-id", kid, "--plaintext", f"fileb://{tmp_path}/p")["CiphertextBlob"]))

    def refused(*args):
        p = kms.aws(*args, check=False)
        assert p.returncode != 0, p.stdout
        return p.stderr

    kms.aws("disable-key", "--key-id", kid)
    assert kms.aws("describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "Disabled"
    assert f"(DisabledException) when calling the Encrypt operation: {arn} is disabled." in refused(
        "encrypt", "--key-id", kid, "--plaintext", f"fileb://{tmp_path}/p")
    assert "DisabledException" in refused("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct")
    assert "DisabledException" in refused("generate-data-key", "--key-id", kid, "--key-spec", "AES_256")
    kms.aws("enable-key", "--key-id", kid)
    assert base64.b64decode(kms.aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct")["Plaintext"]) == \
        b"sealed before"

    assert "between 7 and 30" in refused("schedule-key-deletion", "--key-id", kid, "--pending-window-in-days", "6")
    before = time.time()
    s = kms.aws("schedule-key-deletion", "--key-id", kid, "--pending-window-in-days", "7")
    assert s["KeyId"] == arn and s["KeyState"] == "PendingDeletion" and s["PendingWindowInDays"] == 7
    when = datetime.datetime.fromisoformat(s["DeletionDate"]).timestamp()  # the CLI prints dates in ISO 8601
    assert before + 7 * 86400 - 5 <= when <= time.time() + 7 * 86400 + 5
    meta = kms.aws("describe-key", "--key-id", kid)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["DeletionDate"] == s["DeletionDate"]
    assert not meta["Enabled"] and kid in {k["KeyId"] for k in kms.aws("list-keys")["Keys"]}
    assert f"(KMSInvalidStateException) when calling the Decrypt operation: {arn} is pending deletion." in \
        refused("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct")
    assert "KMSInvalidStateException" in refused("enable-key", "--key-id", kid)
    assert "KMSInvalidStateException" in refused("schedule-key-deletion", "--key-id", kid)
    assert kms.aws("cancel-key-deletion", "--key-id", kid)["KeyId"] == arn
    assert kms.aws("describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "Disabled"
    assert "is not pending deletion" in refused("cancel-key-deletion", "--key-id", kid)
    kms.aws("enable-key", "--key-id", kid)
    assert kms.aws("describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "Enabled"
    # the state survives a restart
    kms.aws("disable-key", "--key-id", kid)
    kms.restart()
    assert kms.aws("describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "Disabled"

    # the key policy decides who may change the state, and a refused caller learns no state
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["kms:Encrypt", "kms:DescribeKey"],
        "Resource": "*"}]})
    other = kms.aws("create-key", "--policy", policy)["KeyMetadata"]["KeyId"]
    for op in ("disable-key", "schedule-key-deletion"):
        assert f"kms:{''.join(w.title() for w in op.split('-'))}" in refused(op, "--key-id", other)
    assert kms.aws("describe-key", "--key-id", other)["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_key_past_its_deletion_date_is_gone_with_its_aliases(kms, tmp_path):
    kid = kms.aws("create-key")["KeyMetadata"]["KeyId"]
    keep = kms.aws("create-key")["KeyMetadata"]["KeyId"]
    kms.aws("create-alias", "--alias-name", "alias/doomed", "--target-key-id", kid)
    kms.aws("create-alias", "--alias-name", "alias/kept", "--target-key-id", keep)
    (tmp_path / "p").write_bytes(b"x")
    (tmp_path / "ct").write_bytes(base64.b64decode(
        kms.aws("encrypt", "--key-id", kid, "--plaintext", f"fileb://{tmp_path}/p")["CiphertextBlob"]))
    kms.aws("schedule-key-deletion", "--key-id", kid, "--pending-window-in-days", "7")
    # seven days pass: the deletion date, moved into the past while kms-local is stopped
    kms.stop()
    path = kms.state / "kms" / "keys.json"
    stored = json.loads(path.read_text())
    for k in stored["Keys"]:
        if k["KeyId"] == kid:
            k["DeletionDate"] = int(time.time()) - 1
    path.write_text(json.dumps(stored))
    kms.start()
    deadline = time.time() + 10
    while kms.aws("list-keys", check=False).returncode != 0:
        assert time.time() < deadline
        time.sleep(0.05)
    assert {k["KeyId"] for k in kms.aws("list-keys")["Keys"]} == {keep}
    assert [a["AliasName"] for a in kms.aws("list-aliases")["Aliases"]] == ["alias/kept"]
    assert "NotFoundException" in kms.aws("describe-key", "--key-id", kid, check=False).stderr
    assert "InvalidCiphertextException" in kms.aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path}/ct",
                                                   check=False).stderr
    stored = json.loads(path.read_text())
    assert [k["KeyId"] for k in stored["Keys"]] == [keep]


def test_a_region_other_than_the_state_folders_is_refused(kms):
    kms.aws("create-key")
    for args in (("kms-local", "env", "--region", "eu-west-1"),):
        p = run(*args, env=kms.env)
        assert p.code == 1 and p.err.count("\n") == 1, p.err
        assert "--region eu-west-1: the local KMS in" in p.err and "serves us-east-1" in p.err
    kms.stop()
    p = subprocess.run([str(BUILD / "enclaver"), "kms-local", "--listen", "127.0.0.1:0", "--region", "eu-west-1"],
                       env=kms.env, capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and "give --region us-east-1" in p.stderr, p.stderr
    assert not (kms.state / "endpoints" / "kms.json").exists()


@pytest.mark.parametrize("cli", ["/usr/bin/aws", "v1"])
def test_env_makes_plain_aws_kms_reach_it_with_the_clis_users_have(kms, tmp_path, cli):
    """Debian 12's AWS CLI (2.9) and 1.x ignore AWS_ENDPOINT_URL_KMS; after eval of `env`, plain
    `aws kms ...` still reaches kms-local, a profile set before does not override the keys, and
    with kms-local stopped the call fails naming the local endpoint instead of going elsewhere."""
    bindir = "/usr/bin" if cli == "/usr/bin/aws" else None
    if bindir is None:
        v1 = shutil.which("aws", path=os.environ["PATH"].replace("/usr/bin", "/nonexistent"))
        if not v1:
            pytest.skip("no AWS CLI 1.x on this machine")
        bindir = os.path.dirname(v1)
    (tmp_path / "config").write_text("[profile elsewhere]\nregion = ap-south-1\n")
    script = f'''
        export AWS_PROFILE=elsewhere AWS_SESSION_TOKEN=stale
        eval "$("{BUILD}/enclaver" kms-local env)"
        PATH={bindir}:$PATH
        aws --version 2>&1
        aws kms create-key --description from-the-shell --query KeyMetadata.Arn --output text
        aws --output text kms list-keys --query 'length(Keys)'
    '''
    env = dict(kms.env, AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_PAGER="")
    p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    version, arn, count = (p.stdout.split("\n") + ["", "", ""])[:3]
    assert version.startswith("aws-cli/2.9" if cli == "/usr/bin/aws" else "aws-cli/1."), version
    assert arn.startswith("arn:aws:kms:us-east-1:111122223333:key/") and count == "1", p.stdout
    kms.stop()
    p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "Could not connect to the endpoint URL: \"http://127.0.0.1:" in p.stderr, p.stderr
