#!/usr/bin/python3
"""bench/kms: Decrypt through odyn's KMS proxy in a local enclave (attestation document, IMDS
credentials, TLS through the egress tunnel, CMS opened; the app keeps its connection to the
proxy, as the AWS SDKs do) against the same Decrypt sent straight to kms-local, in the same run.
One client: the baseline's client and the enclave's app take turns call by call (the app waits
for the baseline's client to say "go", over the egress proxy, outside the timed call), so that
this machine's slow moments fall on both alike. Then CONC clients at once. The baseline is what an app outside an enclave does:
HTTPS to kms-local on a kept connection, with a Recipient attestation document made in advance,
so that kms-local's own attestation work (verifying the document, encrypting to its key) and TLS
are in it as they are in the proxy's path. Plain HTTP without a Recipient is shown for scale.
Prints the added latency (p50, p99), the request rates, and where the proxy's time goes (odyn's
own account of its calls).

Targets (issue 15, ARCHITECTURE.md §8): the proxy's added p50 <= 1.5 ms and p99 <= 4 ms over the
baseline with a Recipient; with CONC concurrent clients >= 0.5x the baseline's rate.
Needs root (the local enclave)."""
import base64
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
N = int(os.environ.get("BENCH_KMS_REQUESTS", "320"))
PACED = int(os.environ.get("BENCH_KMS_PACED", "800"))
CONC = 16


def stats(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build").resolve()
    os.environ["ENCLAVER_BUILD_DIR"] = str(build)
    import enclave_util as eu  # noqa: E402  (reads ENCLAVER_BUILD_DIR)
    from conftest import run  # noqa: E402

    res = {}
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        env = dict(os.environ, ENCLAVER_STATE_DIR=str(d / "state"))
        port, tls = eu.free_port(), eu.free_port()
        kms = subprocess.Popen([str(build / "enclaver"), "kms-local", "--listen", f"127.0.0.1:{port}", "--tls-listen",
                                f"127.0.0.1:{tls}"], env=env, stderr=subprocess.DEVNULL)
        try:
            while not (d / "state" / "endpoints" / "kms.json").exists():
                time.sleep(0.05)
            creds = dict(l[7:].split("=", 1) for l in run("kms-local", "env", env=env).out.splitlines()
                         if l.startswith("export "))

            def aws(*args):
                p = subprocess.run(["/usr/bin/aws", "--endpoint-url", f"http://127.0.0.1:{port}", "--output", "json",
                                    "kms", *args], env=dict(env, **creds), capture_output=True, text=True, check=True)
                return json.loads(p.stdout) if p.stdout.strip() else {}

            key = aws("create-key")["KeyMetadata"]["KeyId"]
            (d / "pt").write_bytes(b"a secret of thirty-two bytes....")
            ct = aws("encrypt", "--key-id", key, "--plaintext", f"fileb://{d}/pt")["CiphertextBlob"]
            # no spaces: the probe's seq splits its steps on them
            body = json.dumps({"CiphertextBlob": ct}, separators=(",", ":"))
            # 127.0.0.1: where the paced run's baseline client waits for the app
            manifest = eu.MANIFEST + ("egress:\n  allow:\n    - 169.254.169.254\n    - kms.*.amazonaws.com\n"
                                      "    - 127.0.0.1\nkms_proxy:\n  listen_port: 9999\n")
            pace_port = eu.free_port()
            eifs = {}
            for name, app in (("paced", ["kms-paced", f"127.0.0.1:{pace_port}", "TrentService.Decrypt", body]),
                              ("conc", ["kms-bench", str(N), "TrentService.Decrypt", body, str(CONC)])):
                (d / name).mkdir()
                eifs[name] = eu.make_eif(d / name, manifest, app)
            pcr0 = json.loads(run("eif", "describe", "--json", eifs["paced"]).out)["Measurements"]["PCR0"]
            policy = {"Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*",
                 "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
                 "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr0}}}]}
            (d / "policy.json").write_text(json.dumps(policy))
            aws("put-key-policy", "--key-id", key, "--policy-name", "default", "--policy", f"file://{d}/policy.json")
            # the baseline's Recipient: a document the development CA signed for this PCR0 over a
            # key made here, as an enclave's NSM gives it, made once before the clock starts
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                            d / "r.pem"], check=True, capture_output=True)
            subprocess.run(["openssl", "pkey", "-in", d / "r.pem", "-pubout", "-outform", "DER", "-out", d / "r.spki"],
                           check=True, capture_output=True)
            subprocess.run([build / "tests" / "nsm-doc", d / "state", pcr0, d / "r.spki", d / "r.doc"], check=True,
                           capture_output=True)
            body_r = json.dumps({"CiphertextBlob": ct, "Recipient": {
                "AttestationDocument": base64.b64encode((d / "r.doc").read_bytes()).decode(),
                "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}, separators=(",", ":"))

            def direct(b, conc, over_tls=True):
                p = subprocess.run([str(build / "bench" / "kms_direct"), str(d / "state"),
                                    f"127.0.0.1:{tls if over_tls else port}", str(N), "Decrypt", b, str(conc),
                                    *(["tls"] if over_tls else [])], capture_output=True, text=True, env=env)
                line = [l for l in p.stdout.splitlines() if l.startswith("kms-direct:")]
                if not line:
                    sys.exit(f"bench kms: FAIL: kms_direct: {p.stderr[-1000:]}")
                return stats(line[0])

            def enclave(name):
                p = subprocess.run([str(build / "enclaver-run"), "--eif-file", str(eifs[name]), "--manifest-file",
                                    str(d / name / "enclaver.yaml")], capture_output=True, text=True, env=env,
                                   timeout=600)
                where = [l for l in p.stdout.splitlines() if "attested calls over" in l]
                if p.returncode != 0 or not where:
                    sys.exit(f"bench kms: FAIL: the enclave: {p.stdout[-2000:]}\n{p.stderr[-2000:]}")
                conns = re.search(r"over (\d+) TLS connections", where[0]).group(1)
                return p.stdout, f"{where[0].split('mean ms per call: ', 1)[1]} ({conns} TLS connections)"

            def paced():
                """One call straight to kms-local, then one by the enclave's app through the
                proxy, in turn: a slow moment of this machine falls on both alike."""
                c = subprocess.Popen([str(build / "bench" / "kms_direct"), str(d / "state"), f"127.0.0.1:{tls}",
                                      str(PACED), "Decrypt", body_r, "1", "tls", "pace", str(pace_port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                if c.stdout.readline().strip() != "kms-direct: listening":
                    sys.exit(f"bench kms: FAIL: kms_direct: {c.communicate()[1][-1000:]}")
                _, where = enclave("paced")
                out, err = c.communicate(timeout=120)
                lines = {l.split(":", 1)[0]: l for l in out.splitlines()}
                if c.returncode != 0 or "kms-direct" not in lines or "kms-paced" not in lines:
                    sys.exit(f"bench kms: FAIL: the paced run: {out[-1000:]}\n{err[-1000:]}")
                return stats(lines["kms-direct"]), stats(lines["kms-paced"]), where

            def proxy_conc():
                out, where = enclave("conc")
                line = [l for l in out.splitlines() if l.startswith("kms-bench:")]
                if not line:
                    sys.exit(f"bench kms: FAIL: the enclave: {out[-2000:]}")
                return stats(line[0]), where

            res["plain"] = direct(body, 1, over_tls=False)
            res["recipient"], res["proxy"], where_seq = paced()
            # the floor the proxy cannot go under: opening the CMS, one RSA-2048 decryption,
            # measured right after, on this machine as it is now
            c = subprocess.run([str(build / "bench" / "kms_direct"), "cms", "400"], capture_output=True, text=True)
            floor = [l for l in c.stdout.splitlines() if l.startswith("kms-cms:")]
            if c.returncode != 0 or not floor:
                sys.exit(f"bench kms: FAIL: kms_direct cms: {c.stderr[-1000:]}")
            cms = stats(floor[0])
            res["recipient conc"] = direct(body_r, CONC)
            res["proxy conc"], where_conc = proxy_conc()
        finally:
            kms.send_signal(signal.SIGTERM)
            kms.wait()

    def show(what, s):
        print(f"{what}: p50 {s['p50_us'] / 1000:.2f} ms, p99 {s['p99_us'] / 1000:.2f} ms, {s['rps']:.0f} requests/s")

    b, p, bc, pc = res["recipient"], res["proxy"], res["recipient conc"], res["proxy conc"]
    print(f"Decrypt on kept connections; one client: {PACED} calls each, the baseline and the proxy "
          f"taking turns call by call; {CONC} clients: {N} calls each")

    def show_lat(what, s):
        print(f"{what}: p50 {s['p50_us'] / 1000:.2f} ms, p99 {s['p99_us'] / 1000:.2f} ms")
    show("direct to kms-local over HTTP, no Recipient, a connection each", res["plain"])
    show_lat("direct to kms-local over kept TLS, a Recipient made in advance (the baseline)", b)
    show_lat("through the KMS proxy in a local enclave", p)
    added50, added99 = (p["p50_us"] - b["p50_us"]) / 1000, (p["p99_us"] - b["p99_us"]) / 1000
    # one client's rate is the inverse of its mean latency
    print(f"added by the proxy path: p50 {added50:.2f} ms, p99 {added99:.2f} ms; "
          f"rate ratio {b['mean_us'] / p['mean_us']:.2f}")
    print(f"of which the floor, one RSA-2048 decryption (the CMS opened) here now: p50 {cms['p50_us'] / 1000:.2f} ms; "
          f"the rest of the proxy path: p50 {added50 - cms['p50_us'] / 1000:.2f} ms")
    ratio = pc["rps"] / bc["rps"]
    print(f"concurrent ({CONC}): proxy {pc['rps']:.0f} requests/s, baseline {bc['rps']:.0f} requests/s, ratio {ratio:.2f}")
    print(f"where the proxy's time goes, mean ms per call, one client: {where_seq}")
    print(f"where the proxy's time goes, mean ms per call, {CONC} clients: {where_conc}")
    answered = all(s["ok"] == s["n"] for s in res.values())
    targets = [("added p50 <= 1.5 ms", added50 <= 1.5), ("added p99 <= 4 ms", added99 <= 4),
               (f"concurrent ratio >= 0.5", ratio >= 0.5)]
    print("targets:", "; ".join(f"{t}: {'met' if ok else 'NOT met'}" for t, ok in targets))
    ok = answered and all(ok for _, ok in targets)
    print("bench kms:", "PASS" if ok else "FAIL", "" if answered else "(not every request was answered 200)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
