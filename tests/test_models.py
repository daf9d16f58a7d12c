import pytest
import torch

from models import build_model, list_models, load_model
from models.mixdehazenet import convert_official_state_dict
from utils.checkpoint import save_checkpoint

# SPEC section 2 (measured on the official code)
PARAMETERS = {"mixdehazenet-t": 1_622_950, "mixdehazenet-s": 3_164_944,
              "mixdehazenet-b": 6_248_932, "mixdehazenet-l": 12_416_908}


def test_variants_are_registered():
    assert set(PARAMETERS) <= set(list_models())


@pytest.mark.parametrize("name", PARAMETERS)
def test_parameter_counts_match_official(name):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 3) == {"t": 1.623, "s": 3.165, "b": 6.249, "l": 12.417}[name[-1]]


def test_official_checkpoint_reproduces_reference_output(vectors_dir):
    path = vectors_dir / "mixdehazenet_t_official.pt"
    vector = torch.load(path, weights_only=True)
    model = build_model("mixdehazenet-t", checkpoint=path).eval()
    with torch.no_grad():
        output = model(vector["input"])
    assert output.shape == vector["input"].shape == (2, 3, 61, 83)
    assert (output - vector["output"]).abs().max().item() <= 1e-5


def test_official_names_map_one_to_one(vectors_dir):
    state_dict = torch.load(vectors_dir / "mixdehazenet_t_official.pt", weights_only=True)["state_dict"]
    converted = convert_official_state_dict(state_dict)
    assert len(converted) == len(state_dict)
    assert set(converted) == set(build_model("mixdehazenet-t").state_dict())


def test_unknown_official_key_is_reported():
    with pytest.raises(KeyError, match="conv9"):
        convert_official_state_dict({"module.patch_embed.proj.weight": torch.zeros(1),
                                     "module.layer1.blocks.0.conv9.weight": torch.zeros(1)})


@pytest.mark.parametrize("size", [(1, 1), (17, 30), (33, 8), (41, 83)])
def test_any_input_size_keeps_its_shape(size):
    model = build_model("mixdehazenet-t").eval()
    x = torch.rand(1, 3, *size) * 2 - 1
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_project_checkpoint_round_trip(tmp_path):
    model = build_model("mixdehazenet-t").eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model_name": "mixdehazenet-t", "model": model.state_dict()})
    x = torch.rand(1, 3, 24, 20) * 2 - 1
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(build_model("mixdehazenet-t", checkpoint=path).eval()(x), expected)
        loaded = load_model(path)
        assert not loaded.training and loaded.model_name == "mixdehazenet-t"
        assert torch.equal(loaded(x), expected)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model_name": "mixdehazenet-t", "model": build_model("mixdehazenet-t").state_dict()})
    with pytest.raises(ValueError, match="holds a 'mixdehazenet-t' model, not 'mixdehazenet-s'"):
        build_model("mixdehazenet-s", checkpoint=path)


def test_unknown_model_and_missing_checkpoint_are_clear(tmp_path):
    with pytest.raises(KeyError, match="unknown model 'mixdehazenet-x'"):
        build_model("mixdehazenet-x")
    with pytest.raises(FileNotFoundError, match="nothing.pt does not exist"):
        build_model("mixdehazenet-t", checkpoint=tmp_path / "nothing.pt")
