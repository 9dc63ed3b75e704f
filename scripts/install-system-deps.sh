#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (a Redis server, and later a
# browser and nginx), only when missing. Needs root or sudo; a no-op when all are present.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
# bench/bench_instructions.py counts instructions with callgrind (the benchmarks only).
command -v valgrind >/dev/null || need+=(valgrind)
# redis-cli joins the test cluster (redis-cli --cluster create); nginx-light runs deploy/nginx.conf.
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
# The widget's browser tests drive Debian's Chromium through Playwright (never a downloaded build).
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing system packages: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
