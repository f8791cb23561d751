-- wrk script: POST the body read from the file named by $WRK_BODY_FILE as JSON, and at
-- the end print one machine-readable line (BENCH_JSON {...}) with the request count,
-- latency percentiles (microseconds) and error counts. No response() hook, so wrk does
-- not hand every response to Lua (that would slow the load generator); wrk's own
-- "Non-2xx or 3xx responses" line and summary.errors.status count the bad statuses.

local path = os.getenv("WRK_BODY_FILE")
if path == nil then
  error("set WRK_BODY_FILE to the file holding the request body")
end
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "\nBENCH_JSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"connect_errors\": %d, \"read_errors\": %d, \"write_errors\": %d, " ..
    "\"status_errors\": %d, \"timeouts\": %d, \"p50_us\": %d, \"p90_us\": %d, " ..
    "\"p99_us\": %d, \"p999_us\": %d, \"max_us\": %d, \"mean_us\": %.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
