#!/usr/bin/env bash
# The dashboard's toolbox: install | build | test | e2e | openapi | check-openapi.
# Idempotent and quick when there is nothing to do; `make test` reaches it through tests/web.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/web"
PY="${VIGIL_PYTHON:-$ROOT/.venv/bin/python}"
CHROMIUM="${VIGIL_CHROMIUM:-/usr/bin/chromium}"
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

usage() {
  echo "usage: scripts/web.sh install|build|test|e2e|openapi|check-openapi" >&2
  exit 2
}

install_node_modules() {
  # npm ci wipes node_modules, so only run it when the lock changed since the last install.
  local stamp="$WEB/node_modules/.vigil-lock.sha256"
  local want
  want="$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  # A registry that serves only this platform's optional binaries (rollup, esbuild) yields a lock
  # without the other platforms' entries, which `npm ci` refuses; `npm install --no-save` then
  # installs the same locked versions without rewriting the lock.
  # A half-written node_modules (an interrupted install) makes npm fail with ENOTEMPTY: wipe it and retry once.
  (cd "$WEB" && { npm ci --loglevel=error 2>/dev/null || npm install --no-save --loglevel=error \
    || { rm -rf node_modules && npm install --no-save --loglevel=error; }; })
  echo "$want" >"$stamp"
}

install_chromium() {
  if [[ -x "$CHROMIUM" ]]; then
    return
  fi
  if [[ "$(id -u)" != "0" ]]; then
    echo "web.sh: $CHROMIUM is missing; install Debian's chromium (apt-get install chromium) to run the e2e suite" >&2
    return
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

export_openapi() {
  # The spec comes from the app itself, so it can never describe an API that does not exist.
  (cd "$ROOT" && "$PY" - "$WEB/openapi.json" <<'PY'
import json
import sys
from pathlib import Path

from api import create_app
from core.settings import load_settings

settings = load_settings(environment="test", web_dist_dir=Path("/nonexistent"))
spec = create_app(settings).openapi()
Path(sys.argv[1]).write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
PY
  )
}

generate_types() {
  (cd "$WEB" && npx --no-install openapi-typescript "${1:-openapi.json}" -o "${2:-src/api/schema.d.ts}" >/dev/null)
}

case "${1:-}" in
  install)
    install_node_modules
    install_chromium
    ;;
  build)
    install_node_modules
    (cd "$WEB" && npm run --silent build)
    ;;
  test)
    install_node_modules
    (cd "$WEB" && npx --no-install vitest run)
    ;;
  e2e)
    install_node_modules
    install_chromium
    (cd "$WEB" && node e2e/run.mjs)
    ;;
  openapi)
    install_node_modules
    export_openapi
    generate_types
    echo "wrote web/openapi.json and web/src/api/schema.d.ts"
    ;;
  check-openapi)
    # Regenerate into a scratch folder and compare with what is committed.
    install_node_modules
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    generate_types "$WEB/openapi.json" "$tmp/schema.d.ts"
    if ! diff -q "$tmp/schema.d.ts" "$WEB/src/api/schema.d.ts" >/dev/null; then
      echo "web/src/api/schema.d.ts is stale: run scripts/web.sh openapi" >&2
      exit 1
    fi
    ;;
  *)
    usage
    ;;
esac
