"""MixCLDehazeNet: the released network, its text-image attention and the CLIP prior (tiny random open_clip)."""
import csv
import dataclasses

import huggingface_hub
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import prior.clip
import test as test_script
import train
from datasets import attach_prior, build_test_set, build_training_sets
from models import build_model, load_model
from models.mixcl import TextImageAttention
from models.weights import MissingWeightsError
from prior import ClipPrior, clip_metadata, compute_prior_cache, ensure_prior_cache, photo_prior, prior_cache_path, text_prior
from prior.cache import clip_input
from utils.checkpoint import load_checkpoint
from utils.config import ConfigError, PriorConfig

from .conftest import LABELS_PRIOR, tiny_config, tiny_prior_config, write_checkpoint
from .test_datasets import make_pairs
from .test_images import save_with_orientation


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_weights):
    return ClipPrior.load("tiny-clip", str(tiny_clip_weights))


# --- the network ---------------------------------------------------------------------------------------------

def test_released_checkpoint_reproduces_reference_output(vectors_dir):
    path = vectors_dir / "mixcl_t_seed.pt"
    vector = torch.load(path, weights_only=True)
    model = build_model("mixcl-t", checkpoint=path).eval()
    with torch.no_grad():
        output = model(vector["input"], vector["text"])
        flat_text = model(vector["input"], vector["text"][:, 0])  # B×D works as well as B×1×D
    assert (output - vector["output"]).abs().max().item() <= 1e-5
    assert torch.equal(output, flat_text)


def test_released_dead_parameters_are_dropped_and_unknown_ones_refused(vectors_dir):
    state_dict = torch.load(vectors_dir / "mixcl_t_seed.pt", weights_only=True)["state_dict"]
    model = build_model("mixcl-t")
    converted = model.convert_checkpoint(state_dict)
    assert set(converted) == set(model.state_dict())
    assert len(state_dict) - len(converted) == 8  # k1, v1, q2, postProj_t: weight and bias each
    with pytest.raises(KeyError, match="text_emb.extra.weight"):
        model.convert_checkpoint(state_dict | {"module.text_emb.extra.weight": torch.zeros(1)})


def _materialised_attention(module, image, text):
    """The released computation, with its HW×D attention matrix."""
    b, _, h, w = image.shape
    q = module.query(image).flatten(2).transpose(1, 2)
    k = module.key(text.reshape(b, 1, -1)).transpose(1, 2)
    v = module.value(text.reshape(b, 1, -1)).transpose(1, 2)
    attention = (q @ k.transpose(1, 2) / module.dim ** 0.5).softmax(dim=-1)  # B×HW×D
    return module.out_proj((attention @ v).transpose(1, 2).reshape(b, module.dim, h, w))


@pytest.mark.parametrize("attention", ["fused", "released"])
@pytest.mark.parametrize("shape", [(2, 9, 13, 512), (1, 40, 32, 768)])
def test_attention_equals_the_materialised_computation(shape, attention):
    b, h, w, d = shape
    module = TextImageAttention(attention=attention)
    image, text = torch.rand(b, 3, h, w) * 2 - 1, torch.randn(b, d)
    with torch.no_grad():
        assert torch.allclose(module(image, text), _materialised_attention(module, image, text), atol=1e-5)


def test_fusion_variants_and_label_prior():
    x = torch.rand(2, 3, 44, 36) * 2 - 1
    concat, add = build_model("mixcl-t"), build_model("mixcl-t", fusion="add").eval()
    assert concat.backbone.stem.in_channels == 6 and add.backbone.stem.in_channels == 3
    labels = build_model("mixcl-t", num_labels=2, text_dim=16).eval()
    text = torch.randn(2, 512)
    with torch.no_grad():
        # "add": the backbone's stem takes image + attention(image, text), on the reflect-padded 44×40 image
        padded = F.pad(x, (0, 4, 0, 0), mode="reflect")
        stem_input = padded + _materialised_attention(add.fusion, padded, text)
        manual = add.backbone.apply_gain_bias(padded, add.backbone.forward_features(stem_input))[..., :44, :36]
        output = add(x, text)
        a, b = labels(x, torch.tensor([0, 1])), labels(x, torch.tensor([1, 1]))
        # the `labels` prior is a learned text feature: the same network fed the embedding rows directly
        plain = build_model("mixcl-t", text_dim=16).eval()
        plain.load_state_dict({k: v for k, v in labels.state_dict().items() if not k.startswith("label_embedding")})
        fed = plain(x, labels.label_embedding.weight[[0, 1]])
    # measured 4e-7 (AVX-512 and AVX2); leaving the fusion out changes the output by 0.21
    assert (output - manual).abs().max() <= 1e-5
    assert torch.equal(a, fed)
    assert torch.equal(a[1], b[1])  # each image gets its own label
    assert (a[0] - b[0]).abs().mean() > 1e-3  # the label changes the output: measured 9.3e-3 (AVX-512 and AVX2)
    with pytest.raises(ValueError, match="fusion must be one of"):
        build_model("mixcl-t", fusion="multiply")


# --- the CLIP prior ---------------------------------------------------------------------------------------------

def test_zero_shot_probabilities_match_open_clip(tiny_clip, reside_samples):
    images = [Image.open(p).convert("RGB") for p in sorted((reside_samples / "hazy").iterdir())[:4]]
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", pretrained=tiny_clip.metadata["pretrained"])
    tokens = open_clip.get_tokenizer("tiny-clip")(["a photo of a indoor", "a photo of a outdoor"])
    with torch.no_grad():
        image_features = F.normalize(model.encode_image(torch.stack([preprocess(i) for i in images])), dim=-1)
        text_features = F.normalize(model.encode_text(tokens), dim=-1)
    expected = (100.0 * image_features @ text_features.T).softmax(dim=-1)
    probabilities = tiny_clip.probabilities(images)
    assert probabilities.shape == (4, 2)
    assert torch.allclose(probabilities, expected, atol=1e-6)
    assert torch.allclose(tiny_clip.text_features, text_features, atol=1e-6)


def test_prior_modes():
    probabilities = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    features = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert torch.equal(text_prior(probabilities, features, "clip"), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    assert torch.allclose(text_prior(probabilities, features, "clip-soft"), torch.tensor([[0.9, 0.1, 0], [0.3, 0.7, 0]]))
    with pytest.raises(ValueError):
        text_prior(probabilities, features, "labels")


def test_single_image_prior_on_the_fly(tiny_clip, tiny_clip_weights, reside_samples, tmp_path):
    image = Image.open(sorted((reside_samples / "hazy").iterdir())[0])
    model = build_model("mixcl-t", text_dim=32, prior=tiny_prior_config(tiny_clip_weights, tmp_path))
    feature = photo_prior(model, torch.device("cpu"))("photo.png", image)
    probabilities = tiny_clip.probabilities([image.convert("RGB")])
    assert probabilities[0].max() > 0.9  # a clear class (measured 0.9935), so the arg-max is not a near tie
    assert feature.shape == (1, 32) and torch.equal(feature[0], tiny_clip.text_features[probabilities.argmax()])
    # a given class replaces CLIP's: the other class's text feature
    other = 1 - int(probabilities.argmax())
    given = photo_prior(model, torch.device("cpu"), label=["indoor", "outdoor"][other])("photo.png", image)
    assert torch.equal(given[0], tiny_clip.text_features[other])


def test_cache_round_trip_and_stale_detection(tiny_clip, tmp_path, capsys):
    root = make_pairs(tmp_path / "split", count=3)
    names = ["00.png", "01.png", "02.png"]
    metadata = tiny_clip.metadata
    calls = []

    def load():
        calls.append(1)
        return tiny_clip

    path = tmp_path / "cache.pt"
    first = ensure_prior_cache(path, root / "hazy", names, metadata, load)
    assert len(calls) == 1 and path.is_file()
    again = ensure_prior_cache(path, root / "hazy", names, metadata, load)
    assert len(calls) == 1  # fresh cache: CLIP is not loaded again
    assert torch.equal(again["probabilities"], first["probabilities"]) and again["names"] == names
    assert torch.equal(first["probabilities"], compute_prior_cache(tiny_clip, root / "hazy", names)["probabilities"])

    (root / "hazy" / "01.png").write_bytes((root / "hazy" / "00.png").read_bytes() + b"\0")  # replaced image
    ensure_prior_cache(path, root / "hazy", names, metadata, load)
    assert len(calls) == 2 and "stale (the image list changed" in capsys.readouterr().out
    ensure_prior_cache(path, root / "hazy", names, metadata | {"template": "a {c} scene"}, load)
    assert len(calls) == 3 and "stale (it was computed with" in capsys.readouterr().out

    def missing():
        raise MissingWeightsError("CLIP weights are missing")
    with pytest.raises(MissingWeightsError):  # a stale cache without CLIP weights is reported, never used
        ensure_prior_cache(path, root / "hazy", names[:2], metadata, missing)


def test_missing_weights_fail_early_with_instructions(monkeypatch, tmp_path):
    with pytest.raises(MissingWeightsError, match="nothing.bin: no such file"):
        ClipPrior.load("ViT-B-32", str(tmp_path / "nothing.bin"))

    monkeypatch.setattr(prior.clip, "server_reachable", lambda url: False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    with pytest.raises(MissingWeightsError) as error:
        ClipPrior.load("ViT-B-32", "openai")
    message = str(error.value)
    assert "ViT-B-32 / openai are not on this machine" in message
    assert "pretrained/ViT-B-32-openai.bin" in message
    assert "hf_hub_download('timm/vit_base_patch32_clip_224.openai', 'open_clip_pytorch_model.bin')" in message
    with pytest.raises(ValueError, match="neither a file nor an open_clip tag"):
        ClipPrior.load("ViT-B-32", "no-such-tag")


# --- the scripts ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["clip", "clip-soft", "labels"])
def test_training_with_each_prior_mode(mode, tiny_clip_weights, tiny_clip, tmp_path):
    config = tiny_config(tmp_path / "run", "mixcl-t", prior=tiny_prior_config(tiny_clip_weights, tmp_path, mode))
    history = train.train(config)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["model_args"] == ({"num_labels": 2} if mode == "labels" else {"text_dim": 32}) | {
        "prior": config.to_dict()["prior"] | {"text_features": None if mode == "labels" else tiny_clip.text_features.tolist()}}
    # the prior settings travel with the network's arguments, the class text features of CLIP modes included
    model = load_model(tmp_path / "run" / "last.pt")
    assert model.prior == PriorConfig(**checkpoint["model_args"]["prior"])
    # the logged validation PSNR, recomputed from last.pt image by image in float64
    (val_set,), _ = attach_prior(config.prior, [build_training_sets(config.data)[1]])
    values = []
    with torch.no_grad():
        for item in (val_set[i] for i in range(len(val_set))):
            output = model(item["hazy"][None], torch.as_tensor(item["prior"])[None])[0].clamp(-1, 1).double()
            values.append(10 * np.log10(4 / (output - item["gt"].double()).square().mean().item()))  # [-1, 1]: /2
    # measured gaps ≤ 2e-7 dB (AVX-512 and AVX2; batch of 4 there, 1 here) at 15.1–15.2 dB
    assert len(values) == 32 and abs(np.mean(values) - history[-1]["psnr"]) <= 1e-4


def test_test_py_gives_a_labels_prior_checkpoint_the_known_classes(tmp_path, capsys):
    """What `bash train.sh` does last: test.py on the demo's labels-prior MixCL checkpoint, synthetic test photos
    (their classes are known), no --label needed; the scores are the network's on those priors."""
    checkpoint = write_checkpoint(tmp_path / "mixcl-t.pt", "mixcl-t", {"num_labels": 2}, LABELS_PRIOR)
    summary = test_script.run(test_script.parse_args(["--checkpoint", str(checkpoint), "--data", "synthetic",
                                                      "--out", str(tmp_path / "test"), "--no-images"]))
    model, dataset = load_model(checkpoint), build_test_set("synthetic")
    with torch.no_grad():
        item = dataset[0]  # chelsea, an indoor photo: label 0
        output = model(item["hazy"][None], torch.tensor([0])).clamp(-1, 1) * 0.5 + 0.5
    expected = 10 * np.log10(1 / (output - (item["gt"][None] * 0.5 + 0.5)).square().mean().item())
    with open(tmp_path / "test" / "per_image.csv") as f:
        assert float(next(csv.DictReader(f))["psnr"]) == pytest.approx(expected, abs=1e-4)
    assert summary["images"] == 6 and summary["domain_source"] == "the photos' known domains"


def test_model_and_prior_must_fit(tmp_path, tiny_clip_weights):
    with pytest.raises(ConfigError, match="does not fit prior.mode 'none'"):
        train.train(tiny_config(tmp_path / "run", "mixcl-t", prior={"mode": "none"}))
    with pytest.raises(ConfigError, match="does not fit prior.mode 'clip'"):
        train.train(tiny_config(tmp_path / "b" / "run", prior=tiny_prior_config(tiny_clip_weights, tmp_path)))


def test_demo_falls_back_to_labels_when_clip_weights_are_missing(tmp_path, capsys):
    prior = {"mode": "clip", "clip_pretrained": str(tmp_path / "absent.bin"), "fallback_to_labels": True}
    train.train(tiny_config(tmp_path / "run", "mixcl-t", prior=prior))
    out = capsys.readouterr().out
    assert out.count("absent.bin: no such file") == 1 and "Continuing with the `labels` prior" in out
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["model_args"]["prior"]["mode"] == load_model(tmp_path / "run" / "last.pt").prior.mode == "labels"
    assert checkpoint["config"]["prior"]["mode"] == "clip"  # the config is kept as given, not rewritten
    with pytest.raises(MissingWeightsError):  # without the fallback, missing weights stop the run
        train.train(tiny_config(tmp_path / "strict" / "run", "mixcl-t", prior=prior | {"fallback_to_labels": False}))


@pytest.mark.parametrize("mode", ["clip", "clip-soft"])
def test_given_classes_take_their_text_features_without_running_clip_on_the_images(mode, tiny_clip_weights, tiny_clip,
                                                                                    tmp_path):
    data = make_pairs(tmp_path / "test", count=3, size=(44, 52))
    prior = PriorConfig(**tiny_prior_config(tiny_clip_weights, tmp_path, mode))
    (wrapped,), args = attach_prior(prior, [build_test_set(data)], class_of=lambda name: "outdoor")
    outdoor = tiny_clip.text_features[prior.classes.index("outdoor")]
    assert args == {"text_dim": 32, "prior": dataclasses.asdict(prior) | {"text_features": tiny_clip.text_features.tolist()}}
    assert all(torch.allclose(wrapped[i]["prior"], outdoor, atol=1e-6) and wrapped[i]["domain"] == "outdoor"
               for i in range(3))
    assert not prior_cache_path(prior, data).exists()  # no image went through CLIP


def test_paired_training_and_test_script_use_the_prior_cache(tiny_clip_weights, tmp_path):
    make_pairs(tmp_path / "data" / "train", count=6, size=(40, 40))
    data = make_pairs(tmp_path / "data" / "test", count=2, size=(44, 52))
    prior = tiny_prior_config(tiny_clip_weights, tmp_path)
    config = tiny_config(tmp_path / "run", "mixcl-t", prior=prior,
                         data={"dataset": "paired", "root": str(tmp_path / "data"), "holdout_fraction": 0.3})
    train.train(config)
    cache = prior_cache_path(PriorConfig(**prior), tmp_path / "data" / "train")
    assert cache.is_file() and torch.load(cache, weights_only=True)["names"] == [f"{i:02d}.png" for i in range(6)]
    args = test_script.parse_args(["--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(data),
                                   "--out", str(tmp_path / "results"), "--no-images"])
    summary = test_script.run(args)
    assert summary["images"] == 2
    test_cache = torch.load(prior_cache_path(PriorConfig(**prior), data), weights_only=True)
    (wrapped,), args = attach_prior(PriorConfig(**prior), [build_test_set(data)])
    assert wrapped[0]["prior"].shape == (32,) and args == {"text_dim": 32, "prior": dataclasses.asdict(PriorConfig(**prior))
                                                           | {"text_features": test_cache["text_features"].tolist()}}
    # without a domain_labels.csv the per-domain rows follow the CLIP prior's class, and say so
    classes = [PriorConfig(**prior).classes[i] for i in test_cache["probabilities"].argmax(1).tolist()]
    assert [wrapped[i]["domain"] for i in range(2)] == classes
    assert summary["domain_source"].startswith("the CLIP prior's class")
    assert {d: s["images"] for d, s in summary["by_domain"].items()} == {c: classes.count(c) for c in set(classes)}


def test_clip_reads_folders_as_the_release_does_when_asked(tmp_path, tiny_clip, capsys):
    """prior.image_reader: "opencv" turns a photo as its EXIF orientation says (as every reader here does); "pil"
    hands CLIP the stored pixels, as the released code's PIL.Image.open does. A cache records which."""
    stored = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    save_with_orientation(tmp_path / "p.png", stored, 6)  # "turn 90° clockwise to view"
    assert np.array_equal(np.asarray(clip_input(tmp_path / "p.png", "pil")), stored)
    assert np.array_equal(np.asarray(clip_input(tmp_path / "p.png", "opencv")), np.rot90(stored, -1))
    metadata = clip_metadata(PriorConfig(mode="clip"))
    assert metadata["image_reader"] == "opencv"
    cache = ensure_prior_cache(tmp_path / "cache.pt", tmp_path, ["p.png"], metadata, lambda: tiny_clip)
    assert cache["metadata"] == metadata
    ensure_prior_cache(tmp_path / "cache.pt", tmp_path, ["p.png"], metadata | {"image_reader": "pil"}, lambda: tiny_clip)
    assert "stale (it was computed with" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="prior.image_reader must be 'opencv' or 'pil'"):
        tiny_config(tmp_path / "run", "mixcl-t", prior={"mode": "clip", "image_reader": "cv2"})


def test_mixcl_adds_706_parameters_to_its_backbone():
    """docs/models.md: 58 in the fusion (query 3→5 and output 5→3 1×1 convolutions, key and value 1→5), 648 in the
    6-channel stem (3 more input channels × 24 × 3 × 3)."""
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    mixcl = build_model("mixcl-t")
    assert count(mixcl) - count(build_model("mixdehazenet-t")) == 706 and count(mixcl.fusion) == 58
