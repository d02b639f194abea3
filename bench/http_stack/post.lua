-- wrk script: replay pre-signed POST /v1/redemptions requests (gen_requests.py).
-- Each wrk thread keeps every Nth line of the file (N = WRK_THREADS), so no two
-- threads send the same nonce. If a thread runs out it wraps around: the
-- replayed nonces then get 401 and show up as "Non-2xx or 3xx responses",
-- which run.py treats as an invalid run.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local path = os.getenv("REQS_FILE") or "/tmp/lijian-bench-requests.tsv"
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "2")
  reqs = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local nonce, ts, sig, idem, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/v1/redemptions", {
        ["Content-Type"] = "application/json",
        ["X-Lijian-Key"] = "unionpay",
        ["X-Lijian-Timestamp"] = ts,
        ["X-Lijian-Nonce"] = nonce,
        ["X-Lijian-Signature"] = sig,
        ["Idempotency-Key"] = idem,
      }, body)
    end
    i = i + 1
  end
  n = #reqs
  idx = 0
end

function request()
  idx = idx + 1
  if idx > n then idx = 1 end
  return reqs[idx]
end
