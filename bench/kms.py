#!/usr/bin/python3
"""bench/kms: Decrypt through odyn's KMS proxy in a local enclave (attestation document, IMDS
credentials, TLS through the egress tunnel, CMS opened) against the same Decrypt sent straight
to kms-local over HTTP without attestation, in the same run, each request on a new connection.
Prints the added latency (p50, p99) and both request rates. Needs root (the local enclave)."""
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
N = int(os.environ.get("BENCH_KMS_REQUESTS", "300"))




def stats(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build").resolve()
    os.environ["ENCLAVER_BUILD_DIR"] = str(build)
    import enclave_util as eu  # noqa: E402  (reads ENCLAVER_BUILD_DIR)
    from conftest import run  # noqa: E402

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
            body = json.dumps({"CiphertextBlob": ct})
            manifest = eu.MANIFEST + ("egress:\n  allow:\n    - 169.254.169.254\n    - kms.*.amazonaws.com\n"
                                      "kms_proxy:\n  listen_port: 9999\n")
            (d / "e").mkdir()
            eif = eu.make_eif(d / "e", manifest, ["kms-bench", str(N), "TrentService.Decrypt", body])
            pcr0 = json.loads(run("eif", "describe", "--json", eif).out)["Measurements"]["PCR0"]
            policy = {"Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*",
                 "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
                 "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcr0}}}]}
            (d / "policy.json").write_text(json.dumps(policy))
            aws("put-key-policy", "--key-id", key, "--policy-name", "default", "--policy", f"file://{d}/policy.json")
            direct = subprocess.run([str(build / "bench" / "kms_direct"), str(d / "state"), f"127.0.0.1:{port}", str(N),
                                     "Decrypt", body], capture_output=True, text=True, env=env)
            p = subprocess.run([str(build / "enclaver-run"), "--eif-file", str(eif), "--manifest-file",
                                str(d / "e" / "enclaver.yaml")], capture_output=True, text=True, env=env, timeout=600)
        finally:
            kms.send_signal(signal.SIGTERM)
            kms.wait()
    dline = [l for l in direct.stdout.splitlines() if l.startswith("kms-direct:")]
    pline = [l for l in p.stdout.splitlines() if l.startswith("kms-bench:")]
    if not dline or not pline:
        print("bench kms: FAIL", direct.stdout, direct.stderr, p.stdout[-2000:], p.stderr[-2000:])
        return 1
    a, b = stats(dline[0]), stats(pline[0])
    print(f"Decrypt, {N} requests each, one connection per request")
    print(f"direct to kms-local (no attestation): p50 {a['p50_us'] / 1000:.2f} ms, p99 {a['p99_us'] / 1000:.2f} ms, "
          f"{a['rps']:.0f} requests/s")
    print(f"through the KMS proxy in a local enclave: p50 {b['p50_us'] / 1000:.2f} ms, p99 {b['p99_us'] / 1000:.2f} ms, "
          f"{b['rps']:.0f} requests/s")
    print(f"added by the proxy path: p50 {(b['p50_us'] - a['p50_us']) / 1000:.2f} ms, "
          f"p99 {(b['p99_us'] - a['p99_us']) / 1000:.2f} ms; rate ratio {b['rps'] / a['rps']:.2f}")
    ok = a["ok"] == N and b["ok"] == N
    print("bench kms:", "PASS" if ok else "FAIL", "(every request answered 200)" if ok else "")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
