-- Argo CD health of a migrate-safe.dev/DatabaseMigration, and of a DatabaseMigrationSet (the
-- same conditions: Ready when every member is, Stalled when its rollout halted).
--
-- Progressing while the operator has not seen the current spec (no status, or
-- status.observedGeneration ~= metadata.generation; the CRD defaults it to -1), Healthy on
-- Ready=True, Degraded only on Stalled=True (a terminal failure that needs a human), and
-- Progressing otherwise: a retry that may still succeed must not fail the sync.
-- Uses only Lua's base and table libraries, so it needs no useOpenLibs.
local hs = {}

local function condition(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  if message ~= "" then
    return message
  end
  return fallback
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  local finalizers = obj.metadata.finalizers
  if finalizers ~= nil and #finalizers > 0 then
    hs.message = "Pending deletion; blocked by finalizers: " .. table.concat(finalizers, ", ")
  else
    hs.message = "Pending deletion"
  end
  return hs
end

local status = obj.status
if status == nil or status.observedGeneration == nil
    or status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the migrate-safe operator to observe generation "
    .. tostring(obj.metadata.generation)
  return hs
end

local stalled = condition(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
