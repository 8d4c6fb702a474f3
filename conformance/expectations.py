"""The expectations file: every test on the candidate loop that does not pass, and why.

One line per test: `<test id>  <category>[@<versions>]  <reason>`; `#` starts a comment.
Categories:

  private        permanent: the test inspects CPython's private internals (a `_selector`, a
                 private method of BaseEventLoop, a mock of a stdlib module's internals)
  todo-issue-N   temporary: a feature that issue N brings is not implemented yet
  bug            temporary: a real difference in behaviour, written up in FINDINGS.md

`@3.12,3.13` limits an entry to those Python versions (the suite differs between them);
without it, an entry holds on every version in VERSIONS.

`check` fails on a test that is on the candidate and does not pass but is not listed, on a
listed test that passes (the list only shrinks), and on entries with another category.
`refresh` rewrites the file from a run, keeping the reasons already written.
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PATH = os.path.join(HERE, "expectations.txt")

VERSIONS = ("3.11", "3.12", "3.13")  # the Pythons ferroloop is tested on (./dev test)
CATEGORY_RE = re.compile(r"^(private|bug|todo-issue-\d+)$")
NOT_PASSING = ("failed", "hung", "crashed")

# AbstractEventLoop methods that raise NotImplementedError until an issue lands: used by
# `refresh` to classify new entries. Anything else is left `unclassified` for a human.
WAITING_ON = {
    3: {
        "create_connection",
        "create_server",
        "create_unix_connection",
        "create_unix_server",
        "connect_accepted_socket",
        "create_datagram_endpoint",
        "sendfile",
        "sock_recv",
        "sock_recv_into",
        "sock_recvfrom",
        "sock_recvfrom_into",
        "sock_sendall",
        "sock_sendto",
        "sock_connect",
        "sock_accept",
        "sock_sendfile",
    },
    4: {"start_tls", "connect_read_pipe", "connect_write_pipe", "subprocess_exec", "subprocess_shell"},
}

HEADER = """\
# ferroloop's expected non-passes in CPython's test.test_asyncio (see conformance/README.md).
# Every test that ran on ferroloop and does not pass, one a line:
#   <test id>  <category>[@<python versions>]  <reason>
#   private       permanent: the test inspects CPython's private internals
#   todo-issue-N  temporary: waits on a feature of issue N (networking 3, TLS/pipes/subprocesses 4)
#   bug           temporary: a behavioural difference, see conformance/FINDINGS.md
# An entry without @versions holds on 3.11, 3.12 and 3.13.
# CI fails on an unlisted failure and on a listed test that passes, so this list only shrinks.
# Rewrite it from a run with `python -m conformance refresh` (existing reasons are kept).
"""


def pyver(results):
    """'3.11' from a results file."""
    return ".".join(results["python"].split(".")[:2])


class Entry:
    __slots__ = ("test", "category", "versions", "reason")

    def __init__(self, test, category, reason, versions=None):
        self.test, self.category, self.reason = test, category, reason
        self.versions = None if versions is None else frozenset(versions)  # None: all

    def applies(self, version):
        return self.versions is None or version in self.versions

    def tag(self):
        if self.versions is None:
            return self.category
        return f"{self.category}@{','.join(sorted(self.versions, key=_version_key))}"

    def line(self, width):
        return f"{self.test:<{width}}  {self.tag():<13} {self.reason}".rstrip()


def _version_key(v):
    return tuple(int(p) for p in v.split("."))


def load(path=DEFAULT_PATH):
    entries = {}
    if not os.path.exists(path):
        return entries
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 2:
                raise ValueError(f"{path}:{n}: expected '<test id> <category> <reason>'")
            test, tag = parts[0], parts[1]
            category, _, versions = tag.partition("@")
            entries[test] = Entry(
                test, category, parts[2] if len(parts) > 2 else "", versions.split(",") if versions else None
            )
    return entries


def save(entries, path=DEFAULT_PATH):
    width = max((len(e.test) for e in entries.values()), default=0)
    with open(path, "w") as f:
        f.write(HEADER)
        module = None
        for test in sorted(entries):
            this_module = test.split(".")[0]
            if this_module != module:
                f.write("\n")
                module = this_module
            f.write(entries[test].line(width) + "\n")


def on_candidate(rec):
    return bool(rec.get("created") or rec.get("ran"))


def compare(results, entries):
    """-> dict of lists: unexpected_failures, unexpected_passes, bad_entries, warnings."""
    tests = results["tests"]
    version = pyver(results)
    active = {t: e for t, e in entries.items() if e.applies(version)}
    out = {"unexpected_failures": [], "unexpected_passes": [], "bad_entries": [], "warnings": []}
    for test, rec in sorted(tests.items()):
        listed = active.get(test)
        if rec["outcome"] in NOT_PASSING:
            if listed is None:
                # A module that cannot be loaded hides all its tests: never just a note.
                if on_candidate(rec) or test.startswith("unittest.loader._FailedTest"):
                    out["unexpected_failures"].append((test, rec))
                else:
                    out["warnings"].append(f"{test}: {rec['outcome']} without the candidate loop (not gated)")
        elif rec["outcome"] == "passed" and listed is not None:
            out["unexpected_passes"].append((test, rec))
        elif rec["outcome"] == "skipped" and listed is not None:
            out["warnings"].append(f"{test}: listed but skipped in this run")
    for entry in entries.values():
        rec = tests.get(entry.test) if entry.applies(version) else None
        named = re.search(r"loop\.(\w+)\(\)", entry.reason)
        if (
            rec
            and rec["outcome"] == "failed"
            and entry.category.startswith("todo-issue-")
            and named
            and rec.get("unimplemented") != named.group(1)
        ):
            last = (rec.get("detail") or "").strip().splitlines()
            out["warnings"].append(
                f"{entry.test}: listed as waiting on loop.{named.group(1)}(), "
                f"now fails with: {last[-1][:120] if last else '?'} (update its reason)"
            )
        if not CATEGORY_RE.match(entry.category):
            out["bad_entries"].append(
                f"{entry.test}: category {entry.category!r} (classify it: private, bug or todo-issue-N)"
            )
        elif not entry.reason:
            out["bad_entries"].append(f"{entry.test}: no reason given")
        elif entry.versions is not None and not entry.versions <= set(VERSIONS):
            out["bad_entries"].append(f"{entry.test}: versions {entry.tag()} outside {', '.join(VERSIONS)}")
    return out


def guess(rec):
    """A category and reason for a new entry, from what the failure shows."""
    method = rec.get("unimplemented")
    if method:
        for issue, methods in WAITING_ON.items():
            if method in methods:
                return f"todo-issue-{issue}", f"loop.{method}() not implemented yet"
    last = (rec.get("detail") or "").strip().splitlines()
    return "unclassified", (last[-1] if last else rec["outcome"])[:160]


def _with(entry, versions):
    """The entry limited to `versions` (all of VERSIONS: unlimited); None if empty."""
    versions = frozenset(versions)
    if not versions:
        return None
    return Entry(entry.test, entry.category, entry.reason, None if versions >= set(VERSIONS) else versions)


def refresh(results, entries, *, prune=False):
    """Rewrite the entries for the run's Python version: new entries for unexpected
    failures (limited to this version), this version dropped from entries of tests that
    pass; with prune, also from entries of tests the run did not see (full runs only).
    Entries for other versions stay as they are."""
    tests = results["tests"]
    version = pyver(results)
    new = {}
    for test, entry in entries.items():
        current = entry.versions if entry.versions is not None else frozenset(VERSIONS)
        rec = tests.get(test)
        if rec is None:
            drop = prune
        elif rec["outcome"] in NOT_PASSING:
            drop = False
            if not entry.applies(version) and on_candidate(rec):
                current = current | {version}  # fails here too now, for the reason written
        else:
            drop = rec["outcome"] == "passed"
        if drop and entry.applies(version):
            current = current - {version}
        kept = _with(entry, current)
        if kept is not None:
            new[test] = kept
    for test, rec in tests.items():
        if test not in new and rec["outcome"] in NOT_PASSING and on_candidate(rec):
            new[test] = Entry(test, *guess(rec), versions=[version])
    return new
