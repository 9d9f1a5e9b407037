-- Argo CD action "promote-full" (kubectl slipway promote --full): skip the remaining steps.
-- It writes the annotation that Slipway consumes and removes, as the plugin does.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serving.slipway.dev/action"] = "promote-full"
return obj
