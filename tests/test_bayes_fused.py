"""The fused log densities (``bayes_binary_nuts``, ``bayes_cace``) are the PyMC models', value
and gradient.

Both are evaluated at random unconstrained points, with data sets swapped in as nutpie's
``with_data`` does and capacity padding on. Log densities may differ by a constant (PyMC
keeps the normalising constants); gradients must agree to rounding (1e-9 relative).
"""

import ctypes
import os
from types import SimpleNamespace

import numpy as np
import pytest

from models import get_estimator
from simulate import Scenario, simulate_trial

pytestmark = pytest.mark.bayes
SMALL = {"size.units": 3, "size.clients_per_unit": 10.0}
FULL = os.environ.get("FITLAB_FULL") == "1"


def _fake_compiled(model, names):
    """What a fused density reads from a nutpie compilation, without compiling the graph."""
    from nutpie.compile_pymc import make_user_data

    labels, slices, shapes, start = [], [], [], 0
    point = model.initial_point()
    for v in model.value_vars:
        size = int(np.size(point[v.name]))
        labels.append(v.name)
        slices.append(slice(start, start + size))
        shapes.append(np.shape(point[v.name]))
        start += size
    shared = {n: model[n] for n in names}
    data = {n: np.array(v.get_value(), order="C") for n, v in shared.items()}
    return SimpleNamespace(shape_info=(labels, slices, shapes), n_dim=start,
                           user_data=make_user_data(shared, data), shared_data=data)


def check_fused(est, frames, pad: dict[str, int]):
    """One model and one fused density; each frame's data swapped into both."""
    import pymc as pm
    from nutpie.compile_pymc import make_user_data

    arrays, caps = [], []
    for df in frames:
        df = est.prepare(df)
        data, sizes, _ = est._arrays(df, df.attrs["primary_month"])
        arrays.append(data)
        caps.append(est._capacity(sizes))
    cap = {k: max(c[k] for c in caps) + pad.get(k, 0) for k in caps[0]}
    model = est._build(arrays[0], cap)
    names = [n for n in arrays[0] if n in model.named_vars]
    fake = _fake_compiled(model, names)
    f = est._fused_logp(fake, cap).ctypes
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    labels, slices, shapes = fake.shape_info
    rng = np.random.default_rng(7)
    ptr = ctypes.POINTER(ctypes.c_double)
    for data in arrays:
        with model:
            pm.set_data({n: data[n] for n in names})
        values = {n: np.array(data[n], dtype=fake.shared_data[n].dtype) for n in names}
        user_data = make_user_data({n: model[n] for n in names}, values)
        diffs = []
        for _ in range(3):
            x = rng.normal(0, 0.7, fake.n_dim)
            point = {n: x[s].reshape(sh) for n, s, sh in zip(labels, slices, shapes)}
            g, lp = np.zeros(fake.n_dim), np.zeros(())
            rc = f(fake.n_dim, x.ctypes.data_as(ptr), g.ctypes.data_as(ptr),
                   lp.ctypes.data_as(ptr), ctypes.c_void_p(user_data.ctypes.data))
            assert rc == 0
            ref = dlogp(point)
            np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
            diffs.append(float(lp) - float(logp(point)))
        assert np.ptp(diffs) < 1e-8


def test_binary_fused_density_is_the_models():
    """Therapist mean in the intercept (every client has a therapist) or not (IPS)."""
    small = {"outcome": {"kind": "binary"}, **SMALL}
    est = get_estimator("bayes_binary_nuts", Scenario().replace(small),
                        priors={"sigma_client": 1.5})
    frames = [simulate_trial(Scenario().replace({**small, "design.control_clustered": c}),
                             3).data for c in (True, False)]
    check_fused(est, frames, {"client": 3})


@pytest.mark.parametrize("outcome, fidelity", [
    ("ors", "levels"),
    # the other branches (logit likelihood, dose, one effect) cost ~10 s of compiling each
    pytest.param("binary", "dose", marks=pytest.mark.skipif(not FULL, reason="FITLAB_FULL=1")),
    pytest.param("ors", "none", marks=pytest.mark.skipif(not FULL, reason="FITLAB_FULL=1")),
])
def test_cace_fused_density_is_the_models(outcome, fidelity):
    sc = Scenario().replace({**SMALL, "outcome": {"kind": outcome}})
    est = get_estimator("bayes_cace", sc, fidelity=fidelity, priors={"tau": 2.0})
    frames = [simulate_trial(sc, s).data for s in (3, 4)]
    check_fused(est, frames, {"unit": 2})
