"""The paper's experiments as library code: the proof of concept (§4.4.1, Fig. 2).

:mod:`svde.experiments.poc` holds the sweep's config, runs and held-out evaluation;
:mod:`svde.experiments.poc_sweep` runs the sweep and writes its summary, figure and table.
"""
