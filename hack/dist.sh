#!/usr/bin/env bash
# `make dist`: what a user installs from, into dist/ (or the directory given as $1):
#   slipway-<version>-py3-none-any.whl, slipway-<version>.tar.gz   (python -m build)
#   slipway-<version>.tgz, index.yaml                               (helm package, helm repo index:
#                                                                    a chart repository to serve)
#   slipway-dashboard-<version>.json                                (the Grafana dashboard)
#   SHA256SUMS
# The version is slipway.__version__ (operator/slipway/__init__.py): pyproject.toml reads it, and
# the chart is packaged with it (tests/unit/test_versions.py fails when Chart.yaml says otherwise).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
python=${PYTHON:-$root/.venv/bin/python}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/operator/slipway/__init__.py")
[ -n "$version" ] || { echo "no __version__ in operator/slipway/__init__.py" >&2; exit 1; }
helm="$(bash "$root/hack/build-tools.sh")/helm"

# only what an earlier run made goes: the directory may hold other files
rm -f "$out"/slipway-*.whl "$out"/slipway-*.tar.gz "$out"/slipway-*.tgz "$out"/slipway-dashboard-*.json \
  "$out/index.yaml" "$out/SHA256SUMS"
# the build backend comes pinned by constraints.txt into build's isolated environment
if ! PIP_CONSTRAINT="$root/constraints.txt" "$python" -m build --outdir "$out" "$root" >"$out/build.log" 2>&1; then
  cat "$out/build.log" >&2
  exit 1
fi
rm "$out/build.log"
"$helm" package "$root/charts/slipway" --destination "$out" --version "$version" --app-version "$version" >/dev/null
# chart URLs relative to wherever the directory is served from
"$helm" repo index "$out"
cp "$root/charts/slipway/dashboards/slipway.json" "$out/slipway-dashboard-$version.json"
(cd "$out" && sha256sum -- *.whl *.tar.gz *.tgz *.json index.yaml >SHA256SUMS)
ls -1 "$out"
