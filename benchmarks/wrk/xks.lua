-- Send pre-signed XKS requests read from a file, each connection taking them
-- in turn, and print the figures that xki_load.py parses.
--
-- Usage: wrk -s xks.lua https://127.0.0.1:PORT/ -- REQUEST_FILE
--
-- REQUEST_FILE contains complete HTTP/1.1 requests, each one preceded by a
-- line with its length in bytes. wrk sends them as they are, so their SigV4
-- signatures must still be valid (5 minutes) when the run ends.

local pool = {}
local position = 1

function init(args)
  local path = args[1]
  if path == nil then
    error("xks.lua needs the request file: wrk ... -s xks.lua URL -- REQUEST_FILE")
  end
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  local offset = 1
  while offset <= #data do
    local newline = string.find(data, "\n", offset, true)
    local length = tonumber(string.sub(data, offset, newline - 1))
    pool[#pool + 1] = string.sub(data, newline + 1, newline + length)
    offset = newline + 1 + length
  end
  if #pool == 0 then
    error("request file " .. path .. " holds no request")
  end
end

function request()
  local next_request = pool[position]
  position = position % #pool + 1
  return next_request
end

-- Print one line of name=value pairs. Latencies are in microseconds.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "xki-load-result requests=%.0f duration_us=%.0f bytes=%.0f "
      .. "connect_errors=%.0f read_errors=%.0f write_errors=%.0f status_errors=%.0f "
      .. "timeouts=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f "
      .. "mean_us=%.1f max_us=%.0f\n",
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
