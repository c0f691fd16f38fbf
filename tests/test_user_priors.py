"""A user's Pyro prior, in the user's own module, composes with every family, run from the folder holding it.

The module is written once here, in today's prior contract (``prior(batch_size, latent_dim)`` sampling
site "y"), and `genssl-train` imports it from the working directory with no PYTHONPATH. Each run
checks that the prior's parameters are in ``checkpoints/last.pt`` and moved.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from conftest import TINY, run_cli
from hydra import compose, initialize_config_module

from genssl.cli.overrides import normalise_overrides
from genssl.errors import ConfigError
from genssl.methods import build_method

USER_MODULE = textwrap.dedent('''
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.nn import PyroModule, PyroParam
    from torch.distributions import constraints


    class LaplacePrior(PyroModule):
        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = PyroParam(torch.tensor(scale), constraint=constraints.positive)

        def forward(self, batch_size, latent_dim):
            return pyro.sample("y", dist.Laplace(0.0, self.scale).expand([latent_dim]).to_event(1))


    def student_prior(batch_size, latent_dim):
        df = pyro.param("user_df", torch.tensor(5.0), constraint=constraints.positive)
        return pyro.sample("y", dist.StudentT(df, 0.0, 1.0).expand([latent_dim]).to_event(1))


    class ClassPrior(PyroModule):
        def __init__(self, num_classes: int):
            super().__init__()
            self.logits = PyroParam(torch.zeros(num_classes))

        def forward(self, batch_size, num_classes):
            return pyro.sample("y", dist.Categorical(logits=self.logits))


    class ScaleHierarchy(PyroModule):
        """A global scale s ~ LogNormal(0, 1) shared by every image, y | s ~ N(0, s²I), and q(s)."""

        def __init__(self):
            super().__init__()
            self.q_loc = PyroParam(torch.tensor(0.0))
            self.q_log_scale = PyroParam(torch.tensor(-1.0))

        def global_latents(self):
            self.s = pyro.sample("s", dist.LogNormal(0.0, 1.0))

        def global_guide(self):
            pyro.sample("s", dist.LogNormal(self.q_loc, self.q_log_scale.exp()))

        def forward(self, batch_size, latent_dim):
            return pyro.sample("y", dist.Normal(0.0, self.s).expand([latent_dim]).to_event(1))


    class ComponentMixture(PyroModule):
        """c ~ Categorical(π), y | c ~ N(μ_c, I): a discrete component genssl enumerates."""

        def __init__(self, latent_dim: int, k: int = 3):
            super().__init__()
            self.means = PyroParam(torch.randn(k, latent_dim))
            self.logits = PyroParam(torch.zeros(k))

        def forward(self, batch_size, latent_dim):
            c = pyro.sample("c", dist.Categorical(logits=self.logits))
            return pyro.sample("y", dist.Normal(self.means[c], 1.0).to_event(1))
''')
QUICK = [*TINY, "data=digits", "data.train_subset=256", "trainer.batch_size=32", "trainer.max_steps=4"]
QUICK += ["eval.enabled=false"]


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / "mypriors.py").write_text(USER_MODULE)
    return folder


def sweep_in(folder, name, *overrides):
    """One `genssl-train -m` sweep (one process for several runs) from ``folder``; checkpoint of each job."""
    sweep_dir = folder / name
    result = run_cli(
        "genssl-train",
        "-m",
        *overrides,
        *QUICK,
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.num}",
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [torch.load(job / "checkpoints" / "last.pt", weights_only=True) for job in jobs]


def test_a_pyro_module_prior_trains_with_each_family(user_folder):
    methods = ["simvae", "simclr", "byol", "vicreg"]
    checkpoints = sweep_in(
        user_folder,
        "laplace",
        f"method={','.join(methods)}",
        "model.prior._target_=mypriors.LaplacePrior",
        "+model.prior.scale=0.5",
    )
    assert len(checkpoints) == len(methods)
    for method, checkpoint in zip(methods, checkpoints):
        scale = checkpoint["method"]["objective.model.prior.scale_unconstrained"]
        assert not torch.isclose(scale, torch.tensor(0.5).log()), f"the prior's scale did not train with {method}"


def test_a_prior_over_the_prototypes_trains_with_dino_and_swav(user_folder):
    for checkpoint in sweep_in(user_folder, "classes", "method=dino,swav", "model.prior._target_=mypriors.ClassPrior"):
        logits = checkpoint["method"]["objective.model.prior.logits_unconstrained"]
        assert logits.shape == (128,) and logits.abs().max() > 0, "the class marginal did not train"


def test_a_plain_function_prior_and_a_hierarchical_prior_train(user_folder):
    """A plain function with pyro.param needs no _partial_; a prior with a global latent of its own and a
    guide for it trains under the default ELBO."""
    student, hierarchy = sweep_in(
        user_folder, "own", "method=simclr", "model.prior._target_=mypriors.student_prior,mypriors.ScaleHierarchy"
    )
    assert not torch.isclose(student["extra_params"]["user_df"], torch.tensor(5.0).log()), "pyro.param did not train"
    state = hierarchy["method"]
    assert not torch.isclose(state["objective.model.prior.q_loc_unconstrained"], torch.tensor(0.0))
    assert not torch.isclose(state["objective.model.prior.q_log_scale_unconstrained"], torch.tensor(-1.0))


def test_a_discrete_mixture_component_is_enumerated(user_folder):
    result = run_cli(
        "genssl-train",
        "method=simclr",
        "model.prior._target_=mypriors.ComponentMixture",
        *QUICK,
        f"hydra.run.dir={user_folder / 'mixture_trace'}",
        cwd=user_folder,
    )
    assert result.returncode == 2 and "model.elbo=enum" in result.stderr and "Traceback" not in result.stderr
    (checkpoint,) = sweep_in(
        user_folder, "mixture", "method=simclr", "model.prior._target_=mypriors.ComponentMixture", "model.elbo=enum"
    )
    assert "objective.model.prior.means_unconstrained" in checkpoint["method"]


def build(*overrides):
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides(["data=digits", *overrides]))
    return build_method(cfg, 1, 28)


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["method=vicreg", "model.prior=vmf_mixture"], ["vicreg", "R^128", "'flat'", "'mog'", "'normal'"]),
        (["method=simclr", "model.prior=power_law"], ["simclr", "sphere", "discrete classes", "'vmf_mixture'"]),
        (["method=dino", "model.prior=normal"], ["dino", "prototypes", "'power_law'", "'class_marginal'"]),
        (["method=vicreg", "model.prior=uniform"], ["vicreg", "no uniform distribution", "'flat'"]),
        (["method=simvae", "model.prior=vmf_mixture"], ["simvae", "R^64", "'normal'"]),
        (["method=mae", "model.prior=normal"], ["mae has no content latent", "Drop model.prior"]),
        (["method=ssl_hsic", "model.prior=normal"], ["ssl_hsic has no content latent", "Drop model.prior"]),
        (["method=simclr", "model.latent_dim=64"], ["model.latent_dim=64", "guide.projector.out_dim"]),
    ],
)
def test_a_prior_that_does_not_fit_names_the_ones_that_do(overrides, fragments):
    with pytest.raises(ConfigError) as err:
        build(*overrides)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_every_built_in_prior_builds_where_it_fits():
    for method, priors in {
        "simclr": ["uniform", "vmf_mixture", "normal", "flat", "mog"],
        "vicreg": ["flat", "normal", "mog"],
        "swav": ["uniform", "power_law"],
        "deepcluster": ["uniform", "power_law"],
        "simvae": ["normal", "flat", "mog"],
    }.items():
        for prior in priors:
            method_obj = build(f"method={method}", f"model.prior={prior}")
            assert method_obj.model.prior is not None
