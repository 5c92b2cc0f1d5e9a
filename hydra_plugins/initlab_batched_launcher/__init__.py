"""initlab's batched Hydra launcher: a sweep's jobs that share shapes and schedule train as one
vectorized ensemble (``initlab.ensemble``), each job's folder written as if it had run alone.

``hydra_plugins`` is a namespace package (no ``__init__.py`` there), so Hydra's plugin scan finds
this package beside the installed launchers whenever the repository root is on ``sys.path``.
"""
