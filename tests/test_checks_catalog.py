"""The catalogs prove the checks: every mutant loses points with the expected message, every
correct alternative and the reference earn full marks, the unmodified stub earns nothing."""

from __future__ import annotations

import io

import pytest

import cfgflow_ref as ref
from autograder.catalog import entries, shape_share
from autograder.catalog.__main__ import evaluate
from autograder.catalog.trivial import METHOD
from autograder.checks import HIDDEN, run_check
from cfgflow import course
from cfgflow.checks import check

MUTANTS = entries(kind="mutant")
ALTERNATIVES = entries(kind="alternative")

REFERENCE = {p.name: getattr(ref, p.student_class) for p in course.PARTS.values()}


def test_catalog_covers_every_part():
    for part in HIDDEN:
        assert len(entries(part, "mutant")) >= 4, part
        assert len(entries(part, "alternative")) >= 2, part


@pytest.mark.parametrize("entry", MUTANTS, ids=lambda e: f"{e.part}-{e.name}")
def test_mutant_loses_points_with_named_mistake(entry):
    o = evaluate(entry)
    assert o.visible < 1.0 or o.hidden < 1.0, f"{entry.name} earned full marks"
    assert entry.expect.lower() in o.text.lower(), o.text


@pytest.mark.parametrize("entry", ALTERNATIVES, ids=lambda e: f"{e.part}-{e.name}")
def test_alternative_gets_full_marks(entry):
    o = evaluate(entry)
    assert (o.visible, o.hidden) == (1.0, 1.0), o.text


@pytest.mark.parametrize("part", sorted(REFERENCE))
@pytest.mark.parametrize("hidden", [False, True])
def test_reference_gets_full_marks(part, hidden):
    rep = run_check(part, REFERENCE[part], points=3, hidden=hidden, allow_reference=True, out=io.StringIO())
    assert rep.earned == 3.0, rep.text


class _Stub:
    """What nbgrader's release leaves: ``raise NotImplementedError()`` in the solution region."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        raise NotImplementedError()

    def __call__(self, *args, **kwargs):
        raise NotImplementedError()


class _InitStub:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError()


def _forward_stub(part):
    """A correct constructor with the graded method left as ``raise NotImplementedError()``."""
    base = entries(part, "alternative")[0].cls
    method = METHOD.get(part, "forward")

    def stub(self, *args, **kwargs):
        raise NotImplementedError()

    return type(f"{base.__name__}Stub", (base,), {method: stub})


@pytest.mark.parametrize("part", sorted(HIDDEN))
def test_given_constructor_with_stub_method_earns_nothing(part):
    for hidden in (False, True):
        rep = run_check(part, _forward_stub(part), points=2, hidden=hidden, out=io.StringIO())
        assert rep.earned == 0.0, rep.text


@pytest.mark.parametrize("part", sorted(HIDDEN))
@pytest.mark.parametrize("stub", [_Stub, _InitStub])
def test_stub_earns_nothing(part, stub, capsys):
    with pytest.raises(AssertionError, match="NotImplementedError: did you fill in the cell"):
        check(part, stub, points=2)
    assert capsys.readouterr().err == ""
    for graded in ({"hidden": True}, {"graded": True}):
        rep = run_check(part, stub, points=2, out=io.StringIO(), **graded)
        assert rep.earned == 0.0 and "did you fill in the cell" in rep.text


@pytest.mark.slow
@pytest.mark.parametrize("entry", MUTANTS + ALTERNATIVES, ids=lambda e: f"{e.part}-{e.name}")
def test_judged_visible_cell_agrees_with_the_self_check(entry):
    """A graded visible cell runs the same table on the judge's inputs (not the shipped ones):
    every entry earns the same share and fails the same sub-checks as in the self-check."""
    own = run_check(entry.part, entry.cls, points=1, out=io.StringIO())
    judged = run_check(entry.part, entry.cls, points=1, graded=True, out=io.StringIO())
    assert round(judged.fraction, 4) == round(own.fraction, 4), judged.text
    assert [r.passed for r in judged.results] == [r.passed for r in own.results]


REAL_STYLE = [e for e in MUTANTS if e.fraction is not None]


@pytest.mark.parametrize("entry", REAL_STYLE, ids=lambda e: f"{e.part}-{e.name}")
def test_real_style_variant_gets_its_share(entry):
    """The share of the points a careful human grader gives each habit of real submissions."""
    o = evaluate(entry)
    assert (round(o.visible, 2), round(o.hidden, 2)) == (entry.fraction, entry.fraction), o.text


# Mutants whose whole result is wrong: every sub-check that compares the output fails (by the
# weighting rubric the heaviest deduction). Every other mutant makes one mistake and loses points
# in exactly one sub-check per mode.
WRONG_RESULT = {
    "decoder/LearnedImage": "a learned image whatever z: no property of the output to credit",
    "decoder/SampledImage": "a random sample, not a function of z: no property of the output to credit",
    "depatchifier/DropsChannel": "output of the wrong shape (b, img, img): no output to compare",
    "depatchifier/NoFinalConv": "output of the wrong shape (b, final_dim, img, img): no output to compare",
    "depatchifier/ViewToImage": "tokens scrambled into the image: neither locality nor order holds",
    "encoder/LearnedConstant": "a learned latent whatever x: no property of the output to credit",
    "encoder/SampledLatent": "a random sample, not a function of x: no property of the output to credit",
    "fourier_encoder/FullSizeWeights": "2 dim features: the width and the values are wrong",
    "latent_sampler/NoDecode": "latents returned, not images: no image to compare, no decoder call",
    "latent_sampler/X0Ignored": "fresh noise at every call: no run gives the images of the given x0",
    "mha/ViewMerge": "heads merged across tokens: wrong values and no permutation equivariance",
    "mha/ViewSplit": "heads split across tokens: wrong values and no permutation equivariance",
    "patchifier/ViewNoPermute": "channels and positions mixed: no token is a map of its own patch",
    "reparameterize/NoNoise": "the mean returned: no spread, nothing fresh, no gradient in logvar",
    "vae_loss/LabPerElementMean": "the lab's per-element means without the 1/2s: both terms are wrong",
}


@pytest.mark.parametrize("entry", MUTANTS, ids=lambda e: f"{e.part}-{e.name}")
def test_one_mistake_costs_one_subcheck(entry):
    key = f"{entry.part}/{entry.name}"
    for hidden in (False, True):
        rep = run_check(entry.part, entry.cls, points=1, hidden=hidden, out=io.StringIO())
        failed = [r.name for r in rep.results if not r.passed]
        if key in WRONG_RESULT:
            assert len(failed) > 1, f"{key} now fails only {failed}: drop it from WRONG_RESULT"
        else:
            assert len(failed) == 1, f"{key} ({'hidden' if hidden else 'visible'}) charged in {failed}"


TRIVIAL = entries(kind="trivial")


@pytest.mark.parametrize("entry", TRIVIAL, ids=lambda e: f"{e.part}-{e.name}")
def test_trivial_stub_earns_at_most_the_shape_share(entry):
    """Right-shaped output that computes nothing (zeros, ones, noise, a learned constant, the
    input echoed) earns no more than the output-shape sub-check's share, in every mode."""
    limit = shape_share(entry.part) + 1e-9
    for mode in ({}, {"hidden": True}, {"graded": True}):
        rep = run_check(entry.part, entry.cls, points=1, out=io.StringIO(), **mode)
        assert rep.fraction <= limit, f"{mode or 'visible'}: {rep.fraction:.2f} > {limit:.2f}\n{rep.text}"
