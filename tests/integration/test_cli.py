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


# --- help pages, man pages and completions: one source, src/cmd/help ---

import os
import re
import subprocess

from conftest import BUILD, ROOT

HELP = ROOT / "src" / "cmd" / "help"
PAGES = sorted(HELP.glob("*.txt"))


def words_of(page):
    name = page.read_text().split("\n")[1].strip().split(" - ")[0]
    return name.split()[1:]


def documented_options(page):
    text = page.read_text()
    section = text.split("\nOPTIONS\n", 1)[1] if "\nOPTIONS\n" in text else ""
    section = re.split(r"\n[A-Z]", section, 1)[0]
    return {n for line in section.split("\n") if re.match(r"    -", line)
            for n in re.findall(r"--[a-z][a-z0-9-]*", line)}


def code_options():
    """{command: long options} from the getopt tables in src/cmd, tied to their command through
    the cmd_bad_option call of the same function."""
    found = {}
    for f in (ROOT / "src" / "cmd").glob("*.c"):
        text = f.read_text()
        for fn in re.split(r"\n(?=(?:static )?int [a-z_]+\()", text):
            names = re.findall(r'\{ "([a-z][a-z0-9-]*)", (?:no|required|optional)_argument', fn)
            cmds = re.findall(r'cmd_bad_option\(([^,]*?), argv', fn)
            if not names or not cmds:
                continue
            for cmd in re.findall(r'"([a-z][a-z -]*)"', cmds[0]):
                found[cmd] = {"--" + n for n in names}
    return found


def test_every_page_is_its_commands_help_and_creates_nothing(tmp_path):
    env = dict(os.environ, ENCLAVER_STATE_DIR=str(tmp_path / "state"))
    (tmp_path / "cwd").mkdir()
    for page in PAGES:
        words = words_of(page)
        assert page.name == "-".join(["enclaver", *words]) + ".txt"
        if words == ["help"]:
            continue
        for args in ([*words, "--help"], ["help", *words]):
            r = run(*args, cwd=tmp_path / "cwd", env=env)
            assert r.code == 0 and r.out == page.read_text() and r.err == "", (args, r)
    assert list((tmp_path / "cwd").iterdir()) == [] and not (tmp_path / "state").exists()
    r = run("help", "nonsense")
    assert r.code == 2 and "no help page for \"enclaver nonsense\"" in r.err


def test_every_option_the_code_takes_is_on_its_page_and_no_other():
    code = code_options()
    by_cmd = {" ".join(words_of(p)): p for p in PAGES}
    assert set(code) <= set(by_cmd), set(code) - set(by_cmd)
    for cmd, opts in code.items():
        assert documented_options(by_cmd[cmd]) == opts, cmd


def test_man_pages_render_without_warnings_and_completions_complete():
    man = BUILD / "src" / "cmd" / "help"
    for page in PAGES:
        f = man / page.name.replace(".txt", ".1")
        p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", f], capture_output=True, text=True)
        assert p.returncode == 0 and p.stderr == "", (f, p.stderr)
    comp = man / "enclaver"

    def complete(*words):
        script = (f"source {comp}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
                  "COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _enclaver; echo \"${COMPREPLY[*]}\"")
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()

    assert complete("enclaver", "") == sorted(["attest", "build", "eif", "help", "kms-local", "logs", "manifest",
                                               "policy", "ps", "rm", "run", "stop", "version"])
    assert complete("enclaver", "eif", "") == ["bootstrap", "build", "describe", "extract", "pcr", "sign"]
    assert complete("enclaver", "run", "--launcher", "") == ["local", "vm", "nitro", "nitro-cli"]
    assert "--eif-only" in complete("enclaver", "build", "--e")
    assert complete("enclaver", "attest", "verify-eif", "--al") == ["--allow-debug"]
    p = subprocess.run(["zsh", "-c", f"source {man / '_enclaver'} 2>/dev/null; whence -w _enclaver_eif_build"],
                       capture_output=True, text=True)
    assert "function" in p.stdout, p


def test_man_pages_and_completions_install_with_the_tool(tmp_path):
    p = subprocess.run(["meson", "install", "-C", str(BUILD), "--destdir", str(tmp_path), "--no-rebuild",
                        "--quiet"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    files = {str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if f.is_file()}
    prefix = subprocess.run(["meson", "introspect", "--buildoptions", str(BUILD)], capture_output=True,
                            text=True).stdout
    import json
    opts = {o["name"]: o["value"] for o in json.loads(prefix)}
    pre = opts["prefix"].lstrip("/")
    for page in PAGES:
        assert f"{pre}/{opts['mandir']}/man1/{page.name.replace('.txt', '.1')}" in files
    assert f"{pre}/{opts['datadir']}/bash-completion/completions/enclaver" in files
    assert f"{pre}/{opts['datadir']}/zsh/vendor-completions/_enclaver" in files
    assert f"{pre}/{opts['bindir']}/enclaver" in files


def test_stop_signals_only_runners_and_only_from_a_folder_of_our_own(tmp_path):
    # The attack: a record in the runs folder naming a process that is not an enclave (here a
    # sleep of ours, with its real pid and start time), so that enclaver stop kills it.
    import json
    env = dict(os.environ, ENCLAVER_STATE_DIR=str(tmp_path / "state"))
    victim = subprocess.Popen(["sleep", "60"])
    try:
        start = int(open(f"/proc/{victim.pid}/stat").read().rsplit(")", 1)[1].split()[19])
        run_dir = tmp_path / "state" / "runs" / "forged"
        run_dir.mkdir(parents=True, mode=0o700)
        (tmp_path / "state" / "runs").chmod(0o700)
        (run_dir / "run.json").write_text(json.dumps({"Name": "forged", "Pid": victim.pid, "Start": start,
                                                      "Detached": True, "Created": "2026-01-01T00:00:00Z"}))
        assert [r["Name"] for r in json.loads(run("ps", "--json", env=env).out) if r["Kind"] == "eif"] == ["forged"]
        r = run("stop", "-t", "1", "forged", env=env)
        assert r.code == 0 and victim.poll() is None  # listed as running, but not an enclaver-run: untouched
        # a runs folder others may write in is not believed at all
        (tmp_path / "state" / "runs").chmod(0o777)
        for args in (["ps"], ["stop", "forged"], ["logs", "forged"], ["rm", "forged"]):
            r = run(*args, env=env)
            assert r.code == 1 and f"runs: not this user's own folder (owner {os.geteuid()}, mode 777)" in r.err, (args, r)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
