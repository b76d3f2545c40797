"""enclaver manifest and enclaver policy check, as a user runs them."""
import json

from conftest import run

KMS_EXAMPLE = """version: v1
name: "intg-tests"
target: "intg-tests:enclave"
sources:
  app: "intg-tests:latest"
  odyn: "odyn-dev:latest"
  sleeve: "enclaver-wrapper-base:latest"
defaults:
  memory_mb: 1500
egress:
  allow:
    - kms.*.amazonaws.com
    - 169.254.169.254
  deny:
    - kms.eu-west-1.amazonaws.com
kms_proxy:
  listen_port: 7123
signature:
  certificate: keys/cert.pem
  key: keys/key.pem
"""


def test_manifest_prints_resolved_json(tmp_path):
    (tmp_path / "enclaver.yaml").write_text(KMS_EXAMPLE)
    r = run("manifest", cwd=tmp_path)
    assert r.code == 0, r
    j = json.loads(r.out)
    assert j["defaults"] == {"cpu_count": 2, "memory_mb": 1500}
    assert j["egress"]["proxy_port"] == 10000 and j["egress"]["enabled"] is True
    # transparent egress comes with egress unless the manifest turns it off
    assert j["egress"]["transparent"] == {"enabled": True, "required": False, "pool": "198.18.0.0/15", "port": 10001}
    (tmp_path / "enclaver.yaml").write_text(KMS_EXAMPLE.replace("  deny:\n", "  transparent: false\n  deny:\n"))
    j = json.loads(run("manifest", cwd=tmp_path).out)
    assert j["egress"]["transparent"]["enabled"] is False
    (tmp_path / "enclaver.yaml").write_text(KMS_EXAMPLE)
    assert j["kms_proxy"] == {"listen_port": 7123, "endpoints": {}}
    assert j["sources"] == {"app": "intg-tests:latest", "odyn": "odyn-dev:latest",
                            "sleeve": "enclaver-wrapper-base:latest"}
    assert j["ingress"] == [] and j["api"] is None
    assert j["signature"] == {"certificate": "keys/cert.pem", "key": "keys/key.pem"}
    # with -f, paths resolve against the manifest's folder
    r = run("manifest", "-f", tmp_path / "enclaver.yaml")
    assert json.loads(r.out)["signature"]["certificate"] == str(tmp_path / "keys/cert.pem")


def test_manifest_from_stdin():
    r = run("manifest", "-f", "-", input=KMS_EXAMPLE)
    assert r.code == 0, r
    assert json.loads(r.out)["name"] == "intg-tests"


def test_manifest_error_is_one_line_with_position(tmp_path):
    (tmp_path / "m.yaml").write_text(KMS_EXAMPLE.replace("  memory_mb: 1500", "  memory_mb: 1500\n  gpus: 1"))
    r = run("manifest", "-f", tmp_path / "m.yaml")
    assert r.code == 1 and r.out == ""
    lines = r.err.strip().splitlines()
    assert lines == [f'enclaver: error: {tmp_path}/m.yaml:10:3: unknown key "gpus" in defaults '
                     f'(expected one of: cpu_count, memory_mb)']
    r = run("manifest", "-f", tmp_path / "absent.yaml")
    assert r.code == 1 and "absent.yaml: No such file or directory" in r.err
    r = run("manifest", "-f", "-", input="version: v1\nname: x\ntarget: t\nsources: {app: a}\n"
                                           "kms_proxy: {listen_port: 9}\n")
    assert r.code == 1
    assert r.err.strip() == ("enclaver: error: <stdin>:5:1: KMS proxy is configured but egress is not. Configure "
                             "egress allow policy to access the IMDS at 169.254.169.254 and the AWS KMS endpoint")


def test_policy_check(tmp_path):
    (tmp_path / "enclaver.yaml").write_text(KMS_EXAMPLE)
    r = run("policy", "check", "kms.us-east-1.amazonaws.com", cwd=tmp_path)
    assert r.code == 0 and r.out == 'allow kms.us-east-1.amazonaws.com (allow rule "kms.*.amazonaws.com")\n'
    r = run("policy", "check", "kms.eu-west-1.amazonaws.com", "169.254.169.254", "example.com", "127.1",
            cwd=tmp_path)
    assert r.code == 1
    assert r.out.splitlines() == [
        'deny kms.eu-west-1.amazonaws.com (deny rule "kms.eu-west-1.amazonaws.com")',
        'allow 169.254.169.254 (allow rule "169.254.169.254")',
        "deny example.com (no allow rule matches)",
        "deny 127.1 (numeric host name that is not a dotted-quad IPv4 address)",
    ]
    r = run("policy", "check", cwd=tmp_path)
    assert r.code == 2 and "HOST" in r.err


def test_policy_check_without_egress(tmp_path):
    (tmp_path / "enclaver.yaml").write_text("version: v1\nname: x\ntarget: t\nsources: {app: a}\n")
    r = run("policy", "check", "example.com", cwd=tmp_path)
    assert r.code == 1 and "egress is disabled" in r.out


def test_version_and_usage():
    r = run("version")
    assert r.code == 0 and r.out.startswith("enclaver ")
    r = run("frobnicate")
    assert r.code == 2 and r.err.strip() == 'enclaver: error: unknown command "frobnicate"; \'enclaver help\' lists the commands'


def test_deep_nesting_is_refused_at_once_with_a_position(tmp_path):
    # libyaml's cost grows with the square of the depth (50,000 "[": seconds; a 1 MiB one:
    # minutes): the depth is refused at the first level too deep, with where it is.
    (tmp_path / "flow.yaml").write_text("[" * 50000 + "\n")
    (tmp_path / "mixed.yaml").write_text("version: v1\ningress:\n  - " + "{a: " * 100000 + "\n")
    for name, where in (("flow.yaml", "1:33"), ("mixed.yaml", "3:125")):
        r = run("manifest", "-f", tmp_path / name)
        assert r.code == 1 and r.out == ""
        assert r.err.strip().splitlines() == [
            f"enclaver: error: {tmp_path}/{name}:{where}: nested more than 32 levels deep (a manifest needs 4)"]
    # four levels, the most a manifest has, still load
    ok = "version: v1\nname: x\ntarget: t\nsources: {app: a}\ningress:\n  - listen_port: 8443\n    tls: {key_file: k, cert_file: c}\n"
    assert run("manifest", "-f", "-", input=ok).code == 0
