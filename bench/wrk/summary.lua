-- The SUMMARY line scripts/bench.py reads; loaded by the other scripts here.
return function(summary, latency, requests)
  io.write(string.format("SUMMARY rps=%.1f p50_us=%d p99_us=%d p999_us=%d errors_status=%d errors_timeout=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.status, summary.errors.timeout, summary.requests))
end
