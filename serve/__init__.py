"""serve: vf3d as a running system.

Owns the Ray Serve deployments (the generator fleet), fleet operations, the HTTP API, the web
console, and the ``vf3d`` command line.
"""
