#!/usr/bin/env bash
# Create or reuse flowff's Python environment, then print its path on stdout.
#
# The environment lives outside the clone, in ${FLOWFF_ENV_ROOT:-~/.cache/flowff/envs}/<key>,
# where <key> hashes the Python version and the dependency spec in pyproject.toml, so a warm
# re-run installs nothing and a changed spec builds a fresh environment beside the old one.
# Set FLOWFF_ENV_DIR to use a directory of your choice instead.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${FLOWFF_PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "flowff needs Python 3.11 (set FLOWFF_PYTHON)" >&2; exit 1; }

spec="$("$py" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib, platform
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = sorted(p["dependencies"]) + sorted(p["optional-dependencies"]["test"])
print(platform.python_version(), *deps, sep="\n")
PY
)"
key="$(printf '%s' "$spec" | sha256sum | cut -c1-16)"
env_dir="${FLOWFF_ENV_DIR:-${FLOWFF_ENV_ROOT:-$HOME/.cache/flowff/envs}/$key}"

mkdir -p "$(dirname "$env_dir")"
exec 9>"$env_dir.lock"
flock 9  # one builder at a time; others wait, then reuse
if [ ! -f "$env_dir/.flowff-complete" ]; then
  echo "flowff: building environment in $env_dir (once; ~5 GB, several minutes)" >&2
  rm -rf "$env_dir"
  "$py" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade "pip>=24" "setuptools>=68" wheel >&2
  printf '%s\n' "$spec" | tail -n +2 > "$env_dir/requirements.txt"
  "$env_dir/bin/python" -m pip install --quiet -r "$env_dir/requirements.txt" >&2
  touch "$env_dir/.flowff-complete"
fi

# Point the environment at this checkout (editable install, no dependencies: seconds); redone
# when the checkout moves or its pyproject.toml changes (entry points, package data).
stamp="$env_dir/.flowff-editable-$(printf '%s' "$repo" "$(cat "$repo/pyproject.toml")" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -f "$env_dir"/.flowff-editable-*
  "$env_dir/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$repo" >&2
  touch "$stamp"
fi
flock -u 9
echo "$env_dir"
