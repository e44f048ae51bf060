"""The pure core of canary rollouts: parse scrapes, judge the canary, decide the next move.

Nothing in this package talks to the API server or the network. Handlers observe the world
(pods, scrapes, smoke replies, annotations), call `decide.decide(...)`, write the returned status
and converge the children to `plan.workloads(...)`. See README.md in this folder.
"""
