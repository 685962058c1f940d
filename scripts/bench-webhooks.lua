-- wrk script for scripts/bench-webhooks: each request is the signed Gather callback of a
-- different live call (CallSid and signature read from requests.txt), so every request does
-- the full work: signature check, session load, directory lookup (demo user 100001),
-- recording pause, save.
local threads = {}
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local file = os.getenv("BENCH_REQUESTS")
-- Calls already advanced by an earlier run against the same store are skipped, so every
-- request of this run is a first Gather callback again (not a cheap replay).
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  lines = {}
  local i = 0
  local last
  for line in io.lines(file) do
    local sid, sig = line:match("(%S+) (%S+)")
    if i >= offset and i % nthreads == tid then
      table.insert(lines, { sid, sig })
    end
    last = { sid, sig }
    i = i + 1
  end
  -- Every call already used (the script warns): replays of the last one.
  if #lines == 0 then table.insert(lines, last) end
  idx = 0
end

function request()
  idx = idx + 1
  local l = lines[idx] or lines[#lines]
  local body = "CallSid=" .. l[1] .. "&Digits=100001"
  return wrk.format("POST", "/voice/pin-reset/step/1", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = l[2],
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
