"""The generator fleet: Ray Serve replicas that turn queued prompts into catalogued samples.

* :mod:`serve.fleet.models` — the replica's model interface and the pluggable factory
  (``pipeline`` | ``standin`` | ``module:factory``); :mod:`serve.fleet.standin` — the
  fixed-latency stand-in.
* :mod:`serve.fleet.deployment` — ``MultiViewGenerator`` (``@serve.batch``, stuck-call health
  check) and ``FleetDispatcher`` (runs :mod:`engine.dispatch`).
* :mod:`serve.fleet.autoscale` — ``QueueDepthPolicy``, the queue-depth autoscaling policy.
* :mod:`serve.fleet.app` — the Serve application builder and config (one for local and KubeRay).
* :mod:`serve.fleet.ops` — up / scale / status / down, local Ray or an existing cluster.

Heavy imports (ray) happen in the submodules, not here.
"""
