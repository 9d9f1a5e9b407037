-- Argo CD health check for serving.slipway.dev/ModelDeployment (runs in gopher-lua, Lua 5.1).
-- status.phase is Slipway's verdict; the conditions carry the reason to show next to it.
local hs = {}

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

-- "Reason: message" from the first condition of these types that says something
-- (only a True one, unless anyStatus: a paused rollout is Progressing=Unknown).
local function explain(status, types, fallback, anyStatus)
  for _, type in ipairs(types) do
    local c = condition(status, type)
    local counts = c ~= nil and (anyStatus or c.status == "True")
    if counts and c.message ~= nil and c.message ~= "" then
      if c.reason ~= nil and c.reason ~= "" then
        return c.reason .. ": " .. c.message
      end
      return c.message
    end
  end
  return fallback
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
-- A status older than the spec describes the previous spec: not a verdict on this one.
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stableVersion = nil
if status.stable ~= nil and status.stable.version ~= nil and status.stable.version ~= "" then
  stableVersion = status.stable.version
end

local phase = status.phase
local degraded = condition(status, "Degraded")
if phase == "Ready" and degraded ~= nil and degraded.status == "True" then
  -- serving, but something the user configured is broken (e.g. TrafficRoutingUnavailable)
  hs.status = "Degraded"
  hs.message = explain(status, { "Degraded" }, "Degraded")
elseif phase == "Ready" then
  hs.status = "Healthy"
  local version = ""
  if stableVersion ~= nil then
    version = " (version " .. stableVersion .. ")"
  end
  hs.message = tostring(status.readyReplicas or 0) .. "/" .. tostring(status.replicas or 0)
    .. " replicas ready" .. version
elseif phase == "Progressing" or phase == "Pending" then
  hs.status = "Progressing"
  local fallback = "Rolling out"
  if status.canary ~= nil and status.canary.weight ~= nil then
    fallback = "Canary at " .. tostring(status.canary.weight) .. "% of traffic"
  end
  hs.message = explain(status, { "Progressing", "Degraded" }, fallback)
elseif phase == "Paused" then
  hs.status = "Suspended"
  local fallback = "Paused"
  if status.canary ~= nil and status.canary.message ~= nil and status.canary.message ~= "" then
    fallback = "Paused: " .. status.canary.message
  elseif status.canary ~= nil and status.canary.pauseReason ~= nil then
    fallback = "Paused: " .. status.canary.pauseReason -- as Slipway 0.1 wrote it
  end
  hs.message = explain(status, { "Progressing" }, fallback, true)
elseif phase == "Degraded" or phase == "RolledBack" or phase == "Failed" then
  -- RolledBack too: the stable revision serves, but the spec in git is not what runs
  hs.status = "Degraded"
  local fallback = phase
  if status.canary ~= nil and status.canary.reason ~= nil and status.canary.message ~= nil then
    fallback = phase .. ": " .. status.canary.reason .. ": " .. status.canary.message
  elseif status.canary ~= nil and status.canary.failureReason ~= nil then
    fallback = phase .. ": " .. status.canary.failureReason -- as Slipway 0.1 wrote it
  end
  hs.message = explain(status, { "Degraded", "Progressing" }, fallback)
  if phase == "RolledBack" then
    local to = ""
    if stableVersion ~= nil then
      to = " to " .. stableVersion
    end
    hs.message = "Rolled back" .. to .. ": " .. hs.message
  end
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
