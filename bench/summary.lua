-- wrk script used by bench/run.py: adds one machine-readable line to wrk's
-- report.  It defines only done(), so the request path is wrk's own.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH-SUMMARY requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d " ..
      "connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.bytes, summary.duration,
      latency:percentile(50.0), latency:percentile(99.0),
      e.connect, e.read, e.write, e.status, e.timeout))
end
