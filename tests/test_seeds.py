"""Seeds by purpose (spec section 5, issue 17): corruption, sampling and training draw from streams that no
choice of seed values makes the same, and a (purpose, seed, item) always names the same stream.

The first tests go through functions that predate `coupled.seeds`' purposes (`corrupt_items`, the runner,
`step_generator`), so they say what went wrong before: equal seeds gave the sampler the corruption's noise.
"""

import numpy as np
import pytest
import torch

from coupled import seeds
from coupled.domains.registry import corrupt_items
from coupled.errors import CoupledError

N = 4


def _corruption_draws(seed: int, n: int = N) -> torch.Tensor:
    """The first draws of each item's corruption generator, as `corrupt_items` hands it to a corruption."""
    def record(x, severity, generator):
        return torch.randn(x.shape, generator=generator)

    return corrupt_items(record, torch.zeros(n, 1, 2, 2), "record", 1.0, seed)


def _evaluate_sampling_draws(monkeypatch, seed: int, n: int = N) -> torch.Tensor:
    """The first draws of each item's sampling generator, as `coupled evaluate` (the runner) hands it to a method."""
    from coupled.engine import StrategyResult
    from coupled.evaluation import runner

    seen = []

    def fake_run_method(method, coupling, d, generators, **options):
        seen.extend(torch.randn((1, 2, 2), generator=g) for g in generators)
        return StrategyResult(method, None, None, torch.zeros(len(d), 10), {})

    class Bundle:
        domain = "image"

        def prepare(self, method, options):
            return None, method, {}

    monkeypatch.setattr(runner, "run_method", fake_run_method)
    runner.run_specs(Bundle(), torch.zeros(n, 1, 2, 2), torch.zeros(n, dtype=torch.long), torch.zeros(n, 1, 2, 2),
                     [runner.MethodSpec("noisy", "noisy")], seed=seed, batch_size=3, device=torch.device("cpu"))
    return torch.stack(seen)


@pytest.mark.parametrize("seed", [0, 12345])
def test_equal_seeds_do_not_give_the_sampler_the_corruptions_noise(monkeypatch, seed):
    """`coupled evaluate --seeds 12345` used to sample every item from the noise that had corrupted it."""
    corruption = _corruption_draws(seed)
    sampling = _evaluate_sampling_draws(monkeypatch, seed)
    for i in range(N):
        assert not torch.equal(corruption[i], sampling[i]), f"item {i}: the sampler drew the corruption's noise"


def test_a_training_step_does_not_draw_an_evaluation_items_noise(monkeypatch):
    """Step 0 of stage k hashed [seed, k, 0, 0], which numpy's zero padding makes item k's [seed, k]."""
    from coupled.training.stages import STAGES, step_generator

    sampling = _evaluate_sampling_draws(monkeypatch, 7)
    corruption = _corruption_draws(7)
    for k in range(1, N):
        step = torch.randn((1, 2, 2), generator=step_generator(7, STAGES[k], 0))
        assert not torch.equal(step, sampling[k]) and not torch.equal(step, corruption[k])


def test_the_same_purpose_seed_and_index_always_give_the_same_stream():
    for purpose in seeds.PURPOSES:
        a = torch.randn(5, generator=seeds.item_generator(purpose, 3, 7))
        b = torch.randn(5, generator=seeds.item_generator(purpose, 3, 7))
        assert torch.equal(a, b)
        # a function of (purpose, seed, index) alone: not of the batch it is asked for in
        assert seeds.item_seeds(purpose, 3, 5, 4)[2] == seeds.item_seeds(purpose, 3, 7, 1)[0] == seeds.stream_seed(purpose, 3, 7)
    assert seeds.item_seeds("sampling", 3, 0, 3) != seeds.item_seeds("sampling", 4, 0, 3)
    assert len(set(seeds.item_seeds("sampling", 3, 0, 50))) == 50


def _hashed_words(ss: np.random.SeedSequence) -> tuple[int, ...]:
    """The words numpy's SeedSequence hashes: its entropy, zero-padded to 4 words when a spawn key follows."""
    entropy = [int(w) for w in np.atleast_1d(ss.entropy)]
    if ss.spawn_key:
        entropy = entropy + [0] * (4 - len(entropy))
    return tuple(entropy + list(ss.spawn_key))


def test_no_two_purposes_hash_the_same_words():
    """Whatever the seeds and indices (0 included: numpy pads short entropy with zeros, so [a, b] and
    [a, b, 0] hash alike), streams of two purposes hash different words, and their seeds differ."""
    values = [0, 1, 2, 7, 2**32 - 1]
    named = {}
    for purpose in seeds.PURPOSES:
        for words in [(a,) for a in values] + [(a, b) for a in values for b in values] + [(a, b, 0, 0) for a in values for b in values[:2]]:
            for by_content in (False, True):
                ss = seeds.sequence(purpose, *words, by_content=by_content)
                named.setdefault(_hashed_words(ss), set()).add((purpose, by_content))
    clashes = {k: v for k, v in named.items() if len({p for p, _ in v}) > 1}
    assert not clashes, f"purposes hash the same words: {list(clashes.items())[:3]}"
    torch_seeds = {p: {s & 0xFFFFFFFF for a in range(40) for s in seeds.item_seeds(p, a, 0, 40)} for p in seeds.PURPOSES}
    for p in seeds.PURPOSES:
        for q in seeds.PURPOSES:
            if p < q:
                assert not torch_seeds[p] & torch_seeds[q], f"{p} and {q} share a torch stream"


def test_corruption_keeps_the_published_stream():
    """The corrupted data sets (and the noisy rows, calibrated severities) were drawn from SeedSequence([seed,
    index]): the corruption stream is that one still."""
    for seed, index in [(0, 0), (12345, 3), (2**32 - 1, 999)]:
        old = int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])
        assert seeds.stream_seed("corruption", seed, index) == old
    from coupled.domains.image.corruptions import corrupt

    x = torch.zeros(3, 1, 28, 28)
    old = torch.cat([x[i:i + 1] + 0.5 * torch.randn(x[i:i + 1].shape, generator=torch.Generator().manual_seed(
        int(np.random.SeedSequence([12345, 10 + i]).generate_state(1, np.uint64)[0]))) for i in range(3)])
    torch.testing.assert_close(corrupt(x, "gaussian_noise", 0.5, 12345, first_index=10), old, atol=0, rtol=0)


def test_speech_degradations_keep_their_values():
    """Speech's (seed, condition, index) scheme goes through `coupled.seeds` bit for bit."""
    from coupled.domains.speech.evaluate import degrade_item

    wave = np.sin(np.linspace(0, 200, 4000)).astype(np.float32)
    cond = {"corruption": "white_noise", "snr_db": 5.0}
    import json
    import zlib

    from coupled.domains.speech.degrade import degrade

    key = zlib.crc32(json.dumps([cond["corruption"], cond["snr_db"], cond.get("rt60_target")]).encode())
    old = degrade("white_noise", wave, 5.0, [3, key, 11], {"babble": [], "talkers": 6})
    assert np.array_equal(degrade_item(cond, wave, 3, 11, []), old)


def test_content_seeds_follow_the_item_not_its_position():
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    forward = seeds.content_seeds("sampling", 3, x)
    perm = [3, 0, 4, 1, 2]
    assert seeds.content_seeds("sampling", 3, x[perm]) == [forward[i] for i in perm]
    assert seeds.content_seeds("sampling", 4, x) != forward
    assert seeds.content_seeds("corruption", 3, x) != forward
    assert seeds.content_seeds("sampling", 3, torch.cat([x[:1], x[:1]]))[1] == forward[0]
    assert seeds.content_seeds("sampling", 3, x.double()) == forward  # float32 values decide, not the dtype


@pytest.mark.parametrize("call, message", [
    (lambda: seeds.item_seeds("sample", 0, 0, 1), "unknown seed purpose 'sample'; choose one of: corruption, sampling"),
    (lambda: seeds.item_seeds("sampling", -1, 0, 1), r"integer in \[0, 2\*\*32\), got -1"),
    (lambda: seeds.stream_seed("training", 2**32), r"integer in \[0, 2\*\*32\), got 4294967296"),
    (lambda: seeds.stream_seed("training", 1, 2, 3, 4, 5), "at most 4 words"),
    (lambda: seeds.item_seeds(0, 0, 0, 1), "unknown seed purpose 0"),
])
def test_bad_purposes_and_words_are_one_line_errors(call, message):
    with pytest.raises(CoupledError, match=message):
        call()
