"""``driftloop demo``: the whole closed loop on simulated time, with no human in it.

Not part of scheduling: it is a user of the loop (``driftloop.scheduling.loop``), the pipeline and the
prediction service, which it drives on a simulated clock; only the CLI uses it. :mod:`driftloop.demo.run`
tells the story, :mod:`driftloop.demo.plan` holds its plan and timeline, :mod:`driftloop.demo.report`
writes the HTML and JSON report.
"""
