"""First-party parameter-isolation strategies (PackNet, PAE, CPG), installed as ``clbench_plugins``.

Each strategy is one module registered under the ``clbench`` entry-point group, exactly as a
third-party plugin would be.
"""
