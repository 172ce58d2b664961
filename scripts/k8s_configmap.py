"""
Write k8s/base/configmap-locustfiles.yaml from locustfiles/*.py.

Kustomize refuses files outside the kustomization's folder, so the manifests
carry the locustfiles in a ConfigMap of their own; this script keeps it equal
to locustfiles/ (tests/test_k8s.py checks that it is).

    python scripts/k8s_configmap.py           # rewrite the ConfigMap
    python scripts/k8s_configmap.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILES = REPO_ROOT / "locustfiles"
CONFIGMAP = REPO_ROOT / "k8s" / "base" / "configmap-locustfiles.yaml"
NAME = "wslocust-locustfiles"

_HEADER = """\
# Generated from locustfiles/ by scripts/k8s_configmap.py: edit the locustfiles,
# then run `python scripts/k8s_configmap.py` (tests/test_k8s.py checks that they agree).
# Mounted at /app/locustfiles in the master and the workers; LOCUST_LOCUSTFILE
# (in configmap-run.yaml) says which one runs. To run your own locustfile, add it
# here, or mount another ConfigMap at /app/locustfiles.
"""


def locustfiles(folder: Path = LOCUSTFILES) -> dict[str, str]:
    """The locustfiles by file name, as the ConfigMap must carry them."""
    return {path.name: path.read_text() for path in sorted(folder.glob("*.py"))}


def render(files: dict[str, str]) -> str:
    """The ConfigMap's YAML: each file as a literal block, readable in a diff."""
    lines = [
        _HEADER.rstrip("\n"),
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        f"  name: {NAME}",
        "  labels:",
        "    app.kubernetes.io/name: wslocust",
        "data:",
    ]
    for name, text in files.items():
        # "|" keeps exactly one final newline; "|-" none, "|+" all of them.
        chomp = "" if text.endswith("\n") and not text.endswith("\n\n") else ("-" if not text.endswith("\n") else "+")
        lines.append(f"  {name}: |{chomp}")
        lines.extend(("    " + line) if line else "" for line in text.splitlines())
    rendered = "\n".join(lines) + "\n"
    loaded = yaml.safe_load(rendered)
    if loaded["data"] != files:  # e.g. a file whose first line is indented, or with tabs
        raise ValueError("a locustfile cannot be written as a YAML literal block; check its first line")
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the ConfigMap is up to date")
    args = parser.parse_args(argv)
    expected = render(locustfiles())
    current = CONFIGMAP.read_text() if CONFIGMAP.exists() else ""
    if args.check:
        if current != expected:
            print(f"{CONFIGMAP.relative_to(REPO_ROOT)} is out of date: run python scripts/k8s_configmap.py")
            return 1
        return 0
    if current != expected:
        CONFIGMAP.write_text(expected)
        print(f"wrote {CONFIGMAP.relative_to(REPO_ROOT)} ({len(locustfiles())} locustfiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
