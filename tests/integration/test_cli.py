"""The CLI as a newcomer meets it: option errors that name the command and its help."""
import pytest

from conftest import run


@pytest.mark.parametrize("args, line", [
    (["build", "--bogus"], "enclaver build: unknown option --bogus; see 'enclaver build --help'"),
    (["build", "-f"], "enclaver build: option -f needs a value; see 'enclaver build --help'"),
    (["run", "--pull"], "enclaver run: option --pull needs a value; see 'enclaver run --help'"),
    (["eif", "describe", "--json=yes", "x.eif"], "enclaver eif describe: option --json takes no value"),
    (["kms-local", "--listen"], "enclaver kms-local: option --listen needs a value"),
    (["attest", "verify-eif", "--x"], "enclaver attest verify-eif: unknown option --x"),
    (["policy", "check", "-z"], "enclaver policy check: unknown option -z"),
    (["manifest", "--file"], "enclaver manifest: option --file needs a value"),
])
def test_an_option_error_is_one_line_naming_the_command(args, line, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.code == 2 and r.out == "" and r.err.count("\n") == 1, r
    assert r.err.startswith("enclaver: error: " + line), r
    assert list(tmp_path.iterdir()) == []
