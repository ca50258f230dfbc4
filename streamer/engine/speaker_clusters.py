"""Label revision for one channel's speakers (sans-I/O; ``speakers.revise_window``).

``SpeakerTracker`` labels each utterance once, causally, so an early mistake (a short first
utterance that seeds a poor mean, one voice split over two labels) would stay for the whole
call. ``SpeakerReviser`` keeps the last ``window`` labelled utterances of a channel and,
after each new one, clusters them again as an offline diarizer would, with everything it
now knows:

1. **Clusters.** Agglomerative with average linkage on cosine, starting from one cluster
   per utterance: the two clusters whose pairs of utterances have the highest mean cosine
   are merged while it is at least ``label_threshold``, then, while there are more than
   ``max_speakers`` clusters, the highest regardless (as the tracker gives the nearest
   label at the cap). Each enrolled party starts as a cluster of its enrolment mean
   (counted as many times as it has recordings) and the utterances already labelled with
   its name; two parties' clusters never merge. (Centroid linkage, the cosine of the
   clusters' means, was measured and not used: means of many utterances are alike, so it
   merged two actors into one label in a third of the conversations.)
2. **Names.** A party's cluster keeps the party's name. The other clusters get the ``S``
   labels their utterances already carry, by the assignment that keeps the most
   utterances' labels (Hungarian method on the overlap counts, ``best_assignment``), so
   labels stay stable; a cluster that gets none takes a new label while the channel has
   fewer than ``max_speakers``, else its utterances keep theirs.
3. **Revisions.** An utterance whose cluster's name differs from its label is revised,
   except an utterance labelled with a party's name (an enrolled name is never turned into
   an ``S`` label). One step gives each utterance one label: the step's clustering decides
   it once, so there is no flip-flop within a step, and a clustering that only renames
   (the same groups under other labels) revises nothing. A later step may revise an
   utterance again when the utterances that arrived since change its cluster.

Only utterances still in the window are revised; the newest is labelled by the same step
(its event is not yet published, so its label is not a revision). The caller
(``SpeakerTracker``) moves each revised embedding between the speakers' running means.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Anchor:
    """An enrolled party as the reviser sees it: its name and enrolment mean."""

    name: str
    embedding: np.ndarray  # L2-normalised
    weight: float  # how many recordings the mean stands for


@dataclass(frozen=True)
class Revision:
    """Utterance ``key`` was labelled ``speaker`` and is now ``revised``."""

    key: int
    speaker: str
    revised: str


@dataclass
class _Entry:
    key: int
    embedding: np.ndarray
    label: str


def agglomerate(sums: np.ndarray, threshold: float, max_clusters: int,
                groups: Sequence[int | None] | None = None,
                weights: Sequence[float] | np.ndarray | None = None) -> list[int]:
    """Each row's cluster (0, 1, ... in order of each cluster's first row): average linkage
    on cosine.

    ``sums``: one row per starting cluster, the sum of its unit embeddings (each scaled by
    its weight); ``weights``: how many embeddings each row stands for (default 1). The
    linkage of two clusters is the mean cosine over pairs of their embeddings
    (``sum_a . sum_b / (w_a w_b)``); the two with the highest are merged while it is at
    least ``threshold``, then the highest while more than ``max_clusters`` remain.
    ``groups``: rows with two different non-None groups never end in one cluster.
    """
    n = len(sums)
    if n == 0:
        return []
    tags: list[int | None] = list(groups) if groups is not None else [None] * n
    members = [[i] for i in range(n)]
    alive = np.ones(n, bool)
    # Gram matrix of the clusters' sums: merging a and b adds row b to row a.
    gram = sums.astype(np.float64) @ sums.astype(np.float64).T
    weight = np.ones(n) if weights is None else np.asarray(weights, np.float64).copy()
    while alive.sum() > 1:
        cosine = gram / np.outer(weight, weight)
        allowed = np.outer(alive, alive)
        np.fill_diagonal(allowed, False)
        tagged = np.array([t if t is not None else -1 for t in tags])
        both = (tagged[:, None] >= 0) & (tagged[None, :] >= 0)
        allowed &= ~(both & (tagged[:, None] != tagged[None, :]))  # two parties: never
        if not allowed.any():
            break
        masked = np.where(allowed, cosine, -np.inf)
        a, b = np.unravel_index(int(np.argmax(masked)), masked.shape)
        if masked[a, b] < threshold and alive.sum() <= max_clusters:
            break
        a, b = min(a, b), max(a, b)
        gram[a, :] += gram[b, :]
        gram[:, a] += gram[:, b]
        gram[b, :] = 0.0
        gram[:, b] = 0.0
        alive[b] = False
        weight[a] += weight[b]
        members[a] += members[b]
        members[b] = []
        tags[a] = tags[a] if tags[a] is not None else tags[b]
    out = [0] * n
    for number, i in enumerate(sorted(i for i in range(n) if alive[i])):
        for row in members[i]:
            out[row] = number
    return out


def best_assignment(score: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) pairs, one per row or column whichever is fewer, that maximise the
    total ``score`` (the Hungarian method; what scipy's ``linear_sum_assignment`` gives,
    without SciPy, which is not a dependency of the service)."""
    rows, cols = score.shape
    if rows == 0 or cols == 0:
        return []
    transposed = rows > cols
    cost = -(score.T if transposed else score).astype(np.float64)  # n <= m, minimised
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    way = np.zeros(m + 1, int)
    match = np.zeros(m + 1, int)  # match[j]: the row (1-based) given column j; 0 none
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = match[j0]
            delta, j1 = np.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    current = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if current < minv[j]:
                        minv[j], way[j] = current, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    pairs = [(int(match[j]) - 1, j - 1) for j in range(1, m + 1) if match[j]]
    return sorted((c, r) if transposed else (r, c) for r, c in pairs)


class SpeakerReviser:
    """The last ``window`` labelled utterances of a channel, clustered again after each."""

    def __init__(self, window: int, threshold: float, max_speakers: int,
                 anchors: Sequence[Anchor] = ()) -> None:
        self._threshold = threshold
        self._max = max_speakers
        self._anchors = tuple(anchors)
        self._parties = {anchor.name for anchor in anchors}
        self._entries: deque[_Entry] = deque(maxlen=window)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def labels(self) -> dict[str, int]:
        """How many utterances in the window hold each label."""
        counts: dict[str, int] = {}
        for entry in self._entries:
            counts[entry.label] = counts.get(entry.label, 0) + 1
        return counts

    def embedding(self, key: int) -> np.ndarray:
        """The embedding of utterance ``key`` (in the window)."""
        return next(e.embedding for e in self._entries if e.key == key)

    def add(self, key: int, embedding: np.ndarray, label: str, totals: Mapping[str, int],
            new_label: Callable[[], str]) -> list[Revision]:
        """Add utterance ``key`` (its unit ``embedding``, labelled ``label`` by the tracker)
        and revise the window; the changed labels, the newest utterance's included.

        ``totals``: how many utterances of the channel hold each label (the new one
        included); labels held by utterances older than the window stay in use whatever the
        window says and, with the parties, count towards ``max_speakers``.
        ``new_label``: gives the next unused ``S`` label.
        """
        self._entries.append(_Entry(key, embedding.astype(np.float64), label))
        entries = list(self._entries)
        window = self.labels
        kept = self._parties | {name for name, count in totals.items()
                                if count > window.get(name, 0)}
        # starting clusters: one per party (its mean and its utterances), one per utterance
        rows: list[np.ndarray] = []
        weights: list[float] = []
        groups: list[int | None] = []
        start_of: list[int] = []  # each entry's starting cluster
        party_row: dict[str, int] = {}
        for number, anchor in enumerate(self._anchors):
            party_row[anchor.name] = len(rows)
            rows.append(anchor.embedding.astype(np.float64) * anchor.weight)
            weights.append(anchor.weight)
            groups.append(number)
        for entry in entries:
            if entry.label in party_row:
                rows[party_row[entry.label]] = rows[party_row[entry.label]] + entry.embedding
                weights[party_row[entry.label]] += 1.0
                start_of.append(party_row[entry.label])
            else:
                start_of.append(len(rows))
                rows.append(entry.embedding)
                weights.append(1.0)
                groups.append(None)
        cluster_of_row = agglomerate(np.stack(rows), self._threshold, self._max, groups,
                                     weights)
        cluster = [cluster_of_row[start_of[i]] for i in range(len(entries))]
        names: dict[int, str] = {cluster_of_row[row]: name for name, row in party_row.items()}
        # the other clusters: the S labels that keep the most utterances' labels
        free = sorted({c for c in cluster if c not in names})
        current = sorted({e.label for e in entries if e.label not in self._parties})
        overlap = np.zeros((len(free), len(current)))
        for entry, c in zip(entries, cluster, strict=True):
            if c in names or entry.label in self._parties:
                continue
            overlap[free.index(c), current.index(entry.label)] += 1
        for row, col in best_assignment(overlap):
            if overlap[row, col] > 0:
                names[free[row]] = current[col]
        in_use = set(kept) | set(names.values())
        unnamed = [c for c in free if c not in names]
        unnamed.sort(key=lambda c: -cluster.count(c))  # the biggest first
        for c in unnamed:
            if len(in_use) >= self._max:
                break
            names[c] = new_label()
            in_use.add(names[c])
        revisions = []
        for entry, c in zip(entries, cluster, strict=True):
            revised = names.get(c, entry.label)
            if revised == entry.label or entry.label in self._parties:
                continue
            revisions.append(Revision(entry.key, entry.label, revised))
            entry.label = revised
        return revisions
