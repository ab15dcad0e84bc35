"""Example third-party clbench plugins, one strategy per module and one entry point each:

* :mod:`clbench_example.feature_extraction`: a strategy with its own training rule on clbench's
  default network (the feature-extraction baseline);
* :mod:`clbench_example.piggyback`: the template for reusing clbench's masked layer (a minimal
  Piggyback), with recipe entries for the offline benchmark.

Both import only the public API (:mod:`clbench.api`, ``clbench.hookimpl``).
"""
