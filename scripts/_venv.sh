# Sourced by scripts/test and scripts/demo: make .venv (once) and install the project into it.
# Needs only Python >= 3.11 and pip. Set PYTHON to choose the interpreter.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.quotaflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade "pip>=25.1"  # dependency groups need 25.1
  .venv/bin/python -m pip install --quiet -e ".[providers,redis,emulator]" --group dev
  touch "$stamp"
fi
