-- Argo CD action "pause" (kubectl slipway pause): hold the canary at its step.
-- It writes the annotation that Slipway consumes and removes, as the plugin does.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serving.slipway.dev/action"] = "pause"
return obj
