-- GET PATH (default /) with an optional bearer TOKEN; prints one SUMMARY line (scripts/bench.py reads it).
local path = os.getenv("PATH_TO_GET") or "/"
local token = os.getenv("TOKEN")
local headers = {}
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
request = function()
  return wrk.format("GET", path, headers)
end
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
