"""Does the sdist and the wheel hold every file of the packages? (Run by .ci/check_wheel.sh.)

A file left out of a release (a template, package data such as ``py.typed``) passes every test of an editable
install and breaks every user; so each file git tracks under the packages must be in both archives. Prints the
package data (the files that are not Python modules) of each, so the CI log lists them.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGES = ("ahl_plugins", "builtin_plugins")


def tracked(root: Path) -> set[str]:
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--", *PACKAGES], capture_output=True, text=True, check=True
    )
    return {line for line in listed.stdout.splitlines() if line}


def sdist_files(path: Path) -> set[str]:
    with tarfile.open(path) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def wheel_files(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


def main(root: Path, sdist: Path, wheel: Path) -> int:
    expected = tracked(root)
    if not expected:
        print(f"no tracked files under {', '.join(PACKAGES)} in {root}: is it a git checkout?", file=sys.stderr)
        return 1
    failed = False
    for kind, path, present in (("sdist", sdist, sdist_files(sdist)), ("wheel", wheel, wheel_files(wheel))):
        missing = sorted(expected - present)
        data = sorted(name for name in present & expected if not name.endswith(".py"))
        print(f"{kind} {path.name}: {len(expected & present)} of {len(expected)} package files; package data:")
        print("\n".join(f"  {name}" for name in data) or "  (none)")
        if missing:
            failed = True
            print(f"{kind} is MISSING {len(missing)} package files:\n" + "\n".join(f"  {m}" for m in missing))
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python3 .ci/package_files.py REPO_ROOT SDIST WHEEL")
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
