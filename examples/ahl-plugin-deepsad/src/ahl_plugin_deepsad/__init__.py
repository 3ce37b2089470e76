"""Deep SAD for ahl-plugins; the hook implementations are in :mod:`ahl_plugin_deepsad.plugin`."""

__version__ = "0.1.0"
