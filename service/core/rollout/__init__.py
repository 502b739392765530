"""Champion/challenger rollouts of a model's next version: split traffic or shadow it.

`plan.Rollout` decides each request's arm (the data plane's `route` asks it),
`rollouts.Rollouts` starts, ends and promotes rollouts and follows the registry,
`shadow.ShadowRunner` predicts shadow copies in the background, and
`compatibility` refuses a challenger that would not take the champion's requests.
Nothing here is imported by this package's `__init__`: the data plane imports
`plan`, and `rollouts` imports the data plane.
"""
