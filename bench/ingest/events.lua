-- wrk script: single-event POST /api/events (Klaviyo "Create Event"), every request a new event.
--   OUTFLOW_API_KEY   private key (pk_...)                       required
--   PROFILE_POOL      number of distinct profile emails          default 10000
--   RUN_ID            prefix making unique_ids unique per run    default os.time()
--   REVISION          revision header                            default 2026-07-15
-- Prints one line "ingest-lua: 2xx=N non2xx=M ..." at the end (from wrk's summary).

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

-- No response() hook: wrk runs Lua per response when one is defined, which
-- costs the load generator more CPU than the server spends on a request.
-- wrk's own summary counts non-2xx/3xx answers and socket errors.
function done(summary, latency, requests)
   local e = summary.errors
   local bad = e.status + e.connect + e.read + e.write + e.timeout
   io.write(string.format(
      "ingest-lua: 2xx=%d non2xx=%d statuses=%s p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
      summary.requests - bad, bad, "",
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
