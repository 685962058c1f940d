-- wrk script for scripts/bench-webhooks: each request is the signed Gather callback of a
-- different live call, so every request does the full work: signature check, session load,
-- directory lookup (demo user 100001), recording pause, save.
--
-- Calls come from per-thread files (`$BENCH_REQUESTS.<thread>`, fixed-width lines:
-- `CallSid signature token\n`, 85 bytes, the call's random step token padded to 20 digits; a
-- build from before random step tokens writes `CallSid signature\n`, 64 bytes, for step 1),
-- read sequentially from line `$BENCH_OFFSET`. `init` only opens and
-- seeks: wrk runs each thread's `init` on its main thread before starting that thread, and a
-- thread starts sending as soon as it is created, so an `init` that parsed the whole file (as
-- this script did until the fifth session) let the first thread load the server for seconds
-- before the measured time began, and wrk counted those requests against the measured time.
-- It also kept a Lua heap of a million strings that every garbage collection cycle walked.
local threads = {}
local file = os.getenv("BENCH_REQUESTS")
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
-- The body around the call id (BENCH_BODY_TEMPLATE: what bench_target signed, from the file
-- it writes).
local template = assert(os.getenv("BENCH_BODY_TEMPLATE"), "BENCH_BODY_TEMPLATE is not set")
local at = string.find(template, "{CallSid}", 1, true)
local before, after = string.sub(template, 1, at - 1), string.sub(template, at + 9)

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  f = assert(io.open(file .. "." .. tid, "rb"))
  -- The line length from the first line (every line has it).
  LINE = #(f:read("*l") or "") + 1
  f:seek("set", offset * LINE)
  used = 0
  replays = 0
end

function request()
  local line = f:read(LINE)
  if line and #line == LINE then
    used = used + 1
    last = line
  else
    -- This thread's calls are used up (the bench script warns): replays of its last one.
    replays = replays + 1
    line = last or ""
  end
  local token = "1"
  if LINE > 64 then
    token = string.gsub(line:sub(65, 84), "^0+", "")
  end
  return wrk.format("POST", "/voice/pin-reset/step/" .. token, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = line:sub(36, 63),
  }, before .. line:sub(1, 34) .. after)
end

function done(summary, latency, requests)
  -- The most lines one thread read: the next run starts after it, so every request of the
  -- next run is again the first Gather callback of an untouched call.
  local most, replayed = 0, 0
  for _, t in ipairs(threads) do
    most = math.max(most, t:get("used") or 0)
    replayed = replayed + (t:get("replays") or 0)
  end
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d errors=%d used_per_thread=%d replays=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    most, replayed))
end
