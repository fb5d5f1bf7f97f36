import numpy as np
import pytest

from coupled.domains.speech.corpus import CorpusConfig, build_corpus

TINY = CorpusConfig(speakers={"train": 3, "val": 2, "test": 2}, digit_strings=3)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A real (synthesised) corpus of 7 speakers x 24 utterances."""
    return build_corpus(TINY, tmp_path_factory.mktemp("speech") / "corpus", progress=False)


@pytest.fixture(scope="session")
def speech_wave(tiny_corpus):
    from coupled.domains.speech.corpus import load_split

    utts = load_split(tiny_corpus, "test", tasks=("digits",))
    return max((u.wave for u in utts), key=len)


def tone(seconds=1.0, rate=16000, f=440.0, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)
