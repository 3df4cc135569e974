"""The flow families (planar, triangular Sylvester): their densities against autograd's Jacobians, their
identity starts, and q* in them against the linear-Gaussian oracle."""

import math

import pytest
import torch

from amortgap import qstar
from amortgap.families import DiagonalGaussian, PlanarFlow, SylvesterFlow, diagonal_gaussian, make_family, sylvester_matrices


def random_flow_params(batch=4, d=3, length=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = PlanarFlow(length).prior_params(batch, d, torch.zeros(1))
    return {k: v + 0.7 * torch.randn(v.shape, generator=g) for k, v in params.items()}


def test_planar_log_prob_is_the_change_of_variables():
    """log q(z) tracked through the layers equals log N(eps) - log|det dz/deps| from autograd."""
    params = random_flow_params()
    q = PlanarFlow(3).distribution(params)
    torch.manual_seed(5)
    z = q.rsample()
    torch.manual_seed(5)
    eps = torch.randn(4, 3)
    for i in range(4):
        row = {k: v[i : i + 1] for k, v in params.items()}

        def push(e, row=row):
            flow = PlanarFlow(3).distribution(row)
            # the same layers as rsample, from a given eps (rsample draws its own)
            zz = row["loc"][0] + e * row["log_scale"][0].exp()
            for k in range(3):
                zz = zz + flow._u[0, k] * torch.tanh(zz @ row["w"][0, k] + row["b"][0, k])
            return zz

        jac = torch.autograd.functional.jacobian(push, eps[i])
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(eps[i]).sum() - torch.linalg.slogdet(jac)[1]
        assert torch.allclose(push(eps[i]), z[i], atol=1e-5)
        assert q.log_prob(z)[i] == pytest.approx(expected.item(), abs=1e-4)


def test_every_layer_stays_invertible():
    """Even with u pointing against w, the reparameterized u keeps 1 + h' w.u_hat > 0."""
    params = random_flow_params(batch=2, d=2, length=2)
    params["u"] = -50 * params["w"]
    q = PlanarFlow(2).distribution(params)
    z = q.rsample((1000,))
    assert torch.isfinite(q.log_prob(z)).all()
    assert (q._wu > -1 + 5e-4).all()


def test_planar_flow_starts_as_the_gaussian_it_is_given():
    loc, log_scale = torch.randn(5, 3), 0.3 * torch.randn(5, 3)
    gaussian = diagonal_gaussian(loc, log_scale)
    flow = PlanarFlow(4).distribution(PlanarFlow(4).params_from(gaussian))
    torch.manual_seed(1)
    z_flow = flow.rsample((7,))
    torch.manual_seed(1)
    z_gauss = gaussian.rsample((7,))
    assert torch.allclose(z_flow, z_gauss)
    assert torch.allclose(flow.log_prob(z_flow), gaussian.log_prob(z_gauss), atol=1e-5)


def test_log_prob_is_refused_for_points_the_flow_did_not_draw():
    q = PlanarFlow(2).distribution(random_flow_params(length=2))
    q.rsample((3,))
    with pytest.raises(NotImplementedError, match="no closed-form inverse"):
        q.log_prob(torch.zeros(3, 4, 3))


def test_families_by_name():
    assert isinstance(make_family("diagonal"), DiagonalGaussian)
    assert make_family("planar", 4).flat_size(3) == 6 + 4 * 7
    assert make_family("sylvester", 2).flat_size(3) == 6 + 2 * (9 + 6)
    with pytest.raises(ValueError, match="family must be one of"):
        make_family("iaf")
    with pytest.raises(ValueError, match="at least one layer"):
        PlanarFlow(0)
    with pytest.raises(ValueError, match="at least one layer"):
        SylvesterFlow(0)


def test_unflatten_inverts_the_layout():
    family = PlanarFlow(2)
    flat = torch.arange(2 * family.flat_size(3), dtype=torch.float32).view(2, -1)
    params = family.unflatten(flat, 3)
    assert params["u"].shape == (2, 2, 3) and params["b"].shape == (2, 2)
    assert torch.equal(torch.cat([params[k].reshape(2, -1) for k in ("loc", "log_scale", "u", "w", "b")], 1), flat)


def test_flow_qstar_closes_part_of_the_approximation_gap(linear_model, linear_x):
    """The linear-Gaussian posterior is correlated, so the best diagonal Gaussian leaves an exact
    approximation gap; q* in the planar family may only lie between that q* and log p(x)."""
    torch.manual_seed(0)
    x = linear_x[:32]
    flow = qstar.optimal_q(linear_model, x, PlanarFlow(8), qstar.QStarConfig(max_steps=3000))
    torch.manual_seed(1)
    z = flow.q.rsample((4000,))
    flow_elbo = (linear_model.log_joint(x, z) - flow.q.log_prob(z)).mean(0)
    log_px = linear_model.exact_log_px(x)
    ffg_elbo = linear_model.exact_elbo(x, linear_model.exact_qstar(x))
    ffg_gap, flow_gap = (log_px - ffg_elbo).mean().item(), (log_px - flow_elbo).mean().item()
    assert flow_gap > -0.01, "no ELBO exceeds log p(x)"
    assert flow_gap < 0.7 * ffg_gap, (flow_gap, ffg_gap)
    assert not math.isnan(flow_gap)


def random_sylvester_params(batch=4, d=3, length=3, seed=0, spread=0.7):
    g = torch.Generator().manual_seed(seed)
    params = SylvesterFlow(length).prior_params(batch, d, torch.zeros(1, dtype=torch.float64))
    return {k: v + spread * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}


@pytest.mark.parametrize("length", [1, 2, 3])
def test_sylvester_log_prob_is_the_change_of_variables(length):
    """log q(z) tracked through the layers equals log N(eps) - log|det dz/deps| from autograd's
    Jacobian, per datapoint, upper (even) and lower (odd) triangular layers alike."""
    params = random_sylvester_params(length=length)
    q = SylvesterFlow(length).distribution(params)
    eps = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z = q.from_noise(eps)
    for s in range(2):
        for i in range(4):
            row = {k: v[i : i + 1] for k, v in params.items()}

            def push(e, row=row):
                return SylvesterFlow(length).distribution(row).from_noise(e.view(1, 1, 3)).view(3)

            jac = torch.autograd.functional.jacobian(push, eps[s, i])
            expected = torch.distributions.Normal(0.0, 1.0).log_prob(eps[s, i]).sum() - torch.linalg.slogdet(jac)[1]
            assert torch.allclose(push(eps[s, i]), z[s, i])
            assert q.log_prob(z)[s, i].item() == pytest.approx(expected.item(), abs=1e-10)


def test_sylvester_layers_are_triangular_and_stay_invertible():
    """Even layers' R, R~ are upper triangular, odd ones' lower; with huge parameters, where tanh
    rounds to 1, and at tanh' = 1 (h = 0), every Jacobian factor 1 + r r~ tanh' stays positive."""
    w, v, r, r_tilde = sylvester_matrices(torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4))
    assert torch.equal(w[:, 0], w[:, 0].tril()) and torch.equal(v[:, 0], v[:, 0].tril()), "R~^T, R^T lower: R~, R upper"
    assert torch.equal(w[:, 1], w[:, 1].triu()) and torch.equal(v[:, 1], v[:, 1].triu())
    assert torch.equal(w.diagonal(dim1=-2, dim2=-1), r_tilde) and torch.equal(v.diagonal(dim1=-2, dim2=-1), r)
    huge = random_sylvester_params(batch=2, spread=50.0)
    _, _, r, r_tilde = sylvester_matrices(huge["a"], huge["c"])
    assert (r * r_tilde).abs().max() < 1 - 1e-3
    q = SylvesterFlow(3).distribution(huge)
    assert torch.isfinite(q.log_prob(q.rsample((1000,)))).all()
    family = SylvesterFlow(1)
    worst = family.prior_params(1, 3, torch.zeros(1))  # z_0 = 0 and b = 0: h = 0, tanh' = 1
    eye = torch.eye(3).expand(1, 1, 3, 3)
    worst["a"], worst["c"] = 12 * eye, torch.full((1, 1, 3), -12.0)  # tanh rounds to +1 and -1 in float32
    flow = family.distribution(worst)
    assert torch.isfinite(flow.log_prob(flow.from_noise(torch.zeros(1, 1, 3)))).all()


def test_sylvester_flow_starts_as_the_gaussian_it_is_given():
    loc, log_scale = torch.randn(5, 3), 0.3 * torch.randn(5, 3)
    gaussian = diagonal_gaussian(loc, log_scale)
    family = SylvesterFlow(2)
    flow = family.distribution(family.params_from(gaussian))
    eps = torch.randn(7, 5, 3)
    z = flow.from_noise(eps)
    assert torch.equal(z, loc + eps * log_scale.exp())
    assert torch.allclose(flow.log_prob(z), gaussian.log_prob(z), atol=1e-5)
    assert family.params_from(flow)["a"].shape == (5, 2, 3, 3)
    with pytest.raises(ValueError, match="Sylvester layers"):
        SylvesterFlow(3).params_from(flow)
    with pytest.raises(NotImplementedError, match="no closed-form inverse"):
        flow.log_prob(z.clone())


def test_sylvester_unflatten_inverts_the_layout():
    family = SylvesterFlow(2)
    flat = torch.arange(2 * family.flat_size(3), dtype=torch.float32).view(2, -1)
    params = family.unflatten(flat, 3)
    assert params["a"].shape == (2, 2, 3, 3) and params["c"].shape == (2, 2, 3) and params["b"].shape == (2, 2, 3)
    assert torch.equal(torch.cat([params[k].reshape(2, -1) for k in ("loc", "log_scale", "a", "c", "b")], 1), flat)


def test_sylvester_qstar_closes_most_of_the_approximation_gap(linear_model, linear_x):
    """On the linear-Gaussian model, q* in the Sylvester family lies between the best diagonal
    Gaussian and log p(x), and closer to log p(x) than to it: triangular layers can shear a
    Gaussian into a correlated one."""
    torch.manual_seed(0)
    x = linear_x[:32]
    flow = qstar.optimal_q(linear_model, x, SylvesterFlow(2), qstar.QStarConfig(max_steps=3000))
    torch.manual_seed(1)
    z = flow.q.rsample((4000,))
    flow_elbo = (linear_model.log_joint(x, z) - flow.q.log_prob(z)).mean(0)
    log_px = linear_model.exact_log_px(x)
    ffg_gap = (log_px - linear_model.exact_elbo(x, linear_model.exact_qstar(x))).mean().item()
    flow_gap = (log_px - flow_elbo).mean().item()
    assert -0.01 < flow_gap < 0.5 * ffg_gap, (flow_gap, ffg_gap)
