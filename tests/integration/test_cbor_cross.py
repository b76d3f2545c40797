"""Our CBOR codec against python3-cbor2: canonical re-encoding agrees, and what we refuse is
what a strict decoder must refuse."""
import random
import subprocess

import cbor2
import pytest

from conftest import BUILD


def tool(data, mode="canon"):
    return subprocess.run([str(BUILD / "tests" / "cbor-tool"), mode], input=data, capture_output=True,
                          timeout=30)


def rand_obj(rnd, depth=0):
    kinds = ["int", "neg", "bytes", "text", "bool", "null"] + (["list", "map", "tag"] if depth < 5 else [])
    k = rnd.choice(kinds)
    if k == "int":
        return rnd.choice([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, rnd.randrange(2**64)])
    if k == "neg":
        return -1 - rnd.choice([0, 23, 24, 255, 256, 65536, 2**32, 2**64 - 1, rnd.randrange(2**64)])
    if k == "bytes":
        return rnd.randbytes(rnd.choice([0, 1, 23, 24, 300, 70000]))
    if k == "text":
        return "".join(rnd.choice("aé€😀\u0000z") for _ in range(rnd.randrange(0, 40)))
    if k == "bool":
        return rnd.random() < 0.5
    if k == "null":
        return None
    if k == "list":
        return [rand_obj(rnd, depth + 1) for _ in range(rnd.randrange(0, 30))]
    if k == "tag":
        return cbor2.CBORTag(rnd.choice([18, 1000, 2**40]), rand_obj(rnd, depth + 1))
    keys = set()
    while len(keys) < rnd.randrange(0, 12):
        keys.add(rnd.choice([rnd.randrange(10**6), "k%d" % rnd.randrange(1000), -rnd.randrange(1, 1000)]))
    return {key: rand_obj(rnd, depth + 1) for key in keys}


@pytest.mark.parametrize("seed", range(40))
def test_canonical_encoding_agrees_with_cbor2(seed):
    obj = rand_obj(random.Random(seed))
    loose = cbor2.dumps(obj)  # insertion-ordered maps
    canon = cbor2.dumps(obj, canonical=True)
    r = tool(loose)
    assert r.returncode == 0, r.stderr
    assert r.stdout == canon
    same = tool(loose, "same")
    assert same.stdout == loose
    assert cbor2.loads(r.stdout) == obj


@pytest.mark.parametrize("hexdata,why", [
    ("0000", b"trailing"), ("1817", b"non-minimal"), ("9f01ff", b"indefinite"), ("7f6161ff", b"indefinite"),
    ("fa3f800000", b"floating"), ("a201010102", b"duplicate"), ("5a00010000ab", b"past the end"),
    ("62ff41", b"UTF-8"),
])
def test_strict_rejections(hexdata, why):
    data = bytes.fromhex(hexdata)
    r = tool(data)
    assert r.returncode == 1 and why in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_nsm_messages_decode_in_cbor2():
    # spec/nitro.md §4.3: what our encoder writes, cbor2 reads as the intended objects
    for hexdata, obj in [("a16b4465736372696265504352a165696e64657800", {"DescribePCR": {"index": 0}}),
                         ("a1684c6f636b50435273a16572616e67651820", {"LockPCRs": {"range": 32}})]:
        assert cbor2.loads(bytes.fromhex(hexdata)) == obj
        r = tool(bytes.fromhex(hexdata), "same")
        assert r.stdout.hex() == hexdata
