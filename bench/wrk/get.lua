-- GET PATH (default /) with an optional bearer TOKEN; prints one SUMMARY line (scripts/bench.py reads it).
local path = os.getenv("PATH_TO_GET") or "/"
local token = os.getenv("TOKEN")
local headers = {}
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
request = function()
  return wrk.format("GET", path, headers)
end
done = function(summary, latency, requests)
  io.write(string.format("SUMMARY rps=%.1f p50_us=%d p99_us=%d p999_us=%d errors_status=%d errors_timeout=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.status, summary.errors.timeout, summary.requests))
end
