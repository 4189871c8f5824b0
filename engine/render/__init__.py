"""Orbit cameras (the one camera convention) and the moderngl/EGL orbit renderer."""

from engine.render.cameras import OrbitCameras, draw_elevation, orbit_azimuths
from engine.render.renderer import OrbitRender, OrbitRenderer, RendererError, render_orbit, render_orbits

__all__ = [
    "OrbitCameras", "OrbitRender", "OrbitRenderer", "RendererError", "draw_elevation", "orbit_azimuths",
    "render_orbit", "render_orbits",
]
