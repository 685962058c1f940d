# Shared by scripts/bench-webhooks and scripts/bench-ab (sourced, not run): wrk installed if
# missing, the split of a bench_target's calls into one file per wrk thread, and one wrk run
# with the server's CPU time per request. The caller sets SECONDS_RUN, CONNS and THREADS, and
# PID (the server) and RPID (redis-server, or empty) before each `run`.

if ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

# split_requests DIR: one file of calls per wrk thread (line i of DIR/requests.txt goes to
# thread i mod THREADS), so a thread's init only opens its file and seeks.
split_requests() {
    awk -v out="$1/requests.txt" -v n="$THREADS" '{ print > (out "." ((NR - 1) % n)) }' "$1/requests.txt"
}

# CPU time so far of a process, in clock ticks (utime + stime); 0 without a pid.
ticks() { if [ -n "$1" ]; then awk '{ print $14 + $15 }' "/proc/$1/stat"; else echo 0; fi; }
TICK_HZ=$(getconf CLK_TCK)

# run PORT: one wrk run from BENCH_OFFSET over BENCH_REQUESTS; prints wrk's RESULT line with
# the server's CPU time per request (`cpu_us`), how busy its core was (`core`) and
# redis-server's CPU time per request (`redis_cpu_us`, 0 when it is not running).
run() {
    local before rbefore after rafter line
    before=$(ticks "$PID")
    rbefore=$(ticks "$RPID")
    line=$(taskset -c 1 wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_RUN}s" --latency -s scripts/bench-webhooks.lua "http://127.0.0.1:$1" | grep '^RESULT')
    after=$(ticks "$PID")
    rafter=$(ticks "$RPID")
    awk -v l="$line" -v t=$((after - before)) -v r=$((rafter - rbefore)) -v hz="$TICK_HZ" 'BEGIN {
        match(l, /requests=[0-9]+/); n = substr(l, RSTART + 9, RLENGTH - 9)
        match(l, /duration_s=[0-9.]+/); d = substr(l, RSTART + 11, RLENGTH - 11)
        printf "%s cpu_us=%.2f core=%.0f%% redis_cpu_us=%.2f\n", l, 1e6 * t / hz / n, 100 * t / hz / d, 1e6 * r / hz / n }'
}

# field NAME LINE: a `NAME=value` of a RESULT line.
field() { sed -E "s/.* $1=([0-9.]+).*/\1/" <<<"$2"; }
