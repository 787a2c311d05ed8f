#!/usr/bin/env bash
# Consumer test: what a user gets from the registry, at both ends of the claimed peer ranges.
#
# Usage: test/consumer/run.sh [--report-dir DIR] [--tarball FILE] [case...]
#        (cases: newest oldest; default both)
#
# Packs the workspace package (npm pack: the tarball users would install; --tarball: one packed
# before, so that nothing rebuilds libs/transactional/dist while other tests use it), then for each case
# writes a small Nest app (test/consumer/app: plain files, no tsconfig paths) into a temporary
# folder outside the repository, installs the tarball plus the case's peers from the npm
# registry (no workspace, no lockfile, npm's usual peer checks), compiles it with tsc and runs its
# node:test specs against the real Postgres and Redis: every committed row found by a worker, rollback
# leaves no job, NESTED savepoints, durable mode with its migration, the plain-queue detector,
# the testing kit through `nestjs-transactional-jobs/testing`, and the tarball's file list.
#
# QUEUE_KIND picks the queue library of the app (default bull): src/queue.<kind>.ts becomes
# src/queue.ts and peers_<kind>_<case> below lists its packages. A case whose newest majors need a
# newer Node runs under scripts/with-node.sh <major>. With --report-dir, each case writes a jest-like
# JSON summary (report.mjs) to DIR/consumer-<case>-<kind>.json (a case that fails before its specs
# run writes none, which .ci/run counts as a failure).
# Honours TEST_DB_SUFFIX (database consumer_<case>_<kind><suffix>, Redis key prefix).
# CONSUMER_KEEP=1 keeps the temporary folders.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
report_dir=""
tarball=""
cases=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --report-dir) report_dir=$2; shift 2 ;;
    --report-dir=*) report_dir=${1#*=}; shift ;;
    --tarball) tarball=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    newest | oldest) cases+=("$1"); shift ;;
    *) echo "usage: $0 [--report-dir DIR] [--tarball FILE] [newest] [oldest]" >&2; exit 2 ;;
  esac
done
[ "${#cases[@]}" -gt 0 ] || cases=(newest oldest)
kind=${QUEUE_KIND:-bull}
suffix=${TEST_DB_SUFFIX:-}

# Test tooling of the app, the same in every case (not under test). The specs run with node:test
# on the app compiled by tsc: Nest 12 is ESM-only, which jest 29 cannot load.
tools=(
  typescript@5.9.3 supertest@7.1.4 pg@8.23.1
  @types/supertest@6.0.3 @types/node@20.19.25 @types/pg@8.23.1
)

# Peers of each case. newest: the newest release of each newest major (resolved by the registry
# at run time). oldest: exactly the lower bounds of the ranges in libs/transactional/package.json.
peers_newest=(
  @nestjs/common@12 @nestjs/core@12 @nestjs/platform-express@12 @nestjs/testing@12
  @nestjs/typeorm@12 typeorm@1 nestjs-cls@7 reflect-metadata@0.2 rxjs@7
)
peers_oldest=(
  @nestjs/common@10.0.0 @nestjs/core@10.0.0 @nestjs/platform-express@10.0.0
  @nestjs/testing@10.0.0 @nestjs/typeorm@10.0.0 typeorm@0.3.0 nestjs-cls@5.2.0
  reflect-metadata@0.1.13 rxjs@7.2.0
)
peers_bull_newest=(bull@4 @nestjs/bull@12)
peers_bull_oldest=(bull@4.10.0 @nestjs/bull@10.0.0)
# BullMQ: no npm range in the package (see its README, "Why bullmq has no npm range"); these are
# the majors the README claims. @nestjs/bullmq 12 is the first that accepts Nest 12.
# bullmq 6 loads ioredis, its optional peer, only if the app installed it; ioredis 5, because
# typeorm's optional peer is ioredis ^5.0.4. The oldest BullMQ case needs typeorm 0.3.7: before it
# typeorm's optional peer is ioredis ^4.28.3, which npm refuses next to bullmq's ioredis 5 (an
# upstream conflict, with or without this package). A kind's entry replaces the case's entry of
# the same package.
peers_bullmq_newest=(bullmq@6 @nestjs/bullmq@12 ioredis@5)
peers_bullmq_oldest=(bullmq@5.0.0 @nestjs/bullmq@11.0.0 ioredis@5.3.2 typeorm@0.3.7)
# Node major each case runs under ("" = the Node on the PATH). nestjs-cls 7 needs Node >= 22,
# typeorm 1 Node ^20.19 || ^22.13 || >= 24.11: the newest case runs on the newest LTS.
node_newest=24
node_oldest=""
# Module system of the app: a fresh Nest 12 app is ESM ("type": "module", module nodenext), a
# Nest 10 app CommonJS. Either way the library (CommonJS) is imported by name.
module_newest=esm
module_oldest=cjs

if [ ! -f "$repo/test/consumer/app/src/queue.$kind.ts" ]; then
  echo "consumer: no test/consumer/app/src/queue.$kind.ts for QUEUE_KIND=$kind" >&2
  exit 2
fi
[ -z "$report_dir" ] || mkdir -p "$report_dir"

work=$(mktemp -d "${TMPDIR:-/tmp}/nestjs-transactional-jobs-consumer.XXXXXX")
if [ "${CONSUMER_KEEP:-}" != 1 ]; then
  trap 'rm -rf "$work"' EXIT
fi

# The tarball, as `npm publish` would upload it (`prepack` builds dist first).
if [ -z "$tarball" ]; then
  (cd "$repo" && npm pack -w nestjs-transactional-jobs --pack-destination "$work" --json \
    --no-audit --no-fund >"$work/pack.json")
  tarball="$work/$(node -p 'require(process.argv[1])[0].filename' "$work/pack.json")"
  node -e '
    const [p] = require(process.argv[1]);
    console.log(`consumer: ${p.filename}: ${p.entryCount} files, ${p.size} bytes packed, ${p.unpackedSize} unpacked`);
  ' "$work/pack.json"
else
  [ -f "$tarball" ] || { echo "consumer: no tarball $tarball" >&2; exit 2; }
  echo "consumer: $tarball (packed before)"
fi

run_case() {
  local case=$1
  local app="$work/app-$case-$kind" report="" node_major module runner tsc_flags type_field reporters
  local node_var="node_$case" module_var="module_$case"
  [ -z "$report_dir" ] || report="$(cd "$report_dir" && pwd)/consumer-$case-$kind.json"
  [ -z "$report" ] || rm -f "$report"
  cp -R "$repo/test/consumer/app" "$app"
  rm -f "$app"/src/queue.*.ts
  cp "$repo/test/consumer/app/src/queue.$kind.ts" "$app/src/queue.ts"
  node_major=${!node_var}
  module=${!module_var}
  peers_var="peers_$case[@]"
  kind_var="peers_${kind}_$case[@]"
  local peers=() spec name
  for spec in "${!peers_var}"; do
    name=${spec%@*}
    printf '%s\n' "${!kind_var}" | grep -q "^$name@" || peers+=("$spec")
  done
  peers+=("${!kind_var}")
  runner=()
  [ -z "$node_major" ] || runner=(bash "$repo/scripts/with-node.sh" "$node_major")
  tsc_flags=()
  type_field=""
  if [ "$module" = esm ]; then
    tsc_flags=(--module nodenext --moduleResolution nodenext)
    type_field='  "type": "module",\n'
  fi
  printf '{\n  "name": "consumer-%s-%s",\n  "private": true,\n%b  "version": "0.0.0"\n}\n' \
    "$case" "$kind" "$type_field" >"$app/package.json"

  echo "consumer: case $case ($kind, $module) in $app${node_major:+ on Node $node_major}"
  if ! (
    cd "$app" &&
      "${runner[@]}" npm install --no-audit --no-fund --save-exact "$tarball" \
        "${peers[@]}" "${tools[@]}" &&
      "${runner[@]}" npm ls --depth=0 &&
      "${runner[@]}" npx tsc -p tsconfig.json "${tsc_flags[@]}" &&
      CONSUMER_DATABASE="consumer_${case}_$kind$suffix" "${runner[@]}" node build/test/setup.js
  ); then
    echo "consumer: case $case ($kind): install, type check or database setup failed" >&2
    return 1
  fi
  reporters=(--test-reporter=spec --test-reporter-destination=stdout)
  [ -z "$report" ] ||
    reporters+=(--test-reporter="$repo/test/consumer/report.mjs" --test-reporter-destination="$report")
  (
    cd "$app" &&
      CONSUMER_TARBALL="$tarball" \
        CONSUMER_DATABASE="consumer_${case}_$kind$suffix" \
        CONSUMER_PREFIX="consumer$suffix-$case-$kind" \
        "${runner[@]}" node --test "${reporters[@]}" build/test/*.test.js
  )
}

# The cases run side by side (installs wait on the network more than on the CPU); each one's
# output is printed when it ends. CONSUMER_SERIAL=1 runs them one after the other.
status=0
pids=()
for case in "${cases[@]}"; do
  if [ "${CONSUMER_SERIAL:-}" = 1 ]; then
    run_case "$case" || status=1
  else
    run_case "$case" >"$work/$case.log" 2>&1 &
    pids+=("$!")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  echo "----- consumer case ${cases[$i]} ($kind) -----"
  grep -v '^npm warn install-scripts' "$work/${cases[$i]}.log" || true
done
exit "$status"
