-- Argo CD resource actions for serving.slipway.dev/ModelDeployment: which of them apply now.
-- Runs like action.lua in Argo CD's sandbox (Lua 5.1, base and table libraries only: no string
-- library). Every action is listed; those that do not apply to the current status are disabled,
-- by the rules the operator itself follows (it ignores a misplaced action with an Event).
local actions = {
  ["promote"] = { ["disabled"] = true, ["displayName"] = "Promote (next step)" },
  ["promote-full"] = { ["disabled"] = true, ["displayName"] = "Promote fully (skip the steps)" },
  ["abort"] = { ["disabled"] = true, ["displayName"] = "Abort (roll back)" },
  ["retry"] = { ["disabled"] = true, ["displayName"] = "Retry the canary" },
  ["pause"] = { ["disabled"] = true, ["displayName"] = "Pause" },
  ["resume"] = { ["disabled"] = true, ["displayName"] = "Resume" },
}

local status = obj.status
if status == nil or status.canary == nil then
  return actions -- no canary: nothing to steer
end
-- a status older than the spec describes a canary the operator may be about to withdraw
local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  return actions
end

local progressing = nil
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Progressing" then
      progressing = c
    end
  end
end
local reason = nil
if progressing ~= nil then
  reason = progressing.reason
end
if reason == "RevertedToStable" or reason == "CanarySuperseded" then
  return actions -- the spec moved on: this canary is being withdrawn
end

local canary = status.canary
local rolledBack = false
local failed = false
if canary.state ~= nil then
  if canary.state == "Withdrawn" then
    return actions -- the spec moved on: this canary is being withdrawn
  end
  rolledBack = canary.state == "RolledBack" or canary.state == "Aborted"
  failed = canary.state == "Failed"
else
  -- a status written by Slipway 0.1: booleans and a failure reason instead of a state
  rolledBack = canary.aborted == true
  failed = canary.failureReason ~= nil and canary.failureReason ~= ""
end
local runs = not rolledBack and not failed

-- a rolled-back or aborted canary waits for retry (or a new spec) and nothing else
actions["retry"]["disabled"] = runs
actions["promote"]["disabled"] = rolledBack
actions["promote-full"]["disabled"] = rolledBack
actions["abort"]["disabled"] = rolledBack
-- a canary held after a failure (autoRollback: false) is promoted, aborted or retried, not paused
actions["pause"]["disabled"] = not runs or reason == "RolloutPaused"
-- Paused: by the user, by an Inconclusive measurement, or at a step that waits for promotion
actions["resume"]["disabled"] = not runs or status.phase ~= "Paused"
return actions
