"""Feature I/O: round trips in every format, layer-by-layer streaming through the
probe, clear errors for bad files, no unpickling of untrusted data, atomic writes."""
import os
import pickle

import numpy as np
import pytest
import torch

from vtalign.probe.alignment import layerwise_alignment, layerwise_alignments
from vtalign.probe.features import FeatureFile, load_features, open_features, save_features

FORMATS = [".pt", ".npy", ".npz", ".safetensors"]


@pytest.fixture
def feats(gen):
    return torch.randn(40, 3, 6, generator=gen)


@pytest.mark.parametrize("ext", FORMATS)
def test_round_trip_stacked_single_and_list(ext, feats, tmp_path, gen):
    p = tmp_path / f"f{ext}"
    save_features(p, feats)
    got = load_features(p)
    assert isinstance(got, torch.Tensor) and torch.equal(got, feats)
    with open_features(p) as ff:
        assert (ff.n, ff.dims, ff.stacked, len(ff)) == (40, [6, 6, 6], True, 3)
        for i in range(3):
            assert torch.equal(ff.layer(i), feats[:, i]) and ff.layer(i).is_contiguous()
        assert torch.equal(ff[-1], feats[:, 2])
    one = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    save_features(tmp_path / f"one{ext}", one)
    assert torch.equal(load_features(tmp_path / f"one{ext}"), one)
    if ext != ".npy":
        layers = [torch.randn(40, w, generator=gen) for w in (3, 7)]
        save_features(tmp_path / f"list{ext}", layers)
        back = load_features(tmp_path / f"list{ext}")
        assert isinstance(back, list) and all(torch.equal(a, b) for a, b in zip(back, layers))
        assert open_features(tmp_path / f"list{ext}").dims == [3, 7]


def test_platonic_rep_pt_layout(feats, tmp_path):
    """platonic-rep saves {"feats": [N, L, D], ...other entries} with torch.save."""
    p = tmp_path / "model.pt"
    torch.save({"feats": feats.half(), "num_params": 123, "name": "x"}, p)
    got = load_features(p)
    assert got.dtype == torch.float16 and torch.equal(got, feats.half())
    p2 = tmp_path / "legacy.pt"
    torch.save({"feats": feats}, p2, _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    assert torch.equal(load_features(p2), feats)


@pytest.mark.parametrize("ext", FORMATS)
def test_streamed_file_scores_equal_in_memory(ext, feats, tmp_path, gen):
    other = [torch.randn(40, 4, generator=gen), feats[:, 1] + 0.1 * torch.randn(40, 6, generator=gen)]
    p = tmp_path / f"f{ext}"
    save_features(p, feats)
    metrics = ["mutual_knn", "lcs_knn", "cka", "unbiased_cka", "cknna"]
    want = layerwise_alignments(feats, other, metrics, k=4, concat=True)
    got = layerwise_alignments(open_features(p), other, metrics, k=4, concat=True)
    for m in metrics:
        torch.testing.assert_close(got[m].scores, want[m].scores, rtol=0, atol=1e-12)


@pytest.mark.parametrize("outliers", ["exact", "approximate"])
def test_streamed_outlier_clamp_follows_the_stored_layout(outliers, feats, tmp_path, gen, monkeypatch):
    import vtalign.probe.outliers as O
    monkeypatch.setattr(O, "_CHUNK_ELEMS", 100)  # stream the rows in many small blocks
    """A stacked file shares one threshold across layers, a per-layer file gets one each."""
    other = torch.randn(40, 2, 5, generator=gen)
    big = feats.clone()
    big[:, 2] *= 10
    save_features(tmp_path / "s.safetensors", big)
    save_features(tmp_path / "l.npz", list(big.unbind(1)))
    for path, mem in ((tmp_path / "s.safetensors", big), (tmp_path / "l.npz", list(big.unbind(1)))):
        kw = dict(metrics=["mutual_knn", "cka"], k=4, outliers=outliers, concat=True)
        want = layerwise_alignments(mem, other, **kw)
        got = layerwise_alignments(open_features(path), other, **kw)
        for m in kw["metrics"]:
            torch.testing.assert_close(got[m].scores, want[m].scores, rtol=0, atol=1e-12)


def test_streaming_reads_one_layer_at_a_time(feats, tmp_path):
    p = tmp_path / "f.npy"
    save_features(p, feats)
    ff = open_features(p)
    assert isinstance(np.load(p, mmap_mode="r"), np.memmap)
    reads = []
    orig = FeatureFile.layer

    def spy(self, i):
        reads.append(i)
        return orig(self, i)

    FeatureFile.layer = spy
    try:
        res = layerwise_alignments(ff, ff, metrics=["mutual_knn", "cka"], k=3)
    finally:
        FeatureFile.layer = orig
    assert torch.equal(res["mutual_knn"].scores, layerwise_alignment(feats, feats, k=3).scores)
    assert set(reads) == {0, 1, 2}  # every access is to a single layer


def test_errors_name_the_file_and_problem(feats, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt: the file is empty"):
        load_features(empty)
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="suffix must be one of"):
        load_features(tmp_path / "f.h5")
    torch.save({"features": feats}, tmp_path / "k.pt")
    with pytest.raises(ValueError, match=r"no 'feats'.*found keys \['features'\]"):
        load_features(tmp_path / "k.pt")
    torch.save([feats], tmp_path / "notdict.pt")
    with pytest.raises(ValueError, match="expected a dict"):
        load_features(tmp_path / "notdict.pt")
    torch.save({"feats": [feats[:, 0], feats[:30, 1]]}, tmp_path / "n.pt")
    with pytest.raises(ValueError, match="different sample counts"):
        load_features(tmp_path / "n.pt")
    torch.save({"feats": torch.ones(4, 2, 3, dtype=torch.int64)}, tmp_path / "int.pt")
    with pytest.raises(TypeError, match="floating-point"):
        load_features(tmp_path / "int.pt")
    np.savez(tmp_path / "gap.npz", **{"feats.0": np.ones((4, 2)), "feats.2": np.ones((4, 2))})
    with pytest.raises(ValueError, match="consecutive"):
        load_features(tmp_path / "gap.npz")
    bad = feats.clone()
    bad[3, 2, 1] = float("nan")
    save_features(tmp_path / "nan.safetensors", bad)
    with pytest.raises(ValueError, match="nan.safetensors layer 2 contains NaN"):
        layerwise_alignment(open_features(tmp_path / "nan.safetensors"), feats, k=3)


@pytest.mark.parametrize("ext", FORMATS)
def test_truncated_files(ext, feats, tmp_path):
    p = tmp_path / f"f{ext}"
    save_features(p, feats)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_features(p)


class _Payload:
    """Unpickling this runs os.mkdir(marker): a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_is_not_executed(how, tmp_path):
    marker = str(tmp_path / "pwned")
    p = tmp_path / "evil.pt"
    obj = {"feats": _Payload(marker)}
    if how == "torch.save":
        torch.save(obj, p)
    else:
        with open(p, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(ValueError, match="refused to load"):
        load_features(p)
    assert not os.path.exists(marker)
    # the payload is live: an unrestricted load does run it
    if how == "torch.save":
        torch.load(p, weights_only=False)
    else:
        with open(p, "rb") as f:
            pickle.load(f)
    assert os.path.isdir(marker)


def test_npy_with_objects_is_refused(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_features(p)


def test_atomic_write_leaves_old_file_on_failure(feats, tmp_path):
    p = tmp_path / "f.safetensors"
    save_features(p, feats)
    before = p.read_bytes()
    with pytest.raises(ValueError, match="different sample counts"):
        save_features(p, [feats[:, 0], feats[:10, 1]])
    with pytest.raises(ValueError, match="one array"):
        save_features(tmp_path / "x.npy", [feats[:, 0]])

    class Boom(Exception):
        pass

    import safetensors.torch as st
    orig = st.save

    def fail(*a, **k):
        raise Boom()

    st.save = fail
    try:
        with pytest.raises(Boom):
            save_features(p, feats * 2)
    finally:
        st.save = orig
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["f.safetensors"]  # no temporary left behind


@pytest.mark.parametrize("ext", [".pt", ".npy", ".npz"])
def test_a_closed_file_drops_its_arrays(ext, tmp_path, gen):
    """close() releases the (memory-mapped) arrays, so a sweep over many files holds one at a
    time; reading a closed file is a clear error, not a read of a stale mapping."""
    path = str(tmp_path / f"f{ext}")
    x = torch.randn(12, 3, 5, generator=gen)
    save_features(path, x)
    ff = open_features(path)
    assert torch.equal(ff.layer(1), x[:, 1])
    ff.close()
    assert ff._sources is None
    with pytest.raises(ValueError, match="is closed"):
        ff.layer(0)
    ff.close()  # twice is fine
