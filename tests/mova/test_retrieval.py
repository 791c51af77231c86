import pytest
import torch

from vtalign.mova import format_table, ground_truth_ranks, rank_metrics, retrieval_metrics

S = torch.tensor([[0.9, 0.1, 0.5],
                  [0.8, 0.2, 0.3],
                  [0.1, 0.1, 0.1]])


def test_ranks_by_hand_ties_count_against():
    # row 1: 0.8 and 0.3 beat 0.2 -> rank 3; row 2: all tied -> rank 3
    assert ground_truth_ranks(S).tolist() == [1, 3, 3]
    # columns: col 1 = (0.1, 0.2, 0.1) -> rank 1; col 2 = (0.5, 0.3, 0.1) -> rank 3
    assert ground_truth_ranks(S.T).tolist() == [1, 1, 3]


def test_retrieval_metrics_by_hand():
    m = retrieval_metrics(S)
    assert m["t2v"]["R@1"] == pytest.approx(100 / 3)
    assert m["t2v"]["R@5"] == pytest.approx(100.0)
    assert m["t2v"]["MedR"] == 3.0
    assert m["t2v"]["MeanR"] == pytest.approx(7 / 3)
    assert m["v2t"]["R@1"] == pytest.approx(200 / 3)
    assert m["v2t"]["MedR"] == 1.0
    assert m["v2t"]["MeanR"] == pytest.approx(5 / 3)


def test_rank_metrics_even_median_and_recall_cutoffs():
    m = rank_metrics(torch.tensor([1, 2, 6, 11]))
    assert m["MedR"] == 4.0  # mean of the two middle ranks
    assert m["R@1"] == 25.0 and m["R@5"] == 50.0 and m["R@10"] == 75.0
    assert m["MeanR"] == 5.0


def test_identity_scores_are_perfect_and_constant_scores_worst():
    n = 12
    perfect = retrieval_metrics(torch.eye(n))
    assert perfect["t2v"]["R@1"] == 100.0 and perfect["v2t"]["MeanR"] == 1.0
    flat = retrieval_metrics(torch.zeros(n, n))
    assert flat["t2v"]["R@1"] == 0.0 and flat["t2v"]["MedR"] == n


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="scores"):
        retrieval_metrics(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="finite"):
        retrieval_metrics(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


def test_format_table_rows():
    t = format_table({"A": retrieval_metrics(S)})
    assert "| A | t2v | 33.3 | 100.0 | 100.0 | 3.0 | 2.3 |" in t
