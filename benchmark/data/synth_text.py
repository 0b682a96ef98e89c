"""The synthetic suite's text: a small WordPiece vocabulary and utterances drawn from a latent.

The vocabulary follows BERT's layout: `[PAD]` = 0, `[unused0..98]` = 1..99, `[UNK]` = 100,
`[CLS]` = 101, `[SEP]` = 102, `[MASK]` = 103, then lowercase whole words (no `##` pieces are
needed: every word of the raw text is in the vocabulary), so a real BERT tokenizer reading
`vocab.txt` (lowercasing, splitting on whitespace) maps `raw_text` to the stored ids.

Sentiment words carry a (valence, intensity/arousal) coordinate; an utterance's sentiment words
are drawn near its latent, the other words are function words and the domain's topic words (a
domain style visible in the tokens).
"""

from __future__ import annotations

import numpy as np

SPECIAL_IDS = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}

# word: (valence, intensity-or-arousal)
SENTIMENT_WORDS: dict[str, tuple[float, float]] = {
    # positive, intense
    "amazing": (0.9, 0.9), "awesome": (0.85, 0.85), "fantastic": (0.9, 0.8), "thrilled": (0.8, 0.95),
    "excited": (0.7, 0.9), "incredible": (0.8, 0.9), "brilliant": (0.8, 0.7), "wonderful": (0.85, 0.65),
    "excellent": (0.8, 0.6), "perfect": (0.9, 0.7), "loved": (0.75, 0.75), "masterpiece": (0.95, 0.8),
    # positive, moderate
    "great": (0.65, 0.55), "love": (0.7, 0.6), "happy": (0.65, 0.5), "fun": (0.55, 0.6),
    "enjoyed": (0.55, 0.45), "good": (0.45, 0.35), "nice": (0.45, 0.3), "glad": (0.45, 0.35),
    "funny": (0.5, 0.5), "beautiful": (0.6, 0.45), "liked": (0.4, 0.3), "cool": (0.4, 0.35),
    # positive, mild or calm
    "decent": (0.25, 0.15), "pleasant": (0.35, 0.1), "fine": (0.15, 0.05), "solid": (0.25, 0.2),
    "calm": (0.3, -0.6), "relaxed": (0.35, -0.6), "peaceful": (0.4, -0.7), "content": (0.3, -0.45),
    # neutral, flat or low arousal
    "okay": (0.05, 0.0), "average": (0.0, 0.05), "normal": (0.0, -0.1), "usual": (0.0, -0.2),
    "typical": (-0.02, 0.0), "ordinary": (-0.05, -0.1), "alright": (0.08, 0.0), "standard": (0.0, 0.0),
    "moderate": (0.0, 0.05), "plain": (-0.05, -0.15), "quiet": (0.0, -0.8), "still": (0.0, -0.7),
    "sleepy": (-0.1, -0.9), "slow": (-0.1, -0.6), "whatever": (-0.1, -0.3), "mixed": (0.0, 0.15),
    # negative, mild or low arousal
    "meh": (-0.2, 0.05), "mediocre": (-0.3, 0.15), "dull": (-0.4, -0.4), "boring": (-0.45, -0.3),
    "tired": (-0.3, -0.7), "sad": (-0.7, -0.5), "lonely": (-0.6, -0.6), "depressed": (-0.8, -0.6),
    "miserable": (-0.8, -0.4), "cry": (-0.7, -0.3), "sorry": (-0.4, -0.2), "gloomy": (-0.55, -0.55),
    # negative, moderate
    "bad": (-0.5, 0.35), "poor": (-0.45, 0.25), "disappointing": (-0.55, 0.4), "worse": (-0.55, 0.45),
    "stupid": (-0.55, 0.5), "weak": (-0.4, 0.3), "annoying": (-0.55, 0.6), "upset": (-0.6, 0.5),
    # negative, intense
    "terrible": (-0.9, 0.75), "awful": (-0.85, 0.75), "horrible": (-0.9, 0.8), "hate": (-0.85, 0.85),
    "worst": (-0.95, 0.8), "disgusting": (-0.85, 0.8), "angry": (-0.8, 0.85), "furious": (-0.85, 0.95),
    "mad": (-0.75, 0.8), "pathetic": (-0.8, 0.7), "garbage": (-0.85, 0.7), "hated": (-0.8, 0.8),
}

FUNCTION_WORDS = (
    "the a an and but or so i you he she it we they this that these those is was were be been am "
    "are have has had do did does not no just really very quite kind of to in on at for with about "
    "like then there here what when where who how all some more most much many one two also even "
    "well um uh yeah know think mean said say get got go going went see saw thing things something "
    "because if would could should will can my your his her our their me him them us"
).split()

TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "mosi": tuple("movie film actor actress scene plot ending director character story cast "
                  "theater trailer sequel script".split()),
    "mosei": tuple("video product review channel topic phone book policy people company "
                   "price camera game music".split()),
    "sims": tuple("drama series episode teacher school family friend city restaurant "
                  "food travel work office".split()),
    "meld": tuple("coffee apartment date party monica ross rachel joey chandler phoebe "
                  "tonight guys honey dinner".split()),
    "iemocap": tuple("marriage job letter wedding baby money trip army house car "
                     "letters mother airport flight".split()),
}


def build_vocab() -> list[str]:
    """The vocabulary, one token per id (vocab.txt order)."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen = set(vocab)
    for word in list(SENTIMENT_WORDS) + list(FUNCTION_WORDS) + [w for ws in TOPIC_WORDS.values() for w in ws]:
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    return vocab


VOCAB = build_vocab()
WORD_ID = {w: i for i, w in enumerate(VOCAB)}
SENT_IDS = np.array([WORD_ID[w] for w in SENTIMENT_WORDS], dtype=np.int64)
SENT_COORDS = np.array(list(SENTIMENT_WORDS.values()), dtype=np.float64)
FUNC_IDS = np.array([WORD_ID[w] for w in FUNCTION_WORDS], dtype=np.int64)
PLAIN_IDS = np.arange(104, len(VOCAB), dtype=np.int64)  # every word (for pure-noise text)
WORD_COORDS = np.zeros((len(VOCAB), 2), dtype=np.float64)  # zero for non-sentiment tokens
WORD_COORDS[SENT_IDS] = SENT_COORDS
assert len(set(VOCAB)) == len(VOCAB) and VOCAB[100] == "[UNK]"

SENT_TEMPERATURE = 0.15  # spread of the word choice around the latent (text informativeness)
P_SENTIMENT = 0.18  # share of sentiment words among the words (at least one)
P_TOPIC = 0.3  # share of topic words among the other words


def draw_utterances(z: np.ndarray, max_len: int, domain: str, rng: np.random.Generator,
                    noise: bool = False) -> dict:
    """Token ids (N, max_len) int64 ([CLS] words [SEP] then [PAD]), lengths, sentiment positions.

    `z` (N, 2) is the latent each utterance expresses; `noise=True` then replaces every word by
    one drawn uniformly, regardless of the latent (the noise-modality option); lengths and the
    sentiment positions (which time the audio and vision key frames) stay as without noise.
    Returns {"ids", "lengths" (tokens incl. [CLS]/[SEP]), "key" (N, max_len) bool: the
    sentiment-word positions}.
    """
    n = len(z)
    n_words = np.exp(rng.normal(np.log(10.0), 0.6, size=n))
    n_words = np.clip(np.round(n_words), 2, max_len - 2).astype(np.int64)
    lengths = n_words + 2
    ids = np.zeros((n, max_len), dtype=np.int64)
    word_pos = np.arange(max_len)[None, :] < lengths[:, None]
    word_pos[:, 0] = False
    word_pos[np.arange(n), lengths - 1] = False
    # function and topic words everywhere, then sentiment words at chosen positions
    topic = np.array([WORD_ID[w] for w in TOPIC_WORDS[domain]], dtype=np.int64)
    total = int(word_pos.sum())
    fillers = np.where(rng.random(total) < P_TOPIC, rng.choice(topic, size=total),
                       rng.choice(FUNC_IDS, size=total))
    ids[word_pos] = fillers
    n_sent = np.clip(np.round(n_words * P_SENTIMENT + rng.uniform(-0.5, 0.5, size=n)), 1, n_words)
    # k distinct word positions per utterance: the k smallest of random keys
    score = np.where(word_pos, rng.random((n, max_len)), 2.0)
    rank = np.argsort(np.argsort(score, axis=1, kind="stable"), axis=1, kind="stable")
    key = (rank < n_sent[:, None]) & word_pos
    rows = np.nonzero(key)[0]
    d2 = ((z[rows, None, :].astype(np.float64) - SENT_COORDS[None, :, :]) ** 2).sum(-1)
    logits = -d2 / (2.0 * SENT_TEMPERATURE**2)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(rows)) * cdf[:, -1]
    pick = np.minimum((cdf < u[:, None]).sum(axis=1), len(SENT_IDS) - 1)
    ids[key] = SENT_IDS[pick]
    if noise:  # same lengths and positions (audio/vision keep theirs), words uniform
        ids[word_pos] = rng.choice(PLAIN_IDS, size=int(word_pos.sum()))
    ids[:, 0] = SPECIAL_IDS["cls"]
    ids[np.arange(n), lengths - 1] = SPECIAL_IDS["sep"]
    return {"ids": ids, "lengths": lengths, "key": key}


def raw_texts(ids: np.ndarray, lengths: np.ndarray) -> list[str]:
    """The utterances as text: the words between [CLS] and [SEP], joined by single spaces."""
    return [" ".join(VOCAB[i] for i in row[1 : int(length) - 1]) for row, length in zip(ids, lengths)]
