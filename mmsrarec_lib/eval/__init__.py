"""The evaluation harness: metrics (``metrics``), the ``paper`` and ``full`` protocols (``protocols``), the model
registry and ``evaluate_scorer`` (``registry``), and the seed-averaged report (``report``)."""
