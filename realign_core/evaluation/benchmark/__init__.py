"""Latency and memory of generation (``realign bench``; the command line is ``realign_core.cli.bench``).

* ``instrument``   phase timing (denoiser / decoder / reward), precision and thread levers, peak memory
* ``runs``         the measurements: configurations, ``bench_latency``, reward variants, autocast fidelity
* ``report``       text tables, the JSON file and the quality-vs-latency plot
"""
