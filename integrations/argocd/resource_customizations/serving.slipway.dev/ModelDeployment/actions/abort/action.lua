-- Argo CD action "abort" (kubectl slipway abort): roll the canary back; stable serves all.
-- It writes the annotation that Slipway consumes and removes, as the plugin does.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serving.slipway.dev/action"] = "abort"
return obj
