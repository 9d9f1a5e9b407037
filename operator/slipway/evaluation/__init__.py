"""The evaluation step's own side: `slipway evaluate` (sends an evaluation set to the canary and
to stable) and the pure statistics of what they answered."""
