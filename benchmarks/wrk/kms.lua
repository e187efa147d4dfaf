-- Send pre-signed KMS API requests, each exactly once, and print the figures
-- that kms_load.py parses.
--
-- Usage: wrk -t THREADS -s kms.lua https://127.0.0.1:PORT/ -- REQUEST_PREFIX
--
-- Thread N (numbered from 0) reads REQUEST_PREFIX.N: complete HTTP/1.1
-- requests, each one preceded by a line with its length in bytes. Every KMS
-- request carries its own x-acs-signature-nonce, and the KMS rejects a nonce
-- it has seen, so no request is ever sent twice. A thread that has sent all
-- of its requests stops, and the result line counts it in exhausted_threads:
-- the harness then rejects the run, because the thread stopped before the
-- run's duration ended.

local threads = {}
local thread_count = 0

-- Runs in wrk's main Lua state, once per thread, before that thread's init.
function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
  threads[#threads + 1] = thread
end

request_file = nil
requests_read = 0
exhausted = false

-- A request that the KMS rejects before any signature check, because its path is not /.
-- It is written only while the thread stops, and its response is never read.
local placeholder = "GET /kms-load-requests-exhausted HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

function init(args)
  local prefix = args[1]
  if prefix == nil then
    error("kms.lua needs the request file prefix: wrk ... -s kms.lua URL -- REQUEST_PREFIX")
  end
  -- The file is read as requests are sent, so wrk's memory does not grow with its size.
  request_file = assert(io.open(prefix .. "." .. thread_number, "rb"))
end

-- Return the next request of the file, or nil at its end.
local function read_request()
  local length = request_file:read("*n")
  if length == nil then
    return nil
  end
  request_file:read(1)  -- the newline after the length
  return request_file:read(length)
end

function request()
  local next_request = nil
  if not exhausted then
    next_request = read_request()
  end
  if next_request == nil then
    if not exhausted then
      exhausted = true
      wrk.thread:stop()
    end
    return placeholder
  end
  requests_read = requests_read + 1
  return next_request
end

-- Print one line of name=value pairs. Latencies are in microseconds.
-- requests_read counts the requests read from the files, including the one
-- that wrk takes in thread 0 to check the request format and never sends.
function done(summary, latency, requests)
  local exhausted_threads = 0
  local requests_read = 0
  for _, thread in ipairs(threads) do
    if thread:get("exhausted") then
      exhausted_threads = exhausted_threads + 1
    end
    requests_read = requests_read + thread:get("requests_read")
  end
  local errors = summary.errors
  io.write(string.format(
    "kms-load-result requests=%.0f duration_us=%.0f bytes=%.0f "
      .. "connect_errors=%.0f read_errors=%.0f write_errors=%.0f status_errors=%.0f "
      .. "timeouts=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f "
      .. "mean_us=%.1f max_us=%.0f exhausted_threads=%d requests_read=%.0f\n",
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max, exhausted_threads, requests_read))
end
