"""Our numpy silhouette label / BRAS / isolated labels equal scib-metrics' JAX functions."""

from __future__ import annotations

import numpy as np
import pytest

from scprior.tasks.integration.silhouette import (
    isolated_label_names,
    silhouette_samples,
    subsample_scores,
)


def _random_set(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 260
    labels = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    batch = rng.choice(["b0", "b1", "b2"], n).astype(object)
    batch[labels == "d"] = "b2"  # an isolated label: one batch only
    labels[:3], batch[:3] = "e", ["b0", "b1", "b2"]  # a label with as many batches as cells (BRAS skips it)
    labels[3], batch[3] = "f", "b0"  # a singleton label (silhouette 0)
    centres = rng.normal(scale=2.0, size=(6, 8))
    codes = np.searchsorted(np.array(list("abcdef")), labels.astype(str))
    x = centres[codes] + rng.normal(size=(n, 8)) + 0.5 * (batch == "b1")[:, None]
    return x.astype(np.float32), labels.astype(str), batch.astype(str)


@pytest.mark.parametrize("seed", [0, 1])
def test_subsample_scores_equal_scib_metrics(seed):
    import scib_metrics

    x, labels, batch = _random_set(seed)
    ours = subsample_scores(x, labels, batch, chunk=100)  # several chunks, the last one partial
    theirs = {"silhouette_label": scib_metrics.silhouette_label(x, labels),
              "bras": scib_metrics.bras(x, labels, batch),
              "isolated_labels": scib_metrics.isolated_labels(x, labels, batch)}
    for k, v in theirs.items():
        assert abs(ours[k] - float(v)) <= 1e-4, (k, ours[k], float(v))


def test_silhouette_samples_per_cell_equal_scib_metrics_both_between_modes():
    from scib_metrics.utils import silhouette_samples as scib_samples

    x, labels, batch = _random_set(2)
    for metric, between in (("euclidean", "nearest"), ("cosine", "mean_other")):
        np.testing.assert_allclose(silhouette_samples(x, batch, metric=metric, between=between, chunk=64),
                                   np.asarray(scib_samples(x, batch, metric=metric,
                                                           between_cluster_distances=between)), atol=1e-4)
    s = silhouette_samples(x, labels)
    assert s[3] == 0.0  # the singleton
    assert s.min() >= -1 and s.max() <= 1


def test_isolated_label_names_are_the_labels_in_fewest_batches():
    labels = np.array(["a", "a", "b", "b", "c"])
    batch = np.array(["x", "y", "x", "x", "y"])
    assert sorted(isolated_label_names(labels, batch)) == ["b", "c"]


def test_kmeans_labels_equal_scib_metrics_kmeans():
    from scib_metrics.utils import KMeans
    from sklearn.metrics import adjusted_rand_score

    from scprior.tasks.integration.kmeans import kmeans_labels

    rng = np.random.default_rng(3)
    x = (rng.normal(scale=2.0, size=(7, 5))[rng.integers(0, 7, 1500)] + rng.normal(size=(1500, 5))).astype(np.float32)
    ours, cent = kmeans_labels(x, 7)
    km = KMeans(7).fit(x.copy())
    assert adjusted_rand_score(np.asarray(km.labels_), ours) == 1.0
    np.testing.assert_allclose(cent, np.asarray(km.cluster_centroids_), atol=1e-4)
