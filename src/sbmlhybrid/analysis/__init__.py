"""Uncertainty analysis after a fit: profile likelihoods and MCMC sampling.

Entry points: `profile(objective, "result.hdf5", ProfileSettings(...), output=...)` with
`profile_intervals(result)`, and `sample(objective, "result.hdf5", SampleSettings(...),
output=...)` with `posterior_summary(result)`. Both resume an interrupted run from `output`.
"""

from sbmlhybrid.analysis.profile import ProfileSettings, profile, profile_intervals
from sbmlhybrid.analysis.sample import SampleSettings, posterior_summary, sample
from sbmlhybrid.analysis.stored import read_fit

__all__ = ["ProfileSettings", "SampleSettings", "posterior_summary", "profile",
           "profile_intervals", "read_fit", "sample"]
