-- wrk script for scripts/bench. WRK_MODE chooses the traffic.
-- "get": GET of the path on the command line with the IMDSv2 token from
-- WRK_TOKEN, as one pre-built request (the cached credentials read).
-- "sequence": what AWS SDKs do, PUT /latest/api/token and then GET the path
-- with the token just issued, over and over.
-- At the end, one line "BENCH_JSON {...}" carries the figures that
-- bench/bench.py reads: requests, duration, errors and latency percentiles.

local mode = os.getenv("WRK_MODE") or "get"
local token_ttl = "21600"

if mode == "get" then
  local token = os.getenv("WRK_TOKEN")
  if token and token ~= "" then
    wrk.headers["X-aws-ec2-metadata-token"] = token
  end
elseif mode == "sequence" then
  local path = nil
  local token = nil
  local next_is_put = true

  function init(args)
    path = wrk.path
  end

  function request()
    if next_is_put or token == nil then
      next_is_put = false
      return wrk.format("PUT", "/latest/api/token",
        { ["X-aws-ec2-metadata-token-ttl-seconds"] = token_ttl }, nil)
    end
    next_is_put = true
    return wrk.format("GET", path, { ["X-aws-ec2-metadata-token"] = token }, nil)
  end

  function response(status, headers, body)
    if status == 200 and (headers["x-aws-ec2-metadata-token-ttl-seconds"] or headers["X-aws-ec2-metadata-token-ttl-seconds"]) then
      token = body
    end
  end
else
  error("WRK_MODE must be get or sequence, not " .. mode)
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = function(q) return latency:percentile(q) end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
    '"p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    p(50), p(90), p(99), p(99.9)))
end
