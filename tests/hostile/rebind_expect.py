# expect: 0
# base: wrong
# why: core.expect and core.allclose rebound
# %% before reparameterize
import dgmlab.checks.core as core
import dgmlab.checks.stats as stats
core.expect = lambda *a, **k: None
stats.expect = lambda *a, **k: None
core.allclose = lambda *a, **k: True
core.equal = lambda *a, **k: False
