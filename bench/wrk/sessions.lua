-- GET /api/v1/sessions with a JWT, each request from the next of many
-- tenants in turn, so that no tenant's or subject's per-minute quota (600
-- calls a subject, 1,200 a tenant by default) binds during the phase: the
-- figure is the API's cost, rate-limit counting included, not the cost of
-- answering 429. Set by bench/run:
--   TOKENS  "tenant authorization" pairs, one per line (the Authorization
--           header's whole value: "Bearer ...")
local callers = {}
for line in string.gmatch(os.getenv("TOKENS"), "[^\n]+") do
  local tenant, authorization = string.match(line, "^(%S+) (.+)$")
  table.insert(callers, { tenant = tenant, authorization = authorization })
end
local threads = 0

function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

function init(args)
  counter = thread_no
end

function request()
  counter = counter + 1
  local caller = callers[(counter % #callers) + 1]
  return wrk.format("GET", nil, {
    ["Authorization"] = caller.authorization,
    ["X-Tenant-ID"] = caller.tenant,
  })
end
