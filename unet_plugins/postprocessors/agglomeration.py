"""Merge watershed fragments that no predicted boundary separates.

A distance-transform watershed puts several seeds into one large or lobed cell (maxima along
a ridge, or on both sides of a neck), and so splits it, although the boundary map shows no
membrane between the pieces. Average agglomeration undoes that: neighbouring segments whose
contact has a mean boundary probability below a threshold are merged, lowest first, with the
statistics of merged contacts added up (the "mean" rule of the agglomeration used for plant
tissue, e.g. GASP's average linkage). A real membrane with a gap keeps a high mean and is not
merged.

Contact statistics are sums and counts, so blocks of a large volume can each count their own
contacts and the totals are those of the whole volume.
"""

from __future__ import annotations

import heapq

import numpy as np

#: (pairs (k, 2) of labels a < b, summed boundary probability over their contacts, counts)
Contacts = tuple[np.ndarray, np.ndarray, np.ndarray]


def no_contacts() -> Contacts:
    """The statistics of a labelling in which no two labels touch."""
    return np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0, np.int64)


def contact_statistics(
    labels: np.ndarray, boundary: np.ndarray, own: tuple[int, ...] | None = None
) -> Contacts:
    """Face contacts between different non-zero labels and their boundary probability (the
    mean of the two voxels), summed per label pair.

    ``own`` counts only the contacts whose first voxel lies in ``labels[:own]`` (a block read
    with one extra plane on its high faces), so that adjacent blocks count each contact once.
    """
    labels = np.asarray(labels, dtype=np.int64)
    boundary = np.asarray(boundary, dtype=np.float64)
    own = labels.shape if own is None else own
    keys, sums = [], []
    for axis in range(labels.ndim):
        pairs = min(own[axis], labels.shape[axis] - 1)
        if pairs <= 0:
            continue
        low = tuple(slice(0, pairs) if a == axis else slice(0, own[a]) for a in range(labels.ndim))
        high = tuple(
            slice(1, pairs + 1) if a == axis else slice(0, own[a]) for a in range(labels.ndim)
        )
        a, b = labels[low].ravel(), labels[high].ravel()
        touching = (a != b) & (a > 0) & (b > 0)
        a, b = a[touching], b[touching]
        keys.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
        sums.append(0.5 * (boundary[low].ravel()[touching] + boundary[high].ravel()[touching]))
    if not keys:
        return no_contacts()
    return sum_contacts(np.concatenate(keys), np.concatenate(sums), None)


def sum_contacts(pairs: np.ndarray, sums: np.ndarray, counts: np.ndarray | None) -> Contacts:
    """Add up the rows of equal label pairs (counts None: each row is one contact)."""
    if counts is None:
        counts = np.ones(len(pairs), np.int64)
    if len(pairs) == 0:
        return no_contacts()
    pairs = pairs.astype(np.int64)
    width = int(pairs[:, 1].max()) + 1  # one integer per pair: 1-D unique is much faster
    keys, inverse = np.unique(pairs[:, 0] * width + pairs[:, 1], return_inverse=True)
    inverse = inverse.ravel()
    return (
        np.stack([keys // width, keys % width], axis=1),
        np.bincount(inverse, weights=sums, minlength=len(keys)),
        np.bincount(inverse, weights=counts, minlength=len(keys)).astype(np.int64),
    )


def merge_contacts(parts: list[Contacts]) -> Contacts:
    """The statistics of a volume from those of its blocks."""
    if not parts:
        return no_contacts()
    return sum_contacts(
        np.concatenate([p[0] for p in parts]).reshape(-1, 2),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def average_agglomeration(contacts: Contacts, n_labels: int, threshold: float) -> np.ndarray:
    """A lookup table (size ``n_labels + 1``) that maps every label to the smallest label of
    its merged group: the pair with the lowest mean boundary probability is merged while that
    mean is below ``threshold``; a merged group's contacts with a neighbour are summed."""
    parent = np.arange(n_labels + 1)
    neighbours: dict[int, dict[int, list[float]]] = {}
    heap: list[tuple[float, int, int]] = []
    for (a, b), total, count in zip(contacts[0].tolist(), contacts[1], contacts[2]):
        stats = [float(total), float(count)]
        neighbours.setdefault(a, {})[b] = stats
        neighbours.setdefault(b, {})[a] = stats
        heap.append((stats[0] / stats[1], a, b))
    heapq.heapify(heap)
    while heap and heap[0][0] < threshold:
        mean, a, b = heapq.heappop(heap)
        stats = neighbours.get(a, {}).get(b)
        if stats is None or stats[0] / stats[1] != mean:
            continue  # a stale entry: a or b was merged since, or the contact grew
        keep, gone = min(a, b), max(a, b)
        parent[gone] = keep
        moved = neighbours.pop(gone)
        del moved[keep], neighbours[keep][gone]
        for other, other_stats in moved.items():
            del neighbours[other][gone]
            joined = neighbours[keep].get(other)
            if joined is None:
                joined = other_stats
            else:
                joined[0] += other_stats[0]
                joined[1] += other_stats[1]
            neighbours[keep][other] = neighbours[other][keep] = joined
            heapq.heappush(heap, (joined[0] / joined[1], keep, other))
    # follow each label to its group's root (a group's root is its smallest label)
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand
