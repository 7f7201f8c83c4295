"""Operability shared by controllers and agents: Prometheus metrics, the HTTP listener that
serves them with /healthz and /readyz (and a controller's status page), and structured logs
carrying a request id from the caller to the host.

    metrics.py   a component's registry; others add their collectors and gauges to it
    listener.py  the opt-in HTTP listener (`--metrics-address HOST:PORT`)
    logs.py      `--log-format text|json`, the request id and how it travels (gRPC metadata)

Imports nothing else of l2vpc: the agent, the controller and the CLIs all use it.
"""
