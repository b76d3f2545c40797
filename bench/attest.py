#!/usr/bin/python3
"""bench/attest: attestation documents per second from the NSM emulator (in process and through
the socket odyn uses) and verifications per second, against the P-384 ECDSA operations each one
must do, measured in the same run by bench/tools/attest_bench.c.

Budgets: a document costs at most 1/0.8 of one ECDSA signature; a verification at most 1/0.7 of
three ECDSA verifications (the document's, the leaf's, the intermediate's)."""
import pathlib
import subprocess
import sys

SECONDS = "2"


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build")
    out = subprocess.run([str(build / "bench" / "attest_bench"), SECONDS], check=True, capture_output=True,
                         text=True).stdout
    v = {k: float(x) for k, x in (line.split() for line in out.splitlines())}
    doc_ratio = v["emulator_documents_per_s"] / v["p384_signs_per_s"]
    sock_ratio = v["socket_documents_per_s"] / v["p384_signs_per_s"]
    check_ratio = v["verifications_per_s"] / (v["p384_verifies_per_s"] / 3)
    print(f"emulator: {v['emulator_documents_per_s']:.0f} documents/s in process, "
          f"{v['socket_documents_per_s']:.0f}/s through the socket ({v['document_bytes']:.0f}-byte documents); "
          f"P-384 signatures: {v['p384_signs_per_s']:.0f}/s")
    print(f"ratio documents/signatures: {doc_ratio:.2f} in process, {sock_ratio:.2f} through the socket "
          f"(budget >= 0.8 in process)")
    print(f"verify: {v['verifications_per_s']:.0f} documents/s; P-384 verifications: {v['p384_verifies_per_s']:.0f}/s")
    print(f"ratio verifications/(verifications/3): {check_ratio:.2f} (budget >= 0.7)")
    ok = doc_ratio >= 0.8 and check_ratio >= 0.7
    print("bench attest:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
