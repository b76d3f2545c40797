"""enclaver-init outside an enclave: it is static (no loader, no NSS) and refuses to run unless
it is PID 1. Its boot path runs inside the local enclave (later); it is never run here, since its
heartbeat would open an AF_VSOCK connection to this machine's hypervisor."""
import subprocess

import pytest

from conftest import BUILD, run


def test_refuses_when_not_pid1():
    r = run(binary="enclaver-init")
    assert r.code == 2 and r.err.strip() == "enclaver-init: runs only as PID 1 inside an enclave"
    r = run("--version", binary="enclaver-init")
    assert r.code == 0 and r.out.startswith("enclaver-init ")


def test_statically_linked():
    hdr = subprocess.run(["readelf", "-lW", str(BUILD / "enclaver-init")], capture_output=True, text=True,
                         check=True).stdout
    syms = subprocess.run(["nm", str(BUILD / "enclaver-init")], capture_output=True, text=True).stdout
    if "__asan_init" in syms:
        pytest.skip("sanitized builds link enclaver-init dynamically (no static sanitizer runtime with glibc)")
    assert "INTERP" not in hdr
    assert "getaddrinfo" not in syms and "getpwnam" not in syms
