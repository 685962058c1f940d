#!/bin/sh
# Container entrypoint: secrets as files become the environment variables resetline.yaml
# names, then `resetline` runs with the given arguments.
#
# resetline reads secrets only from environment variables (`*_env` keys). Orchestrators hand
# them over as files instead: compose and Docker secrets under /run/secrets, systemd
# credentials under $CREDENTIALS_DIRECTORY. Each file there whose name is a variable name
# (e.g. /run/secrets/TWILIO_AUTH_TOKEN) sets that variable, one trailing newline removed,
# unless the variable is already set. Values are never printed.
set -eu
for dir in "${CREDENTIALS_DIRECTORY:-}" /run/secrets; do
    [ -n "$dir" ] && [ -d "$dir" ] || continue
    for file in "$dir"/*; do
        [ -f "$file" ] || continue
        name=$(basename "$file")
        case "$name" in
            *[!A-Za-z0-9_]* | [0-9]*) continue ;;
        esac
        eval "already=\${$name+set}"
        [ -z "$already" ] || continue
        value=$(cat "$file")
        export "$name=$value"
    done
done
exec resetline "$@"
