-- Memory phase of bench/run.sh: sends exactly BENCH_N non-streaming chat requests over all connections of
-- one wrk thread (run it with -t1), then stops. Once BENCH_N requests are out, a connection that is ready
-- for its next request gets an empty write instead, so the server never sees request BENCH_N+1. When the
-- last answer arrives the thread stops and touches BENCH_DONE_FILE; run.sh then sends wrk SIGINT (wrk's
-- main thread otherwise sleeps for the whole -d). MODEL is replaced by run.sh.
N = tonumber(os.getenv("BENCH_N") or "50000")
DONE_FILE = os.getenv("BENCH_DONE_FILE")
issued, answered, bad = 0, 0, 0
local threads = {}

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-1234"
wrk.body = '{"model":"MODEL","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence, please."}],"max_tokens":64}'

local req = nil

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  -- wrk calls request() once before the run to check that it builds a valid request; that call sends
  -- nothing, so it must not count.
  issued = -1
end

function request()
  if req == nil then req = wrk.format() end
  if issued >= N then return "" end
  issued = issued + 1
  return req
end

function response(status, headers, body)
  answered = answered + 1
  if status < 200 or status > 299 then bad = bad + 1 end
  if answered == N then
    wrk.thread:stop()
    if DONE_FILE then local f = io.open(DONE_FILE, "w"); if f then f:close() end end
  end
end

function done(summary, latency, requests)
  local i, a, b = 0, 0, 0
  for _, t in ipairs(threads) do
    i = i + t:get("issued"); a = a + t:get("answered"); b = b + t:get("bad")
  end
  io.write(string.format("count: issued=%d answered=%d non2xx=%d\n", i, a, b))
end
