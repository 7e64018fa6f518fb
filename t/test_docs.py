"""The manual pages and the README against what the code does: every key
the parser takes is a key nettcpd.ini(5) documents, and the reverse (each
tried on the real binary with -t); the keys a reload refuses are the ones
both pages list as taking a restart; every metric family a live /metrics
serves is in nettcpd(8)'s METRICS, by its whole name, and the reverse;
every src/*.c (and every header that is no .c's interface) is in the
README's source layout; groff reads the pages without a warning."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import NETTCPD, SLOW, SRCDIR, Daemon, free_port, run_tests  # noqa: E402


def read(*path):
    with open(os.path.join(SRCDIR, *path), encoding="utf-8") as f:
        return f.read()


def section(page, name):
    """The text of one .SH section of a manual page."""
    m = re.search(r"^\.SH " + name + r"\n(.*?)(?=^\.SH )", page, re.M | re.S)
    assert m, f"no section {name}"
    return m.group(1)


def parser_keys():
    """(section, key) for every key the parser's tables and comparisons name."""
    glob = re.findall(r'\[GK_\w+\] = "(\w+)"', read("src", "config_global.c"))
    glob += re.findall(r'\[CK_\w+\] = "(\w+)"', read("src", "config_control.c"))
    route_src = read("src", "config_route.c")
    route = re.findall(r'\[TK_\w+\] = "(\w+)"', route_src)
    route += re.findall(r'strcmp\(name, "(\w+)"\)', route_src)
    assert len(glob) > 20 and len(route) > 8, (glob, route)
    return {("global", k) for k in glob} | {("route", k) for k in route}


def documented_keys():
    """(section, key) for every key heading of nettcpd.ini(5)."""
    page = read("man", "nettcpd.ini.5")
    keys = set()
    for sect, name in (("global", "GLOBAL SETTINGS"), ("route", "ROUTES")):
        for k in re.findall(r"^\.T[PQ]\n\\fB(\w+) =", section(page, name), re.M):
            keys.add((sect, k))
    return keys


def check_output(text):
    """nettcpd -t on a file holding text: (exit status, stderr)."""
    d = tempfile.mkdtemp(prefix="nettcpd-test-")
    try:
        path = os.path.join(d, "nettcpd.ini")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([NETTCPD, "-t", "-c", path], capture_output=True,
                           text=True, timeout=30 * SLOW)
        return r.returncode, r.stderr
    finally:
        shutil.rmtree(d)


def test_every_key_documented_and_accepted():
    parsed, documented = parser_keys(), documented_keys()
    assert parsed - documented == set(), \
        f"keys nettcpd.ini(5) does not document: {sorted(parsed - documented)}"
    assert documented - parsed == set(), \
        f"keys nettcpd.ini(5) documents that the parser lacks: {sorted(documented - parsed)}"
    # The binary itself: each key, with a value it may well refuse, is
    # never an unknown key in its section; a made-up one is.
    lines = ["[global]"] + [f"{k} = x" for s, k in sorted(parsed) if s == "global"]
    lines += ["[r]"] + [f"{k} = x" for s, k in sorted(parsed) if s == "route"]
    lines += ["[global2]", "no_such_key = 1"]
    rc, err = check_output("\n".join(lines) + "\n")
    assert rc == 1, (rc, err)
    unknown = re.findall(r"unknown key '(\w+)'", err)
    assert unknown == ["no_such_key"], err


def restart_keys():
    src = read("src", "generation.c")
    body = re.search(r"generation_needs_restart\(.*?\n}\n", src, re.S).group(0)
    keys = set(re.findall(r'return "(\w+)";', body))
    assert len(keys) > 10, keys
    return keys


def listed_keys(text):
    return set(re.findall(r"^\.BR?\s+\\?%?(\w+)", text, re.M))


def test_restart_keys_listed():
    want = restart_keys()
    ini = section(read("man", "nettcpd.ini.5"), "GLOBAL SETTINGS")
    ini = re.search(r"^\.B SIGHUP\n(.*?)take a restart", ini, re.M | re.S).group(1)
    ini = ini[ini.index("addresses are opened"):]
    assert listed_keys(ini) == want, (sorted(listed_keys(ini) ^ want), "nettcpd.ini(5)")
    eight = section(read("man", "nettcpd.8"), "SIGNALS")
    eight = re.search(r"take a restart:\n(.*?)A reload that changes one", eight,
                      re.S).group(1)
    assert listed_keys(eight) == want, (sorted(listed_keys(eight) ^ want), "nettcpd(8)")


def served_families():
    port, mport = free_port(), free_port()
    with Daemon(raw_config=f"[global]\nlisten = 127.0.0.1:{port}\n"
                           f"metrics = 127.0.0.1:{mport}\n") as d:
        body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics",
                                      timeout=10 * SLOW).read().decode()
    return dict(re.findall(r"^# TYPE (\w+) (\w+)$", body, re.M))


def test_metric_families_documented():
    served = served_families()
    assert len(served) > 30, served
    text = section(read("man", "nettcpd.8"), "METRICS")
    named = set()
    for n in re.findall(r"\b((?:nettcpd|process)_\w+)", text):
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        named.add(base if served.get(base) == "histogram" else n)
    assert set(served) - named == set(), \
        f"served, not in nettcpd(8) METRICS: {sorted(set(served) - named)}"
    assert named - set(served) == set(), \
        f"in nettcpd(8) METRICS, not served: {sorted(named - set(served))}"


def test_readme_names_every_source_file():
    readme = read("README")
    layout = re.search(r"^Source layout\n-+\n(.*?)\n\n\n", readme, re.M | re.S).group(1)
    named = set(re.findall(r"\b(src/\w+\.[ch])\b", layout))
    listing = os.listdir(os.path.join(SRCDIR, "src"))
    # every .c, and every .h that is no .c's interface
    files = {f"src/{f}" for f in listing if f.endswith(".c") or (
        f.endswith(".h") and f[:-2] + ".c" not in listing)}
    assert files - named == set(), f"not in the README's source layout: {sorted(files - named)}"
    missing = {n for n in named if not os.path.exists(os.path.join(SRCDIR, n))}
    assert missing == set(), f"the README names files that do not exist: {sorted(missing)}"


def test_man_pages_render_without_warnings():
    if shutil.which("groff") is None:
        raise AssertionError("groff is not installed (groff-base)")
    for page in ("nettcpd.8", "nettcpd.ini.5", "nettcp-probe.1"):
        r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(SRCDIR, "man", page)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)


if __name__ == "__main__":
    run_tests(globals())
