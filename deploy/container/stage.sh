#!/bin/sh
# Installs a built `resetline` binary and what it serves into ROOT, laid out as the container
# image and the systemd unit expect it. The Containerfile runs exactly this (ROOT=/stage,
# copied onto the runtime image); a one-box install runs it with ROOT=/; the test suite runs it
# into a scratch directory (crates/cli/tests/deploy_files.rs), so the three cannot drift apart.
#
#   deploy/container/stage.sh BINARY ROOT
#
# Layout: ROOT/usr/local/bin/{resetline,resetline-entrypoint,resetline-healthcheck},
# ROOT/usr/share/resetline/{flows,voice-prompts} (the shipped flows and prompts, read-only),
# ROOT/etc/resetline/ (configuration, mounted or written by the operator; nothing secret is
# installed) and ROOT/var/lib/resetline/ (audit files and spill; the only writable place).
set -eu
bin=${1:?usage: stage.sh BINARY ROOT}
root=${2:?usage: stage.sh BINARY ROOT}
src=$(cd "$(dirname "$0")/../.." && pwd)

install -d "$root/usr/local/bin" "$root/usr/share/resetline" "$root/etc/resetline" "$root/var/lib/resetline"
install -m 0755 "$bin" "$root/usr/local/bin/resetline"
install -m 0755 "$src/deploy/container/entrypoint.sh" "$root/usr/local/bin/resetline-entrypoint"
install -m 0755 "$src/deploy/container/healthcheck.sh" "$root/usr/local/bin/resetline-healthcheck"
rm -rf "$root/usr/share/resetline/flows" "$root/usr/share/resetline/voice-prompts"
cp -R "$src/flows" "$root/usr/share/resetline/flows"
cp -R "$src/voice-prompts" "$root/usr/share/resetline/voice-prompts"
rm -f "$root"/usr/share/resetline/flows/*.test.yaml
