-- Argo CD action "promote" (kubectl slipway promote): complete the canary's current step.
-- It writes the annotation that Slipway consumes and removes, as the plugin does.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serving.slipway.dev/action"] = "promote"
return obj
