-- Argo CD action "retry" (kubectl slipway retry): run a rolled-back canary again from step 1.
-- It writes the annotation that Slipway consumes and removes, as the plugin does.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["serving.slipway.dev/action"] = "retry"
return obj
