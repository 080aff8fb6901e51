-- wrk script: device polls with serials, hardware and current versions drawn from a fleet-like
-- distribution, so answers mix 200 (update available) and 204 (up to date / no hardware).
-- Set by the runner through environment: OTA_KEY, OTA_PATH (a Memfault route, or "ddi" for the
-- DDI base poll) and OTA_DEVICES. openloop.c draws requests from the same distribution.
local key = os.getenv("OTA_KEY")
local path = os.getenv("OTA_PATH") or "/api/v0/releases/latest/url"
local devices = tonumber(os.getenv("OTA_DEVICES") or "100000")
-- most of a fleet is already up to date; some lag behind, a few report nothing
local versions = {"2.0.0", "2.0.0", "2.0.0", "2.0.0", "2.0.0", "2.0.0", "1.0.0", "1.0.0", "1.5.0", ""}
local hardware = {"mp", "mp", "mp", "mp", "mp", "mp", "mp", "evt", "evt", "dvt"}

math.randomseed(os.time())

-- a device's hardware and version are a function of its serial, as in a real fleet: the same
-- device reports the same version on every poll until it updates
local ddi = path == "ddi"

request = function()
  local i = math.random(devices)
  if ddi then
    -- hawkBit DDI base poll at Memfault's root, authenticated with the project key
    return wrk.format("GET", "/api/v0/hawkbit/default/controller/v1/D" .. i,
                      {["Authorization"] = "GatewayToken " .. key})
  end
  local v = versions[(i % #versions) + 1]
  local q = "?device_serial=D" .. i .. "&hardware_version=" .. hardware[((i * 7) % #hardware) + 1]
          .. "&software_type=main"
  if v ~= "" then q = q .. "&current_version=" .. v end
  return wrk.format("GET", path .. q, {["Memfault-Project-Key"] = key})
end
