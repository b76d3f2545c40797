"""Attestation end to end: `enclaver attest` on AWS's real documents, and an app in the local
enclave asking odyn's API for a document that `enclaver attest verify-eif` accepts with the
development root and refuses against another EIF."""
import base64
import json
import os
import subprocess

import pytest

from conftest import BUILD, VECTORS, run
import enclave_util as eu

PROD_PCR0 = "a6cdfede5b1e7950de33218995add7d8f1f6e059c9cccd204316e69feaa2ce54f6f9ff6f5992db0f1ca6135f9b095b85"
PROD, DEBUG, BAD = (VECTORS / n for n in ("attestation-prod-valid.cose", "attestation-debug-valid.cose",
                                          "attestation-bad-signature.cose"))


def one_error(r):
    lines = [l for l in r.err.splitlines() if l.strip()]
    assert len(lines) == 1, r
    return lines[0]


def test_real_documents():
    r = run("attest", "verify", PROD, "--at", "2024-07-31T20:18:27Z", "--pcr", f"0={PROD_PCR0.upper()}")
    assert r.code == 0 and "verified: i-0809070ca8037095f-enc01910a70380dca7e" in r.out, r
    # now, its chain has expired
    r = run("attest", "verify", PROD)
    assert r.code == 1 and "certificate has expired" in one_error(r)
    assert "to check a kept document as of when it was made, add --at document" in r.err
    # debug mode only when allowed
    r = run("attest", "verify", DEBUG, "--at", "document")
    assert r.code == 1 and "debug-mode enclave" in one_error(r) and "--allow-debug" in r.err
    r = run("attest", "verify", DEBUG, "--at", "document", "--allow-debug", "--nonce", "00" * 19 + "01")
    assert r.code == 0, r
    r = run("attest", "verify", DEBUG, "--at", "document", "--allow-debug", "--nonce", "00" * 20)
    assert r.code == 1 and "nonce" in one_error(r)
    r = run("attest", "verify", BAD, "--at", "document")
    assert r.code == 1 and "signature does not verify" in one_error(r)
    # the wrong PCR names both values
    r = run("attest", "verify", PROD, "--at", "document", "--pcr", "2=" + "00" * 48)
    assert r.code == 1 and "PCR2 is 96305fcb" in one_error(r) and "expected 0000" in r.err
    # the development root does not anchor AWS's documents
    r = run("attest", "verify", PROD, "--at", "document", "--root", VECTORS / "cms-hello-key.pem")
    assert r.code == 1 and "not a PEM certificate" in one_error(r)


def test_json_base64_and_inspect(tmp_path):
    (tmp_path / "doc.b64").write_text(base64.b64encode(PROD.read_bytes()).decode() + "\n")
    r = run("attest", "verify", tmp_path / "doc.b64", "--at", "document", "--json")
    assert r.code == 0, r
    j = json.loads(r.out)
    assert j["valid"] is True and j["pcrs"]["0"] == PROD_PCR0 and j["debug_mode"] is False
    assert j["cabundle"][0]["sha256"] == "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    r = run("attest", "verify", PROD, "--json")
    assert r.code == 1 and json.loads(r.out) == {"valid": False, "reason": r.err.split(": ", 3)[-1].strip()}
    r = run("attest", "inspect", DEBUG, "--json")
    j = json.loads(r.out)
    assert j["public_key"] == b"dummy".hex() and j["debug_mode"] is True and len(j["pcrs"]) == 16
    r = run("attest", "inspect", DEBUG)
    assert "module_id:   i-0bbf1bfe232b8c2ce-enc0191ba35c9d1b77a" in r.out and "debug mode:  yes" in r.out


def test_wrapped_and_unpadded_base64_as_base64_and_openssl_write_it(tmp_path):
    raw = PROD.read_bytes()
    wrapped = subprocess.run(["base64"], input=raw, capture_output=True, check=True).stdout  # 76 a line
    assert wrapped.count(b"\n") > 10
    one_line = base64.b64encode(raw)
    variants = {"wrapped": wrapped, "openssl": subprocess.run(["openssl", "base64"], input=raw, capture_output=True,
                                                              check=True).stdout,
                "crlf": wrapped.replace(b"\n", b"\r\n"), "unpadded": one_line.rstrip(b"=") + b"\n"}
    for name, text in variants.items():
        (tmp_path / name).write_bytes(text)
        r = run("attest", "verify", tmp_path / name, "--at", "document")
        assert r.code == 0 and r.out.startswith("verified: "), (name, r)
    r = subprocess.run([str(BUILD / "enclaver"), "attest", "inspect", "-"], input=wrapped, capture_output=True)
    assert r.returncode == 0 and b"module_id:" in r.stdout, r.stderr
    # base64 that is cut short says so, not "not CBOR"
    (tmp_path / "cut").write_bytes(one_line[:-3] + b"\n")
    r = run("attest", "verify", tmp_path / "cut", "--at", "document")
    assert r.code == 1 and "neither CBOR nor base64" in one_error(r) and str(tmp_path / "cut") in r.err


def test_flipped_bits_refused(tmp_path):
    data = PROD.read_bytes()
    # a sample across the whole document (the unit test flips every byte)
    for i in range(0, len(data), 97):
        b = bytearray(data)
        b[i] ^= 1 << (i % 8)
        (tmp_path / "x.cose").write_bytes(bytes(b))
        r = run("attest", "verify", tmp_path / "x.cose", "--at", "2024-07-31T20:18:27Z")
        assert r.code == 1, (i, r)


def api_doc(out):
    """The document the probe's `api` call printed, and its status line."""
    status = [l for l in out.splitlines() if l.startswith("api-status: ")]
    body = "".join(l[len("api-body: "):] for l in out.splitlines() if l.startswith("api-body: "))
    return status, bytes.fromhex(body)


@pytest.mark.skipif(os.geteuid() != 0, reason="the local launcher needs root")
def test_document_from_the_local_enclave(tmp_path):
    state = tmp_path / "state"
    port = 9444
    manifest = eu.MANIFEST + f"api:\n  listen_port: {port}\n"
    nonce = os.urandom(16)
    body = json.dumps({"nonce": base64.b64encode(nonce).decode(), "user_data": base64.b64encode(b"hello").decode()})
    eif = eu.make_eif(tmp_path, manifest, ["api", str(port), "POST", "/v1/attestation", body,
                                          str(port), "GET", "/v1/attestation", "",
                                          str(port), "POST", "/nope", "{}",
                                          str(port), "POST", "/v1/attestation", '{"nonce": "***"}',
                                          str(port), "POST", "/v1/attestation",
                                          json.dumps({"user_data": base64.b64encode(b"x" * 1025).decode()})])
    env = dict(os.environ, ENCLAVER_STATE_DIR=str(state), ENCLAVER_INSTANCE_ID="i-0123456789abcdef0")
    p = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(eif), "--manifest-file",
                        str(tmp_path / "enclaver.yaml")], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert "odyn: info: Seeding /dev/random with entropy from nsm device" in p.stdout  # GetRandom at boot
    statuses = [l for l in p.stdout.splitlines() if l.startswith("api-status: ")]
    assert statuses == ["api-status: HTTP/1.1 200 OK", "api-status: HTTP/1.1 405 Method Not Allowed",
                        "api-status: HTTP/1.1 404 Not Found", "api-status: HTTP/1.1 400 Bad Request",
                        "api-status: HTTP/1.1 400 Bad Request"], p.stdout
    assert "api-type: application/cbor" in p.stdout
    first = p.stdout.split("api-end")[0]
    _, doc = api_doc(first)
    (tmp_path / "doc.cose").write_bytes(doc)
    root = state / "dev-ca" / "root.pem"
    assert root.exists() and oct(os.stat(state / "dev-ca" / "root.key").st_mode & 0o777) == "0o600"
    r = run("attest", "verify-eif", eif, tmp_path / "doc.cose", "--root", root, "--nonce", nonce.hex(),
            "--user-data", b"hello".hex())
    assert r.code == 0, r
    r = run("attest", "inspect", tmp_path / "doc.cose", "--json")
    j = json.loads(r.out)
    assert j["module_id"].startswith("i-0123456789abcdef0-enc") and len(j["pcrs"]) == 16
    assert "not AWS" in j["cabundle"][0]["subject"]
    # the same through --dev-root, which finds the root in ENCLAVER_STATE_DIR
    r = run("attest", "verify-eif", eif, tmp_path / "doc.cose", "--dev-root", "--nonce", nonce.hex(),
            env=dict(os.environ, ENCLAVER_STATE_DIR=str(state)))
    assert r.code == 0, r
    # another nonce, AWS's root, another EIF: refused, each with its reason
    r = run("attest", "verify-eif", eif, tmp_path / "doc.cose", "--root", root, "--nonce", "00" * 16)
    assert r.code == 1 and "nonce" in one_error(r)
    r = run("attest", "verify-eif", eif, tmp_path / "doc.cose", "--aws-root")
    assert r.code == 1 and "certificate chain" in one_error(r)
    assert "signed by enclaver's local development CA (a local enclave's): verify it with --dev-root" in r.err
    (tmp_path / "other").mkdir()
    other = eu.make_eif(tmp_path / "other", manifest, ["exit", "0"])
    r = run("attest", "verify-eif", other, tmp_path / "doc.cose", "--root", root)
    assert r.code == 1 and "PCR0 is" in one_error(r), r
