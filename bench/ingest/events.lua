-- wrk script: single-event POST /api/events (Klaviyo "Create Event"), every request a new event.
--   OUTFLOW_API_KEY   private key (pk_...)                       required
--   PROFILE_POOL      number of distinct profile emails          default 10000
--   RUN_ID            prefix making unique_ids unique per run    default os.time()
--   REVISION          revision header                            default 2026-07-15
-- Prints one line "ingest-lua: 2xx=N non2xx=M statuses=..." at the end, summed over threads.

local api_key = os.getenv("OUTFLOW_API_KEY") or error("OUTFLOW_API_KEY is not set")
local pool = tonumber(os.getenv("PROFILE_POOL") or "10000")
local run_id = os.getenv("RUN_ID") or tostring(os.time())
local revision = os.getenv("REVISION") or "2026-07-15"

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

local headers = {
   ["Authorization"] = "Klaviyo-API-Key " .. api_key,
   ["revision"] = revision,
   ["Content-Type"] = "application/vnd.api+json",
   ["Accept"] = "application/vnd.api+json",
}

local metrics = { "Viewed Product", "Added to Cart", "Started Checkout", "Placed Order" }

-- %s placeholders: metric, email, n (profile number), product, price, unique_id
local template = '{"data":{"type":"event","attributes":{'
   .. '"properties":{"ProductName":"%s","ProductID":%d,"Categories":["bench","load"],"$extra":{"source":"wrk"}},'
   .. '"value":%s,"value_currency":"USD","unique_id":"%s",'
   .. '"metric":{"data":{"type":"metric","attributes":{"name":"%s"}}},'
   .. '"profile":{"data":{"type":"profile","attributes":{"email":"%s","first_name":"Bench%d"}}}}}}'

function init(args)
   counter = 0
   ok2xx = 0
   non2xx = 0
   statuses = {}
   math.randomseed(os.time() * 1000 + tid * 7919)
end

function request()
   counter = counter + 1
   local n = math.random(0, pool - 1)
   local product = math.random(1, 500)
   local body = string.format(template,
      "Product " .. product, product,
      string.format("%d.%02d", math.random(1, 300), math.random(0, 99)),
      string.format("%s-%d-%d", run_id, tid, counter),
      metrics[(counter % #metrics) + 1],
      string.format("bench-user-%d@example.com", n), n)
   return wrk.format("POST", "/api/events", headers, body)
end

function response(status, hdrs, body)
   if status >= 200 and status < 300 then
      ok2xx = ok2xx + 1
   else
      non2xx = non2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
      if non2xx <= 3 then
         io.stderr:write(string.format("non-2xx %d: %s\n", status, (body or ""):sub(1, 300)))
      end
   end
end

function done(summary, latency, requests)
   local total_ok, total_bad, by_status = 0, 0, {}
   for _, t in ipairs(threads) do
      total_ok = total_ok + t:get("ok2xx")
      total_bad = total_bad + t:get("non2xx")
      for s, c in pairs(t:get("statuses")) do
         by_status[s] = (by_status[s] or 0) + c
      end
   end
   local parts = {}
   for s, c in pairs(by_status) do
      table.insert(parts, string.format("%d:%d", s, c))
   end
   io.write(string.format(
      "ingest-lua: 2xx=%d non2xx=%d statuses=%s p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
      total_ok, total_bad, table.concat(parts, ","),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
