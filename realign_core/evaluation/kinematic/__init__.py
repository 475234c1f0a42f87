"""Model-free kinematic alignment (``realign eval --kinematic``; the command line is ``realign_core.cli.evaluate``).

* ``checks``   rule-based checks that a motion does what a direction/action prompt says, and the prompt set
* ``labels``   the checks validated on real clips labelled from their human captions
* ``report``   generating for every prompt, pass rates with 95 % intervals, baseline vs guided tables
"""
