-- wrk script: replay pre-signed POST /v1/redemptions requests (gen_requests.py).
-- Thread i reads REQS_FILE.i: raw HTTP requests separated by NUL bytes, so no
-- two threads send the same nonce. If a thread runs out it wraps around: the
-- replayed nonces then get 401 and show up as "Non-2xx or 3xx responses",
-- which run.py treats as an invalid run.
--
-- Why thread 0 loads in init() but the others on their first request(): wrk runs
-- each thread's init() in its main thread and starts thread 0 before it calls
-- init() for thread 1, and its clock only starts after the last thread started.
-- Loading thread 1's file in init() would give thread 0 a head start whose
-- requests are counted but whose time is not (we saw +15 % on POST req/s).
-- Loading lazily instead only makes thread 1 join ~0.2 s late; the server is
-- saturated by thread 0's connections meanwhile, so throughput is unaffected.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local function load()
  local path = (os.getenv("REQS_FILE") or "/tmp/lijian-bench-requests") .. "." .. tid
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos = 1
  while true do
    local stop = string.find(data, "\0", pos, true)
    if not stop then break end
    reqs[#reqs + 1] = string.sub(data, pos, stop - 1)
    pos = stop + 1
  end
  n = #reqs
  idx = 0
end

function init(args)
  if tid == 0 then load() end
end

function request()
  if not reqs then load() end
  idx = idx + 1
  if idx > n then idx = 1 end
  return reqs[idx]
end
