"""The worker's own HTTP endpoint: metrics, health probes and a live status page.

One small threaded server per process (:func:`streams.http.server.serve`) serves

- ``/metrics``: the Prometheus exposition of the registry passed in;
- ``/healthz`` and ``/readyz``: Kubernetes liveness and readiness, from a
  :class:`streams.http.health.Health` the worker keeps up to date;
- ``/status`` and ``/status.json``: a self-contained page with charts, fed by a
  :class:`streams.http.sampler.StatusSampler` that samples the registry into ring buffers.

Nothing here needs a service beyond the process itself, so an operator with only a
browser and a port-forward sees whether events flow.
"""
