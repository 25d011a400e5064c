"""ACE's commands (``ace ...``): the top layer, on the library (``ace``) and the cluster (``workers``).

``main`` builds the parser and runs a command; ``live`` (serve, live, stop, streams), ``tokens``,
``highlights`` (triage, train) and the batch, demo, eval and bench commands in ``main``.
"""
