import os
import pathlib
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("ENCLAVER_BUILD_DIR", ROOT / "build"))
VECTORS = pathlib.Path(os.environ.get("ENCLAVER_VECTORS", ROOT / "tests" / "data" / "vectors"))

# Local enclaves keep their development CA in a state folder: the tests' own, not the user's.
os.environ.setdefault("ENCLAVER_STATE_DIR", tempfile.mkdtemp(prefix="test-state-of-enclaver-"))


class Result:
    def __init__(self, p):
        self.code, self.out, self.err = p.returncode, p.stdout, p.stderr

    def __repr__(self):
        return f"<exit {self.code} out={self.out[:400]!r} err={self.err[:400]!r}>"


def run(*args, input=None, cwd=None, binary="enclaver", env=None, text=True):
    p = subprocess.run([str(BUILD / binary), *map(str, args)], input=input, cwd=cwd, capture_output=True,
                       text=text, timeout=120, env=env)
    return Result(p)


@pytest.fixture
def enclaver():
    return run


@pytest.fixture
def t9(tmp_path):
    """The sections of the synthetic EIF T9 (spec/nitro.md §10) as files."""
    from nitro_ref import T9_CMDLINE
    files = {
        "kernel": bytes(range(256)) * 16,
        "cmdline": T9_CMDLINE,
        "r0": b"bootstrap-ramdisk\n" * 10,
        "r1": b"customer-ramdisk\n" * 10,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


T9_META_ARGS = ["--name", "test", "--version", "1.0", "--build-time", "2024-01-01T00:00:00+00:00",
                "--build-tool", "eif_build", "--build-tool-version", "0.3.1", "--os", "OS",
                "--kernel-version", "kernel"]


def build_t9(d, *extra, out="t9.eif", cmdline_flag=("--cmdline-file",)):
    args = ["eif", "build", "--kernel", d / "kernel", *cmdline_flag, d / "cmdline", "--ramdisk", d / "r0",
            "--ramdisk", d / "r1", *T9_META_ARGS, *extra, "-o", d / out]
    return run(*args)
