"""Planning a canary before it runs: how long each Rollout step must be for the judge to decide.

``evidence`` models how the judge's evidence grows per event, ``forecast`` runs that model over
a ramp of weights, ``history`` reads the stable Service's traffic, ``steps`` reads a Rollout's
steps and ``plan`` puts them together for ``canary-analyzer plan``.
"""
