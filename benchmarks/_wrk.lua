-- wrk script for benchmarks/serving.py: POST the bodies of a file (one JSON body per line) in turn,
-- each connection from its own offset, and print one JSON summary line for the benchmark to read.
--   wrk -t1 -c64 -d8s -s benchmarks/_wrk.lua http://127.0.0.1:PORT -- /v1/predict bodies.jsonl
-- Requests are formatted once, in init: the per-request work in the client is a table lookup.

local requests, count, index = {}, 0, 0

function init(args)
  local path, file = args[1], args[2]
  local headers = { ["Content-Type"] = "application/json" }
  for line in io.lines(file) do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("POST", path, headers, line)
    end
  end
  if count == 0 then
    error("no request bodies in " .. file)
  end
  index = math.random(count) - 1
end

function request()
  index = index % count + 1
  return requests[index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
