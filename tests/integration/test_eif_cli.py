"""enclaver eif build/describe/pcr/extract as a user runs them, checked against the spec's
vectors, an independent Python reference, OpenSSL and python-cryptography."""
import hashlib
import json
import os
import random
import subprocess

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from conftest import build_t9, run
import nitro_ref as ref


def test_t9_byte_for_byte(t9):
    r = build_t9(t9)
    assert r.code == 0, r
    data = (t9 / "t9.eif").read_bytes()
    assert len(data) == 5411
    assert hashlib.sha256(data).hexdigest() == ref.T9_SHA256
    m = json.loads(r.out)["Measurements"]
    assert m == {"HashAlgorithm": "Sha384 { ... }", **ref.T9_PCRS}


def test_t9_with_inline_cmdline(t9):
    r = build_t9(t9, cmdline_flag=("--cmdline",))
    # --cmdline takes text, not a file: pass the text itself
    args = ["eif", "build", "--kernel", t9 / "kernel", "--cmdline", ref.T9_CMDLINE.decode(), "--ramdisk",
            t9 / "r0", "--ramdisk", t9 / "r1", "--name", "test", "--version", "1.0", "--build-time",
            "2024-01-01T00:00:00+00:00", "--build-tool", "eif_build", "--build-tool-version", "0.3.1",
            "--os", "OS", "--kernel-version", "kernel", "-o", t9 / "inline.eif"]
    r = run(*args)
    assert r.code == 0, r
    assert hashlib.sha256((t9 / "inline.eif").read_bytes()).hexdigest() == ref.T9_SHA256


def test_describe_prints_pcrs(t9):
    assert build_t9(t9).code == 0
    r = run("eif", "describe", t9 / "t9.eif")
    assert r.code == 0, r
    for k, v in ref.T9_PCRS.items():
        assert f"{k}:          {v}" in r.out
    assert "CRC:           ok (stored e1abb2c2" in r.out
    assert "Signature:     none" in r.out
    j = json.loads(run("eif", "describe", "--json", t9 / "t9.eif").out)
    assert j["EifVersion"] == 4
    assert j["IsSigned"] is False and j["CheckCRC"] is True and "SignatureCheck" not in j
    assert j["Measurements"] == {"HashAlgorithm": "Sha384 { ... }", **ref.T9_PCRS}
    assert j["MetadataInfo"]["ImageName"] == "test"
    assert j["MetadataInfo"]["BuildMetadata"]["BuildTool"] == "eif_build"
    assert [s["Type"] for s in j["Sections"]] == ["Kernel", "Cmdline", "Metadata", "Ramdisk", "Ramdisk"]
    assert [s["Offset"] for s in j["Sections"]] == [0x224, 0x1230, 0x12b3, 0x13ad, 0x146d]
    assert [s["Size"] for s in j["Sections"]] == [4096, 119, 238, 180, 170]


def test_pcr_command_matches_formula(t9):
    r = run("eif", "pcr", "--input", t9 / "r1")
    assert r.code == 0, r
    assert json.loads(r.out) == {"PCR": ref.pcr_of((t9 / "r1").read_bytes())}
    (t9 / "empty").write_bytes(b"")
    assert json.loads(run("eif", "pcr", "--input", t9 / "empty").out)["PCR"] == (
        "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a")


def test_pcr8_of_the_aws_root_certificate():
    # spec/nitro.md T10: PCR8 if the signing certificate were the AWS G1 root
    from conftest import VECTORS
    r = run("eif", "pcr", "--signing-certificate", VECTORS / "aws-nitro-root-g1.pem")
    assert r.code == 0, r
    assert json.loads(r.out) == {"PCR8": "df3a0511a411c6a5628d91a189a052d281dec8153ffecde6bdc1a059825c32e4"
                                         "bfb7fc95b367564a64812a8795af8f8a"}


@pytest.mark.parametrize("seed", range(6))
def test_random_images_match_reference_writer(tmp_path, seed):
    rnd = random.Random(seed)
    kernel = rnd.randbytes(rnd.randrange(1, 300000))
    cmdline = b"console=ttyS0 x=%d" % seed
    ramdisks = [rnd.randbytes(rnd.randrange(0, 3 << 20)) for _ in range(rnd.randrange(1, 4))]
    (tmp_path / "k").write_bytes(kernel)
    args = []
    for i, r in enumerate(ramdisks):
        (tmp_path / f"r{i}").write_bytes(r)
        args += ["--ramdisk", tmp_path / f"r{i}"]
    res = run("eif", "build", "--kernel", tmp_path / "k", "--cmdline", cmdline.decode(), *args,
              "--build-time", "2020-02-02T02:02:02Z", "--name", "n", "-o", tmp_path / "o.eif")
    assert res.code == 0, res
    got = (tmp_path / "o.eif").read_bytes()
    md = dict(ref.sections(got))[ref.METADATA]
    assert got == ref.build_eif(kernel, cmdline, ramdisks, md)
    assert json.loads(res.out)["Measurements"] == {"HashAlgorithm": "Sha384 { ... }", **ref.eif_pcrs(got)}
    meta = json.loads(md)
    assert list(meta) == ["ImageName", "ImageVersion", "BuildMetadata", "DockerInfo", "CustomMetadata"]
    assert meta["BuildMetadata"]["BuildTime"] == "2020-02-02T02:02:02Z"
    assert meta["BuildMetadata"]["BuildTool"] == "enclaver"


def test_source_date_epoch_sets_build_time(t9):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    args = ["eif", "build", "--kernel", t9 / "kernel", "--cmdline", "x", "--ramdisk", t9 / "r0", "-o",
            t9 / "a.eif"]
    assert run(*args, env=env).code == 0
    md = json.loads(dict(ref.sections((t9 / "a.eif").read_bytes()))[ref.METADATA])
    assert md["BuildMetadata"]["BuildTime"] == "2023-11-14T22:13:20+00:00"
    assert md["ImageName"] == "a"
    # the same inputs give the same bytes
    args[-1] = t9 / "b.eif"
    assert run(*args, "--name", "a", env=env).code == 0
    assert (t9 / "a.eif").read_bytes() == (t9 / "b.eif").read_bytes()


def test_custom_metadata_sorted_compact(t9):
    (t9 / "custom.json").write_text('{"zeta": [1, 2], "alpha": {"b": "x", "a": null}}')
    assert build_t9(t9, "--custom-metadata", t9 / "custom.json").code == 0
    md = dict(ref.sections((t9 / "t9.eif").read_bytes()))[ref.METADATA]
    assert md.endswith(b'"CustomMetadata":{"alpha":{"a":null,"b":"x"},"zeta":[1,2]}}')


def test_extract_gives_back_every_section(t9):
    assert build_t9(t9).code == 0
    for flag, name in [(["--kernel"], "kernel"), (["--cmdline"], "cmdline"), (["--ramdisk", "0"], "r0"),
                       (["--ramdisk", "1"], "r1")]:
        r = run("eif", "extract", t9 / "t9.eif", *flag, "-o", t9 / "out")
        assert r.code == 0, r
        assert (t9 / "out").read_bytes() == (t9 / name).read_bytes()
    r = run("eif", "extract", t9 / "t9.eif", "--ramdisk", "2", "-o", t9 / "out2")
    assert r.code == 1 and "no Ramdisk section with that index" in r.err
    assert not (t9 / "out2").exists()


@pytest.mark.parametrize("where", ["header-version", "section-table", "kernel", "cmdline", "metadata",
                                   "ramdisk0", "ramdisk1-last-byte", "crc-field"])
def test_flipped_byte_is_reported_and_refused(t9, where):
    assert build_t9(t9).code == 0
    data = bytearray((t9 / "t9.eif").read_bytes())
    pos = {"header-version": 5, "section-table": 28 + 8 * 2 + 7, "kernel": 0x224 + 12 + 100,
           "cmdline": 0x1230 + 12 + 3, "metadata": 0x12b3 + 12 + 20, "ramdisk0": 0x13ad + 12,
           "ramdisk1-last-byte": len(data) - 1, "crc-field": 545}[where]
    data[pos] ^= 0x40
    (t9 / "bad.eif").write_bytes(data)
    # a damaged image is an error, and none of its measurements are printed to be copied
    for args in (["--json"], []):
        r = run("eif", "describe", *args, t9 / "bad.eif")
        assert r.code == 1 and r.out == "", r
        assert len(r.err.strip().splitlines()) == 1, r.err
    r = run("eif", "extract", t9 / "bad.eif", "--kernel", "-o", t9 / "k.out")
    assert r.code == 1
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert not (t9 / "k.out").exists()


def make_cert(d, curve, name):
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("curve,alg,hashalg,siglen", [("P-256", -7, hashes.SHA256(), 64),
                                                      ("P-384", -35, hashes.SHA384(), 96),
                                                      ("P-521", -36, hashes.SHA512(), 132)])
def test_signed_image_verifies(t9, curve, alg, hashalg, siglen):
    cert, key = make_cert(t9, curve, "signer")
    r = build_t9(t9, "--signing-certificate", cert, "--private-key", key)
    assert r.code == 0, r
    data = (t9 / "t9.eif").read_bytes()
    secs = ref.sections(data)
    assert [t for t, _ in secs] == [1, 2, 5, 3, 3, 4]
    # unsigned sections are untouched: PCR0-2 are T9's
    meas = json.loads(r.out)["Measurements"]
    assert {k: meas[k] for k in ref.T9_PCRS} == ref.T9_PCRS
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)
    assert meas["PCR8"] == ref.pcr_of(der)
    assert json.loads(run("eif", "pcr", "--signing-certificate", cert).out)["PCR8"] == meas["PCR8"]
    # the section's shape, decoded by cbor2: [{signing_certificate: [uints], signature: [uints]}]
    sig = cbor2.loads(dict(secs)[ref.SIGNATURE])
    assert list(sig[0]) == ["signing_certificate", "signature"]
    assert bytes(sig[0]["signing_certificate"]) == cert.read_bytes()
    prot, unprot, payload, rs = cbor2.loads(bytes(sig[0]["signature"]))
    assert cbor2.loads(prot) == {1: alg} and unprot == {} and len(rs) == siglen
    assert cbor2.loads(payload) == {"register_index": 0, "register_value": list(bytes.fromhex(ref.T9_PCRS["PCR0"]))}
    # an independent verifier accepts the COSE signature
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    n = siglen // 2
    pub = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    pub.verify(encode_dss_signature(int.from_bytes(rs[:n], "big"), int.from_bytes(rs[n:], "big")), tbs,
               ec.ECDSA(hashalg))
    j = json.loads(run("eif", "describe", "--json", t9 / "t9.eif").out)
    assert j["IsSigned"] is True and j["SignatureCheck"] is True and j["CheckCRC"] is True
    assert j["Measurements"]["PCR8"] == meas["PCR8"]
    assert run("eif", "extract", t9 / "t9.eif", "--kernel", "-o", t9 / "k").code == 0


@pytest.mark.parametrize("keep", [100, 3000, -1])
def test_truncated_image_is_an_error(t9, keep):
    assert build_t9(t9).code == 0
    data = (t9 / "t9.eif").read_bytes()
    (t9 / "short.eif").write_bytes(data[:keep])
    for args in (["--json"], []):
        r = run("eif", "describe", *args, t9 / "short.eif")
        assert r.code == 1 and r.out == "", r
        assert len(r.err.strip().splitlines()) == 1 and "short.eif" in r.err, r.err
        assert "PCR" not in r.err


def test_signature_fails_when_pcr0_changes(t9):
    cert, key = make_cert(t9, "P-384", "signer")
    assert build_t9(t9, "--signing-certificate", cert, "--private-key", key).code == 0
    data = bytearray((t9 / "t9.eif").read_bytes())
    data[0x146d + 12] ^= 1  # first byte of the customer ramdisk: PCR0 and PCR2 change
    (t9 / "forged.eif").write_bytes(ref.fix_crc(data))
    j = json.loads(run("eif", "describe", "--json", t9 / "forged.eif").out)
    assert j["CheckCRC"] is True and j["SignatureCheck"] is False
    r = run("eif", "extract", t9 / "forged.eif", "--kernel", "-o", t9 / "k")
    assert r.code == 1 and "signature" in r.err


def test_signature_fails_when_certificate_changes(t9):
    cert, key = make_cert(t9, "P-384", "signer")
    other, _ = make_cert(t9, "P-384", "other")
    assert build_t9(t9, "--signing-certificate", cert, "--private-key", key).code == 0
    secs = ref.sections((t9 / "t9.eif").read_bytes())
    sig = cbor2.loads(secs[-1][1])
    sig[0]["signing_certificate"] = list(other.read_bytes())
    d = dict(secs)
    forged = ref.build_eif(d[1], d[2], [s for t, s in secs if t == 3], d[5], signature=cbor2.dumps(sig))
    (t9 / "forged.eif").write_bytes(forged)
    j = json.loads(run("eif", "describe", "--json", t9 / "forged.eif").out)
    assert j["CheckCRC"] is True and j["SignatureCheck"] is False
    assert j["Measurements"]["PCR8"] == json.loads(run("eif", "pcr", "--signing-certificate", other).out)["PCR8"]


def test_bad_inputs_give_one_line_and_leave_nothing(t9):
    out = t9 / "never.eif"
    cases = [
        (["--kernel", t9 / "missing", "--cmdline", "x", "--ramdisk", t9 / "r0"], "missing"),
        (["--kernel", t9 / "kernel", "--cmdline", "x"], "at least one --ramdisk"),
        (["--kernel", t9 / "kernel", "--cmdline", "x", "--ramdisk", t9 / "r0", "--build-time", "today"],
         "RFC 3339"),
        (["--kernel", t9 / "kernel", "--cmdline", "x", "--ramdisk", t9 / "nope"], "nope"),
    ]
    for args, needle in cases:
        r = run("eif", "build", *args, "-o", out)
        assert r.code != 0, r
        assert needle in r.err and len(r.err.strip().splitlines()) == 1, r
        assert not out.exists()
    assert not [p for p in t9.iterdir() if ".tmp" in p.name]
    cert, _ = make_cert(t9, "P-384", "a")
    _, wrongkey = make_cert(t9, "P-384", "b")
    r = run("eif", "build", "--kernel", t9 / "kernel", "--cmdline", "x", "--ramdisk", t9 / "r0",
            "--signing-certificate", cert, "--private-key", wrongkey, "-o", out)
    assert r.code == 1 and "does not belong to the certificate" in r.err, r
    assert not out.exists()
    (t9 / "junk.eif").write_bytes(b"hello")
    r = run("eif", "describe", t9 / "junk.eif")
    assert r.code == 1 and "not an EIF" in r.err


def test_bootstrap_ramdisk_matches_linuxkit_reference(tmp_path):
    rnd = random.Random(7)
    for with_nsm in (True, False):
        init = rnd.randbytes(rnd.randrange(1, 100000))
        nsm = rnd.randbytes(rnd.randrange(1, 30000))
        (tmp_path / "init").write_bytes(init)
        (tmp_path / "nsm.ko").write_bytes(nsm)
        args = ["eif", "bootstrap", "--init", tmp_path / "init", "-o", tmp_path / "boot.cpio"]
        if with_nsm:
            args[4:4] = ["--nsm", tmp_path / "nsm.ko"]
        r = run(*args)
        assert r.code == 0, r
        got = (tmp_path / "boot.cpio").read_bytes()
        assert got == ref.bootstrap_ramdisk(init, nsm if with_nsm else None)
        # GNU cpio reads it back
        x = tmp_path / ("x1" if with_nsm else "x2")
        x.mkdir()
        subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=got, cwd=x, check=True)
        assert (x / "init").read_bytes() == init and (x / "dev").is_dir()
        assert (x / "nsm.ko").exists() == with_nsm


def test_sign_existing_image(t9):
    assert build_t9(t9).code == 0
    cert, key = make_cert(t9, "P-384", "signer")
    r = run("eif", "sign", t9 / "t9.eif", "--signing-certificate", cert, "--private-key", key, "-o",
            t9 / "signed.eif")
    assert r.code == 0, r
    direct = build_t9(t9, "--signing-certificate", cert, "--private-key", key, out="direct.eif")
    assert direct.code == 0
    assert json.loads(r.out) == json.loads(direct.out)
    # the same sections as a direct signed build (signature bytes differ: ECDSA is randomized)
    signed, direct_secs = ref.sections((t9 / "signed.eif").read_bytes()), ref.sections((t9 / "direct.eif").read_bytes())
    assert signed[:-1] == direct_secs[:-1] and signed[-1][0] == ref.SIGNATURE
    j = json.loads(run("eif", "describe", "--json", t9 / "signed.eif").out)
    assert j["SignatureCheck"] is True and j["CheckCRC"] is True
    # re-signing with another key replaces the signature, in place
    other, okey = make_cert(t9, "P-256", "other")
    r = run("eif", "sign", t9 / "signed.eif", "--signing-certificate", other, "--private-key", okey)
    assert r.code == 0, r
    j = json.loads(run("eif", "describe", "--json", t9 / "signed.eif").out)
    assert j["SignatureCheck"] is True
    assert [s["Type"] for s in j["Sections"]].count("Signature") == 1
    assert j["Measurements"]["PCR8"] == json.loads(run("eif", "pcr", "--signing-certificate", other).out)["PCR8"]
    assert {k: j["Measurements"][k] for k in ref.T9_PCRS} == ref.T9_PCRS
    # a corrupt image is not signed
    data = bytearray((t9 / "t9.eif").read_bytes())
    data[600] ^= 1
    (t9 / "bad.eif").write_bytes(data)
    r = run("eif", "sign", t9 / "bad.eif", "--signing-certificate", cert, "--private-key", key)
    assert r.code == 1 and "CRC mismatch" in r.err


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_build_leaves_no_partial_output(tmp_path, sig):
    # A build stopped by Ctrl-C or SIGTERM while it writes a large EIF removes its partial
    # output and ends as the signal says; nothing named after the output is left.
    import signal
    import time
    from conftest import BUILD
    (tmp_path / "kernel").write_bytes(b"k" * 1024)
    with open(tmp_path / "big.cpio", "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(1024):
            f.write(block)
    (tmp_path / "out").mkdir()
    p = subprocess.Popen([str(BUILD / "enclaver"), "eif", "build", "--kernel", str(tmp_path / "kernel"), "--cmdline",
                          "x", "--ramdisk", str(tmp_path / "big.cpio"), "-o", str(tmp_path / "out" / "app.eif")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not list((tmp_path / "out").iterdir()):  # the partial output exists: the build is under way
        assert time.time() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.01)
    p.send_signal(getattr(signal, sig))
    p.communicate(timeout=60)
    assert p.returncode == -getattr(signal, sig)
    assert list((tmp_path / "out").iterdir()) == []


def test_an_encrypted_signing_key_is_asked_for_once_or_read_from_the_environment(t9):
    import pty
    from conftest import BUILD
    assert build_t9(t9).code == 0
    cert, key = make_cert(t9, "P-384", "signer")
    enc = t9 / "enc.pem"
    subprocess.run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:hunter2", "-out", enc], check=True)
    args = ["eif", "sign", t9 / "t9.eif", "--signing-certificate", cert, "--private-key", enc, "-o"]
    # no terminal and no passphrase: one line that says how to give it, nothing written
    r = run(*args, t9 / "a.eif", input="")
    assert r.code == 1 and r.err.count("\n") == 1 and "enc.pem is encrypted: give its passphrase" in r.err, r
    assert not (t9 / "a.eif").exists()
    r = run(*args, t9 / "a.eif", env=dict(os.environ, ENCLAVER_KEY_PASSPHRASE="wrong"))
    assert r.code == 1 and "the passphrase does not open this encrypted key" in r.err, r
    (t9 / "pass").write_text("hunter2\n")
    r = run(*args, t9 / "a.eif", env=dict(os.environ, ENCLAVER_KEY_PASSPHRASE_FILE=str(t9 / "pass")))
    assert r.code == 0 and "PCR8" in r.out, r
    # on a terminal: asked once
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(str(BUILD / "enclaver"), ["enclaver", *map(str, args), str(t9 / "b.eif")])
    out = b""
    while b"passphrase for" not in out:
        out += os.read(fd, 1024)
    os.write(fd, b"hunter2\n")
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert out.count(b"passphrase for") == 1 and b"PCR8" in out
    assert json.loads(run("eif", "describe", "--json", t9 / "b.eif").out)["SignatureCheck"] is True
