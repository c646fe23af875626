"""Every benchmark of the project; each prints its numbers and returns a JSON-ready dict.

- :mod:`~policies.benchmarks.decoder`: oracle-click quality and decode speed of a backend
  (:mod:`~policies.benchmarks.oracle_clicks` is the click protocol);
- :mod:`~policies.benchmarks.episode`: SAM episode time, cached env against the common approach
  (:mod:`~policies.benchmarks.common_approach`);
- :mod:`~policies.benchmarks.env_throughput`: env steps per second of every way of running the env;
- :mod:`~policies.benchmarks.soak`: memory and file handles over many episodes;
- :mod:`~policies.benchmarks.grid`: the policy benchmark (tasks x policies x settings x seeds) and
  :mod:`~policies.benchmarks.report`, its one report writer; :mod:`~policies.benchmarks.quickstart` is
  a built-in grid config;
- :mod:`~policies.benchmarks.machine`: the machine and command every record names.
"""
