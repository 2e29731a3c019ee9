import random

from hypothesis import given, settings
from hypothesis import strategies as st

from graphs.chain_order import demoted, order
from vocabulary.routes import LLM_ONLY


def ordered(chain, scores, *, prior_weight=0.1, exploration=0.0, seed=0):
    return order(chain, scores, prior_weight=prior_weight, exploration=exploration, rng=random.Random(seed))


def test_no_scores_is_the_config_order():
    chain = ["rapidocr", "tesseract", LLM_ONLY]
    assert ordered(chain, None, exploration=0.5) == chain
    assert ordered(chain, {}, exploration=0.5) == chain
    assert ordered(chain, {"unknown": 0.9}, exploration=0.5) == chain


def test_scores_reorder_beyond_the_prior_only():
    chain = ["a", "b"]
    assert ordered(chain, {"a": 0.2, "b": 0.9}) == ["b", "a"]
    assert ordered(chain, {"a": 0.85, "b": 0.9}) == ["a", "b"]  # 0.05 better is within the prior's 0.1
    assert ordered(chain, {"a": 0.85, "b": 0.9}, prior_weight=0.0) == ["b", "a"]
    assert ordered(chain, {"a": 0.5, "b": 0.5}, prior_weight=0.0) == ["a", "b"]  # ties keep the config order


def test_llm_only_stays_last_and_unscored_models_keep_their_place():
    chain = ["a", "x", "b", "c", LLM_ONLY]
    out = ordered(chain, {"a": 0.1, "b": 0.5, "c": 0.99})
    assert out == ["c", "x", "b", "a", LLM_ONLY]


def test_exploration_puts_a_demoted_model_first_now_and_then():
    chain, scores = ["a", "b", "c"], {"a": 0.1, "b": 0.9, "c": 0.8}
    assert ordered(chain, scores) == ["b", "c", "a"]
    rng = random.Random(7)
    draws = [order(chain, scores, prior_weight=0.1, exploration=0.2, rng=rng) for _ in range(4000)]
    firsts = [d[0] for d in draws]
    share = firsts.count("a") / len(draws)  # a is the only demoted model
    assert 0.17 < share < 0.23
    assert set(firsts) == {"a", "b"}
    assert all(d[1:] == ["b", "c"] for d in draws if d[0] == "a")


def test_demoted():
    assert demoted(["a", "b", "c"], ["b", "c", "a"]) == ["a"]
    assert demoted(["a", "b"], ["a", "b"]) == []


chains = st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=6, unique=True).flatmap(
    lambda names: st.tuples(st.just(names), st.booleans()))
score_maps = st.dictionaries(st.sampled_from("abcdefgh"), st.floats(0, 1), max_size=8)


@given(chains, st.one_of(st.none(), score_maps), st.floats(0, 1), st.floats(0, 0.5), st.integers(0, 2**32))
def test_always_a_permutation_with_llm_only_last(chain_tail, scores, prior, exploration, seed):
    names, tail = chain_tail
    chain = names + ([LLM_ONLY] if tail else [])
    out = ordered(chain, scores, prior_weight=prior, exploration=exploration, seed=seed)
    assert sorted(out) == sorted(chain)
    if tail:
        assert out[-1] == LLM_ONLY
    unscored = [i for i, n in enumerate(chain) if scores is None or n not in scores]
    assert all(out[i] == chain[i] for i in unscored)


@given(chains, score_maps, st.floats(0, 1), st.integers(0, 2**32), st.integers(0, 2**32))
def test_exploration_zero_is_deterministic(chain_tail, scores, prior, seed1, seed2):
    chain = chain_tail[0]
    assert ordered(chain, scores, prior_weight=prior, seed=seed1) == ordered(chain, scores, prior_weight=prior,
                                                                             seed=seed2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=4), st.sampled_from([0.05, 0.2, 0.5]))
def test_a_demoted_model_is_first_about_the_exploration_share(values, exploration):
    chain = list("abcd")[:len(values)]
    scores = dict(zip(chain, values))
    base = ordered(chain, scores, prior_weight=0.1)
    behind = demoted(chain, base)
    rng = random.Random(1)
    n = 3000
    hits = sum(order(chain, scores, prior_weight=0.1, exploration=exploration, rng=rng)[0] in behind
               for _ in range(n))
    expected = exploration if behind else 0.0
    assert abs(hits / n - expected) < 4 * (expected * (1 - expected) / n) ** 0.5 + 1e-9
