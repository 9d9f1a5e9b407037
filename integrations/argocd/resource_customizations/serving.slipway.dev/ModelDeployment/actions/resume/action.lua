-- Argo CD action "resume" (kubectl slipway resume): go on after a pause.
-- It writes the annotation that Slipway consumes and removes, as the plugin does.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serving.slipway.dev/action"] = "resume"
return obj
