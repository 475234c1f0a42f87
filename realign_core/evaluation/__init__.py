"""Measuring models and motions (never used at inference).

* ``metrics``          Guo et al.'s metrics (R-precision, FID, diversity ...) and confidence intervals
                       (mean +- CI, Wilson, paired differences): the one home for statistics
* ``retrieval``        retrieval R@k of the reward models by noise level
* ``scoring``          scoring generated and real motions with the evaluator
* ``reconstruction``   VAE reconstruction errors (also the VAE's validation in training)
* ``model_eval``, ``model_card``              ``realign eval`` and ``realign model-card``
* ``guidance_tuning``, ``results_table``      guidance chosen on val; the paper's results table on test
* ``benchmark/``       latency and memory of generation (``realign bench``)
* ``kinematic/``       model-free kinematic alignment checks (``realign eval --kinematic``)
"""
