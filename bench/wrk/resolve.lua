-- POST /v1/resolve for a connection picked at random from IDS_FILE (one ID per line), as the
-- worker whose token is TOKEN; each request its own run ID. Prints one SUMMARY line.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local token = os.getenv("TOKEN")
local n = 0
local headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
request = function()
  n = n + 1
  local body = string.format('{"connection_id":"%s","run_id":"wrk-%d-%d"}', ids[math.random(#ids)], math.random(1000000000), n)
  return wrk.format("POST", "/v1/resolve", headers, body)
end
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
