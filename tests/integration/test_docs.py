"""The documentation is true: every page of README.md, docs/ and examples/ is walked.

Every command a page shows or names (in code blocks and inline code) must exist with the options
it uses, every file it names must be in the repository (or be one its example makes), and no page
may lean on files outside the repository. Every transcript (a code block of `$ COMMAND` lines,
each followed by the output it shows) is run as a newcomer would type it, in a copy of the
repository's examples and scripts with a fresh state folder, in a network namespace of its own
(so that the ports the pages use are the page's), and its output must match: a line "..." stands
for any lines, "…" for any text within a line.

A page steers its transcripts with HTML comments right before a block, which readers do not see:
    <!-- doc-test: skip REASON -->       the block is not run (it is still checked)
    <!-- doc-test: setup                 shell lines run first, unshown (they must succeed)
    LINES -->
    <!-- doc-test: timeout SECONDS -->    for each of the block's commands (default 120)
"""
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BUILD, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
HELP = ROOT / "src" / "cmd" / "help"


def page_id(p):
    return str(p.relative_to(ROOT))


# --- reading pages ---

class Block:
    def __init__(self, lines, first_line, directives):
        self.lines, self.first_line, self.directives = lines, first_line, directives

    @property
    def is_transcript(self):
        return any(l.startswith("$ ") for l in self.lines) and self.lines[0].startswith("$ ")


def blocks(page):
    """The page's code blocks (fenced, or indented by four spaces after a blank line), each with
    the doc-test directives of the comments right before it."""
    lines = page.read_text().split("\n")
    out, pending, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<!-- doc-test:"):
            text = line
            while "-->" not in text and i + 1 < len(lines):
                i += 1
                text += "\n" + lines[i]
            pending.append(text[len("<!-- doc-test:"):text.rindex("-->")].strip())
            i += 1
            continue
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(Block(lines[i + 1:j], i + 2, pending))
            pending, i = [], j + 1
            continue
        if line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            body = [l[4:] for l in lines[i:j]]
            while body and not body[-1].strip():
                body.pop()
            out.append(Block(body, i + 1, pending))
            pending, i = [], j
            continue
        if line.strip():
            pending = [] if not line.startswith("<!--") else pending
        i += 1
    return out


def transcript(block):
    """[(command, [expected output lines])] of a transcript block; a command ending in a
    backslash continues on the next line."""
    steps, i = [], 0
    while i < len(block.lines):
        line = block.lines[i]
        assert line.startswith("$ "), (block.first_line, line)
        cmd = line[2:]
        while cmd.endswith("\\") and i + 1 < len(block.lines):
            i += 1
            cmd = cmd + "\n" + block.lines[i]
        i += 1
        out = []
        while i < len(block.lines) and not block.lines[i].startswith("$ "):
            out.append(block.lines[i])
            i += 1
        steps.append((cmd, out))
    return steps


def matches(expected, actual):
    """Whether actual (lines) is expected, where "..." is any lines and "…" any text in a line;
    runs of spaces (a table's columns) compare as one."""
    pats = []
    for e in expected:
        e = e.rstrip()
        if e.strip() == "...":
            pats.append(None)
        else:
            e = re.sub(" +", " ", e)
            pats.append(re.compile(".*".join(re.escape(part) for part in e.split("…")) + r"\Z", re.S))
    actual = [re.sub(" +", " ", a.rstrip()) for a in actual]
    while actual and not actual[-1]:
        actual.pop()

    def walk(p, a):
        if p == len(pats):
            return a == len(actual)
        if pats[p] is None:
            return any(walk(p + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and pats[p].match(actual[a]) is not None and walk(p + 1, a + 1)
    return walk(0, 0)


# --- what the tool offers ---

def page_options(text):
    section = text.split("\nOPTIONS\n", 1)[1] if "\nOPTIONS\n" in text else ""
    section = re.split(r"\n[A-Z]", section, 1)[0]
    found = set()
    for line in section.split("\n"):
        if re.match(r"    -", line):
            found |= set(re.findall(r"(?<![\w-])--?[a-zA-Z0-9][a-zA-Z0-9-]*", line))
    return found


def the_cli():
    """{("eif", "build"): (options, subcommands)} from the help pages."""
    cli = {}
    for page in HELP.glob("*.txt"):
        text = page.read_text()
        words = tuple(text.split("\n")[1].strip().split(" - ")[0].split()[1:])
        subs = set()
        if "\nCOMMANDS\n" in text:
            section = re.split(r"\n[A-Z]", text.split("\nCOMMANDS\n", 1)[1], 1)[0]
            subs = {l.strip() for l in section.split("\n") if re.match(r"    \S", l)}
        cli[words] = (page_options(text) | {"-h", "--help"}, subs)
    usage = subprocess.run([BUILD / "enclaver-run", "--help"], capture_output=True, text=True).stdout
    cli[("enclaver-run",)] = (set(re.findall(r"(?<![\w-])--?[a-zA-Z][a-zA-Z0-9-]*", usage)), {"print-manifest", "describe-eif"})
    return cli


INVOCATION = re.compile(r"(?:^|(?<=[\s(\"'`]))(?:build/|\$B/|\./)?(enclaver(?:-run)?)((?:[ \t]+(?:[^\s`\"')|;&<>]|\\\n)+)*)")


def invocations(text):
    """Every `enclaver ...` or `enclaver-run ...` in text, as (program, [words])."""
    for m in INVOCATION.finditer(text):
        words = m.group(2).replace("\\\n", " ").split()
        yield m.group(1), words


def check_invocation(cli, prog, words):
    """What is wrong with this use of the CLI, or None."""
    if prog == "enclaver-run":
        path = ("enclaver-run",)
    else:
        path = ()
        while words and words[0] in ("-v", "--verbose", "--version", "-h", "--help", "[-v]"):
            words = words[1:]
        if not words or not re.match(r"[a-z]", words[0]):
            return None  # a synopsis: enclaver [-v] COMMAND
        if (words[0],) not in cli and words[0] not in ("help", "version"):
            return f"no command \"{words[0]}\""
        path, words = (words[0],), words[1:]
        while words and words[0] in cli.get(path, (set(), set()))[1]:
            path, words = path + (words[0],), words[1:]
        if path == ("help",):
            return None
    options = cli[path][0]
    for w in words:
        for part in re.split(r"[|\[\]()]", w):
            part = part.rstrip(".,:;")
            if re.match(r"--?[a-zA-Z]", part) and not re.match(r"-\d", part):
                name = part.split("=")[0]
                if name not in options:
                    return f"{' '.join(path)} has no option {name}"
    return None


def repo_paths(text):
    for m in re.finditer(r"(?<![\w./-])((?:examples|scripts|docs|src|tests|bench)/[\w./-]*[\w/])", text):
        yield m.group(1)


def generated(path):
    """A file an example makes (listed in the .gitignore beside it)."""
    p = ROOT / path
    ignore = p.parent / ".gitignore"
    return ignore.exists() and p.name in ignore.read_text().split()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_command_option_and_file_a_page_names_exists(page):
    cli = the_cli()
    text = page.read_text()
    problems = []
    code = [("\n".join(b.lines), b.first_line) for b in blocks(page)]
    inline = [(m.group(1), text[:m.start()].count("\n") + 1) for m in re.finditer(r"`([^`\n]+)`", text)]
    for chunk, line in code + inline:
        for prog, words in invocations(chunk):
            why = check_invocation(cli, prog, words)
            if why:
                problems.append(f"line {line}: {prog} {' '.join(words)}: {why}")
        for target in re.findall(r"(?:^|\$ |\s)make ([a-z][a-z-]*)", chunk):
            rules = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
            if target not in rules:
                problems.append(f"line {line}: make {target}: no such target")
    for path in set(repo_paths(text)):
        if not (ROOT / path).exists() and not generated(path):
            problems.append(f"{path}: not in the repository")
    # the repository stands alone: a clone has no spec/, vectors/ or ARCHITECTURE.md beside it
    for m in re.finditer(r"(?<![\w/.-])(spec/[\w.-]+|vectors/[\w.-]*|\.\./shared\S*|ARCHITECTURE\.md)", text):
        problems.append(f"line {text[:m.start()].count(chr(10)) + 1}: {m.group(1)} is outside the repository")
    assert problems == [], "\n".join(problems)


# --- running transcripts ---

def sanitized():
    return "__asan_init" in subprocess.run(["nm", "-D", BUILD / "enclaver"], capture_output=True, text=True).stdout


class Shell:
    """One bash for a page, in a network namespace of its own, as a newcomer's terminal."""

    def __init__(self, cwd, env):
        self.cwd, self.n = cwd, 0
        self.proc = subprocess.Popen(["unshare", "--net", "bash", "--norc", "--noprofile"], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.netns = None
        self.run("ip link set lo up", 10)
        self.netns = os.readlink(f"/proc/{self.proc.pid}/ns/net")

    def run(self, cmd, timeout, background=False):
        """(exit code, output) of cmd typed into the shell; a background command's output is what
        it wrote so far."""
        self.n += 1
        out = self.cwd / f".doc-test-{self.n}.out"
        mark = f"::doc-test {self.n}::"
        body = f"{cmd} &" if background else cmd
        self.proc.stdin.write(f"{{\n{body}\n}} >{shlex.quote(str(out))} 2>&1 </dev/null\n"
                              f"echo \"{mark}$?\"\n")
        self.proc.stdin.flush()
        deadline = time.time() + timeout
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"the shell ended while running: {cmd}")
            if line.startswith(mark):
                code = int(line[len(mark):])
                break
            if time.time() > deadline:
                raise AssertionError(f"no end within {timeout} s: {cmd}")
        return code, out

    def close(self):
        try:
            self.proc.stdin.write("kill $(jobs -p) 2>/dev/null; wait; exit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        # whatever the page left running in its namespace (detached enclaves, daemons): ours alone
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = []
            for p in pathlib.Path("/proc").iterdir():
                if p.name.isdigit():
                    try:
                        if self.netns and os.readlink(p / "ns" / "net") == self.netns:
                            left.append(int(p.name))
                    except OSError:
                        pass
            for pid in left:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            if left:
                time.sleep(3)


def scratch_copy(d):
    """What a page's commands may touch: a copy of the repository's examples, scripts and test
    data, and its build."""
    for part in ("examples", "scripts"):
        shutil.copytree(ROOT / part, d / part, symlinks=True,
                        ignore=shutil.ignore_patterns("*.tar", "*.eif", "__pycache__"))
    (d / "tests" / "data").mkdir(parents=True)
    shutil.copytree(ROOT / "tests" / "data" / "vectors", d / "tests" / "data" / "vectors")
    (d / "build").symlink_to(BUILD)


TRANSCRIPT_PAGES = [p for p in PAGES if any(b.is_transcript for b in blocks(p))]


@pytest.mark.skipif(os.geteuid() != 0, reason="pages run local enclaves, which need root")
@pytest.mark.parametrize("page", TRANSCRIPT_PAGES, ids=page_id)
def test_every_transcript_of_a_page_does_what_it_shows(page, tmp_path):
    if sanitized():
        pytest.skip("the pages are held to the plain build; the sanitized one runs the same code in the other tests")
    d = tmp_path / "repo"
    d.mkdir()
    scratch_copy(d)
    # a newcomer's environment: no AWS settings, the default state folder in a home of the page's own
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in ("ENCLAVER_STATE_DIR", "XDG_DATA_HOME")}
    env.update(PATH=f"{BUILD}:{env['PATH']}", HOME=str(d / "home"),
               AWS_CONFIG_FILE=str(d / "home" / "aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(d / "home" / "aws-creds"),
               TERM="dumb", COLUMNS="200")
    (d / "home").mkdir()
    shell = Shell(d, env)
    failures = []
    try:
        for block in blocks(page):
            if not block.is_transcript:
                continue
            if any(x.startswith("skip") for x in block.directives):
                continue
            timeout = 120
            for x in block.directives:
                if x.startswith("timeout"):
                    timeout = int(x.split()[1])
            for x in block.directives:
                if x.startswith("setup"):
                    code, out = shell.run(x[len("setup"):].strip(), timeout)
                    assert code == 0, f"{page_id(page)} line {block.first_line}: setup failed:\n{out.read_text()}"
            for cmd, expected in transcript(block):
                background = cmd.rstrip().endswith("&")
                code, out = shell.run(cmd.rstrip().rstrip("&") if background else cmd, timeout, background)
                deadline = time.time() + (20 if background else 30)
                while True:
                    actual = out.read_text(errors="replace").split("\n")
                    if matches(expected, actual):
                        break
                    # output that comes later: a background command's, or an enclave's log
                    if time.time() > deadline or not (background or re.match(r"enclaver (logs|ps)\b", cmd)):
                        failures.append(f"{page_id(page)} line {block.first_line}: $ {cmd}\n"
                                        f"--- shown:\n" + "\n".join(expected) +
                                        "\n--- got (exit " + str(code) + "):\n" + "\n".join(actual))
                        break
                    time.sleep(0.5)
                    if not background:
                        code, out = shell.run(cmd, timeout)
                if failures:
                    break
            if failures:
                break
    finally:
        shell.close()
    assert failures == [], "\n\n".join(failures)


@pytest.mark.parametrize("page", sorted(HELP.glob("*.txt")), ids=lambda p: p.name)
def test_every_example_on_a_help_page_uses_what_exists(page):
    cli = the_cli()
    problems = []
    for n, line in enumerate(page.read_text().split("\n"), 1):
        if line.strip().startswith("$ "):
            for prog, words in invocations(line.strip()[2:]):
                why = check_invocation(cli, prog, words)
                if why:
                    problems.append(f"line {n}: {line.strip()}: {why}")
    for path in set(repo_paths(page.read_text())):
        if not (ROOT / path).exists() and not generated(path):
            problems.append(f"{path}: not in the repository")
    assert problems == [], "\n".join(problems)
