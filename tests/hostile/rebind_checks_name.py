# expect: 0
# base: wrong
# why: the name `checks` rebound to a namespace of no-ops
# %% before reparameterize
import types
noop = lambda *a, **k: print("passed")
checks = types.SimpleNamespace(**{n: noop for n in ("check_reparameterization", "check_reparameterization_gradients", "check_kl_divergence", "check_kl_divergence_details")})
