#!/bin/bash
# The image's HEALTHCHECK: GET http://127.0.0.1:${RESETLINE_ADMIN_PORT:-9090}/healthz (the
# admin listener, `admin_listen`) must answer 200. bash's /dev/tcp, so the runtime image
# needs no curl. Usage: resetline-healthcheck [PATH] (default /healthz; /readyz for readiness).
set -eu
path=${1:-/healthz}
port=${RESETLINE_ADMIN_PORT:-9090}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 5 status <&3
case "$status" in
    "HTTP/1.1 200"*) exit 0 ;;
    *) echo "resetline-healthcheck: $path answered: ${status%$'\r'}" >&2; exit 1 ;;
esac
