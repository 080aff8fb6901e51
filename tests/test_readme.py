"""README.md stays true: its shell blocks run, in order, against a gateway started by `make run`.

Which blocks: every ```sh, ```bash and ```console block of README.md, in document order, except a
block right after a line `<!-- not run: REASON -->` (for what cannot run here, e.g. `make run`
itself, which this test runs in the background the way the walkthrough says: "in a second
terminal, while `make run` is running").

How: all blocks run in one bash session (`set -euo pipefail`), as a user types them in that
second terminal: what one block sets (`KEY`, `MEMFAULT_ORG_TOKEN`) the next ones use. The working
directory is a fresh temporary one with `.venv` linked to the project's; HOME is a fresh one too,
whose `.curlrc` says `--fail-with-body`, so a request answered 4xx/5xx fails its block. The one
change made to a command: `127.0.0.1:8080` becomes the free port the gateway runs on, set the
documented way (`OTA_PORT=… make run`).

Expected output: a comment `# -> CLAIMS` after a command (on its line, or alone on the next line)
states what it prints; CLAIMS are separated by `; `. About JSON output, a claim is one of
- `PATH = VALUE`: the output is JSON and the value at PATH (`a.b[0].c`) is VALUE (`…`: any text);
- `PATH: K1, K2`: the JSON object at PATH has the members K1, K2 (each may be a dotted path);
- `no PATH`: the JSON output has nothing at PATH;
- other text, as about any other output: each of its comma-separated parts appears in the output
  (a status line, a header, a line a tool prints), whatever the case.
In a ```console block, `$ ` lines are commands and the lines after one are lines of its output.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.pgembed import EmbeddedPostgres, free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DEMO = {"organization": "demo-org", "project": "demo-project", "org token": "oat_demo_org_token_change_me",
        "project key": "demo0project0key0change0me000000"}
FENCE = re.compile(r"^```(sh|bash|console)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
SKIP = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->\s*$")
CLAIM = re.compile(r"(?:^|\s)#\s->\s(.*)$")


@dataclass
class Command:
    text: str
    line: int                                   # README line of its first line
    claims: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # console blocks: lines of expected output


def blocks(text: str) -> list[tuple[int, str, str]]:
    """(first line, language, body) of every block to run, in order; a marked block is left out."""
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if SKIP.search(before):
            continue
        out.append((text.count("\n", 0, m.start()) + 2, m.group(1), m.group(2)))
    return out


def commands(first_line: int, lang: str, body: str) -> list[Command]:
    """A block as commands: lines joined across `\\` continuations; claims attached."""
    cmds: list[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        if lang == "console" and not line.startswith("$ "):
            if cmds:
                cmds[-1].output.append(line)
            i += 1
            continue
        parts = [line[2:] if lang == "console" else line]
        while parts[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            parts.append(lines[i])
        i += 1
        text = "\n".join(parts)
        claim = CLAIM.search(parts[-1])
        if not text.strip() or text.lstrip().startswith("#"):  # a comment line: claims of the command above
            if claim and cmds:
                cmds[-1].claims += claim.group(1).split("; ")
            continue
        cmds.append(Command(text, first_line + start, claim.group(1).split("; ") if claim else []))
    return cmds


def _at(doc, path: str):
    """The value at a dotted path with [i] indexes; KeyError when there is none."""
    for part in path.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if m is None:
            raise KeyError(path)
        if m.group(1):
            if not isinstance(doc, dict) or m.group(1) not in doc:
                raise KeyError(path)
            doc = doc[m.group(1)]
        for index in re.findall(r"\[(\d+)\]", m.group(2)):
            if not isinstance(doc, list) or int(index) >= len(doc):
                raise KeyError(path)
            doc = doc[int(index)]
    return doc


def _pattern(text: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(p) for p in text.split("…")), re.DOTALL)


def check_claim(claim: str, output: str) -> str | None:
    """None when the output bears the claim out, else what is wrong."""
    claim = claim.strip()
    m = re.fullmatch(r"(no )?([\w\-\[\].]+)(?: = (.+)|: (.+))?", claim)
    try:
        doc = json.loads(output)
    except ValueError:
        m = None  # a claim about other output is text
    if m and (m.group(1) or m.group(3) or m.group(4)):
        try:
            value = _at(doc, m.group(2))
        except KeyError:
            return None if m.group(1) else f"{claim!r}: nothing at {m.group(2)}"
        if m.group(1):
            return f"{claim!r}: there is {value!r}"
        if m.group(3):
            return None if _pattern(m.group(3)).fullmatch(str(value)) else f"{claim!r}: it is {value!r}"
        missing = []
        for key in (k.strip() for k in m.group(4).split(",")):
            try:
                _at(value, key)
            except KeyError:
                missing.append(key)
        return f"{claim!r}: no {missing}" if missing else None
    missing = [p for p in (p.strip() for p in claim.split(", ")) if p.lower() not in output.lower()]
    return f"{claim!r}: {missing} not in the output" if missing else None


def driver(cmds: list[Command], port: int, outdir: Path) -> str:
    """One bash script running every command in the current shell, each one's output to a file."""
    script = ["set -euo pipefail"]
    for n, c in enumerate(cmds):
        text = c.text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        script.append(f"echo {n} > {outdir}/current")
        script.append(f"{{ {text}\n}} > {outdir}/{n}.out 2>&1")
    script.append(f"echo done > {outdir}/current")
    return "\n".join(script) + "\n"


# -- make run ---------------------------------------------------------------------------------

class MakeRun:
    """`OTA_PORT=… make run` in its own process group (Ctrl-C stops it: SIGINT to the group),
    on an embedded PostgreSQL in a fresh data directory: a first run."""

    def __init__(self, data_dir: Path, port: int, env: dict):
        self.data_dir, self.port = data_dir, port
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (read while make runs, closed with the test)
        self.proc = subprocess.Popen(["make", "--no-print-directory", "-C", str(ROOT), "run",
                                      f"VENV={Path(sys.prefix)}"],
                                     env={**env, "OTA_PORT": str(port), "OTA_DATA_DIR": str(data_dir)},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            assert self.proc.poll() is None, f"make run exited ({self.proc.returncode}):\n{out}"
            time.sleep(0.1)
        raise AssertionError(f"make run did not print {text!r} in {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        with_signal = self.proc.poll() is None
        if with_signal:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        pg = EmbeddedPostgres(self.data_dir)  # a gateway killed before stopping its cluster: stop it
        if (pg.pgdata / "postmaster.pid").exists() and pg.bindir is not None:
            pg._started = True
            pg.stop()


def user_env(home: Path) -> dict:
    """A user's shell: PATH and locale from here, a fresh HOME, no OTA_*/MEMFAULT_*/DATABASE_URL."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTA_", "MEMFAULT_", "DATABASE_URL", "PYTEST", "CURL_HOME"))}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    return env


TOOLS = ("make", "curl", "jq", "openssl", "sha256sum", "base64", "cmp")  # what the blocks call (make test-deps)


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    """The gateway of the walkthrough, started as a user does, on a port set by OTA_PORT."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:  # on a developer machine the test skips; in CI (CI=true) it must run
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"missing {missing} (make test-deps installs them)")
    home = tmp_path_factory.mktemp("home")
    (home / ".curlrc").write_text("fail-with-body\n")
    # not under pytest's private temporary root: the cluster's server user must reach the data dir
    data_dir = Path(tempfile.mkdtemp(prefix="ota-readme-"))
    run = MakeRun(data_dir, free_port(), {**user_env(home), "OTA_WORKERS": "1"})
    try:
        run.wait_for("project key", timeout=90)
        yield run, home
    finally:
        run.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_first_make_run_prints_its_credentials_last(make_run):
    run, _ = make_run
    time.sleep(1.0)  # anything printed after the credentials (a late log line) would show by now
    out = run.output()
    assert f"listening on http://127.0.0.1:{run.port} " in out and "1 worker(s)" in out, out  # OTA_PORT, OTA_WORKERS
    lines = out.rstrip("\n").splitlines()
    assert lines[-6] == "" and out.endswith("\n\n"), "the banner stands apart:\n" + out
    assert lines[-5].strip().startswith(f"ota-gateway is ready on http://127.0.0.1:{run.port} "), out
    printed = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines[-4:])
    assert printed == DEMO, out  # one credential a line, label and value apart
    assert "embedded PostgreSQL running" in out.split("ota-gateway is ready")[0], "a first run starts its cluster"


def test_readme_shell_blocks_run_as_written(make_run, tmp_path):
    run, home = make_run
    cmds = [c for block in blocks(README.read_text()) for c in commands(*block)]
    assert any("memfault" in c.text for c in cmds) and any("hawkbit" in c.text for c in cmds), "the walkthrough"
    workdir, outdir = tmp_path / "work", tmp_path / "out"
    workdir.mkdir(), outdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "walkthrough.sh").write_text(driver(cmds, run.port, outdir))
    done = subprocess.run(["bash", str(tmp_path / "walkthrough.sh")], cwd=workdir, env=user_env(home),
                          capture_output=True, text=True, timeout=240, check=False)
    current = (outdir / "current").read_text().strip()
    if done.returncode != 0 or current != "done":
        c = cmds[int(current)]
        out = (outdir / f"{current}.out").read_text(errors="replace") if (outdir / f"{current}.out").exists() else ""
        pytest.fail(f"README.md line {c.line} failed ({done.returncode}):\n{c.text}\n--- output:\n{out[-3000:]}"
                    f"\n{done.stderr[-1000:]}")
    wrong = []
    for n, c in enumerate(cmds):
        out = (outdir / f"{n}.out").read_text(errors="replace")
        wrong += [f"line {c.line}: {w}" for w in (check_claim(claim, out) for claim in c.claims) if w]
        wrong += [f"line {c.line}: {line!r} not printed" for line in c.output
                  if line.strip() and not _pattern(line.strip()).search(out)]
    assert not wrong, "README.md says otherwise:\n" + "\n".join(wrong)
    assert sum(len(c.claims) for c in cmds) >= 4, "the walkthrough's expected answers are checked"


# -- the rules themselves ---------------------------------------------------------------------

def test_block_rules():
    text = ("x\n<!-- not run: starts a server -->\n```sh\nmake run\n```\n\n```bash\na \\\n  b   # -> one, two\n"
            "# -> three\n```\n```console\n$ echo hi\nhi\n```\n```python\nno\n```\n")
    cmds = [c for block in blocks(text) for c in commands(*block)]
    assert [(c.text, c.claims, c.output) for c in cmds] == [
        ("a \\\n  b   # -> one, two", ["one, two", "three"], []), ("echo hi", [], ["hi"])]
    doc = '{"_links": {"a-b": {"href": "http://x/deploymentBase/1?c=5"}}, "l": [{"k": 1}]}'
    assert check_claim("_links.a-b.href = …/deploymentBase/1?c=…", doc) is None
    assert check_claim("_links.a-b.href = …/deploymentBase/2?c=…", doc)
    assert check_claim("l[0]: k", doc) is None and check_claim("l[0]: k, z", doc)
    assert check_claim("no _links.deploymentBase", doc) is None and check_claim("no l[0].k", doc)
    assert check_claim("HTTP/1.1 204 No Content, memfault-reason: latest",
                       "HTTP/1.1 204 No Content\r\nMemfault-Reason: latest\r\n") is None
    assert check_claim("HTTP/1.1 204 No Content", "HTTP/1.1 200 OK")
