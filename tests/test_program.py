"""The data-only program format: exported models round-trip, hostile payloads are refused."""

import copy
import io
from typing import Any

import pytest
import torch
from torch import nn

from dgmlab.checks.program import (
    _FIELDS,
    ALLOWED_OPS,
    FORBIDDEN_OPS,
    FORMAT,
    Program,
    ProgramError,
    export_program,
    load_program,
)


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)


class Encoder(nn.Module):
    """A VAE encoder returning (mu, log_var) through chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.net(x).chunk(2, dim=1)
        return mu, log_var


class Fixed(nn.Module):
    """A model that hard-codes its batch size, so only a static export works."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(4, -1).sum(1) + torch.zeros(x.shape[0], device=x.device)


def conv_autoencoder() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(4 * 14 * 14, 8),
        nn.Linear(8, 4 * 14 * 14),
        nn.Unflatten(1, (4, 14, 14)),
        nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1),
        nn.Sigmoid(),
    )
    with torch.no_grad():  # non-trivial running statistics, so eval-mode BatchNorm matters
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    return model.eval()


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 20), nn.Sigmoid())


@pytest.fixture(scope="module")
def mlp_payload(mlp: nn.Module) -> dict:
    return export_program(mlp, (torch.randn(4, 20),))


@pytest.fixture(scope="module")
def conv() -> tuple[nn.Module, dict]:
    model = conv_autoencoder()
    return model, export_program(model, (torch.rand(3, 1, 28, 28),))


def plain_only(value: Any) -> bool:
    """Whether a payload holds only containers, scalars and plain tensors."""
    if isinstance(value, dict):
        return all(type(k) is str and plain_only(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(map(plain_only, value))
    return type(value) in (type(None), bool, int, float, str, torch.Tensor)


def test_an_mlp_round_trips(mlp: nn.Module, mlp_payload: dict) -> None:
    program = load_program(mlp_payload)
    x = torch.randn(4, 20)
    torch.testing.assert_close(program(x), mlp(x))
    assert program.num_parameters == sum(p.numel() for p in mlp.parameters())
    assert program.parameter_shapes == {n: tuple(p.shape) for n, p in mlp.named_parameters()}
    assert mlp_payload["format"] == FORMAT and plain_only(mlp_payload)


def test_a_conv_autoencoder_round_trips_on_another_batch_size(conv: tuple) -> None:
    model, payload = conv
    ops = {node["op"] for node in payload["nodes"]}
    assert {"aten.convolution.default", "aten._native_batch_norm_legit_no_training.default"} <= ops
    assert payload["batch"] == "dynamic" and payload["inputs"][0]["dynamic_dims"] == [0]
    x = torch.rand(7, 1, 28, 28)
    out = load_program(payload)(x)
    assert out.shape == (7, 1, 28, 28)
    torch.testing.assert_close(out, model(x))


def test_a_tuple_output_round_trips() -> None:
    torch.manual_seed(0)
    encoder = Encoder()
    program = load_program(export_program(encoder, (torch.randn(5, 12),)))
    x = torch.randn(9, 12)
    out = program(x)
    assert isinstance(out, tuple) and len(out) == 2
    for got, want in zip(out, encoder(x), strict=True):
        torch.testing.assert_close(got, want)


class SlicingEncoder(nn.Module):
    """Heads as slices of one layer: x[:, a:] exports an open end of 2**63 - 1."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(12, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(x)
        return out[:, :4], out[:, 4:]


def test_open_ended_slices_round_trip() -> None:
    torch.manual_seed(0)
    encoder = SlicingEncoder()
    program = load_program(export_program(encoder, (torch.randn(5, 12),)))
    x = torch.randn(9, 12)
    for got, want in zip(program(x), encoder(x), strict=True):
        torch.testing.assert_close(got, want)


def test_a_bound_method_exports_its_modules_parameters() -> None:
    torch.manual_seed(0)
    encoder = Encoder()
    program = load_program(export_program(encoder.net.forward, (torch.randn(5, 12),)))
    assert program.parameter_shapes == {
        n: tuple(p.shape) for n, p in encoder.net.named_parameters()
    }


def test_a_sampler_draws_fresh_noise_with_the_right_moments() -> None:
    example = (torch.zeros(8, 2), torch.zeros(8, 2))
    program = load_program(export_program(reparameterize, example))
    mu = torch.tensor([1.5, -2.0]).repeat(20_000, 1)
    log_var = torch.tensor([1.2, -1.5]).repeat(20_000, 1)
    z1, z2 = program(mu, log_var), program(mu, log_var)
    assert not torch.equal(z1, z2)
    se = torch.exp(0.5 * log_var[0]) / 20_000**0.5
    assert ((z1.mean(0) - mu[0]).abs() < 5 * se).all()
    torch.testing.assert_close(z1.var(0), log_var[0].exp(), rtol=0.05, atol=0)
    torch.manual_seed(3)
    want = reparameterize(mu[:4], log_var[:4])
    torch.manual_seed(3)
    torch.testing.assert_close(program(mu[:4], log_var[:4]), want)  # same generator, same draws


def test_a_fixed_batch_model_falls_back_to_a_static_export() -> None:
    payload = export_program(Fixed(), (torch.randn(4, 3),))
    assert payload["batch"] == "static" and payload["inputs"][0]["dynamic_dims"] == []
    program = load_program(payload)
    torch.testing.assert_close(program(torch.ones(4, 3)), torch.full((4,), 3.0))
    with pytest.raises(ProgramError, match="shape"):
        program(torch.ones(5, 3))


def test_a_train_mode_model_keeps_dropout_and_batch_statistics_but_no_state() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 64), nn.BatchNorm1d(64), nn.Dropout(0.5)).train()
    program = load_program(export_program(model, (torch.randn(8, 6),)))
    before = program.tensors["1.running_mean"].clone()
    x = torch.randn(16, 6)
    y1, y2 = program(x), program(x)
    assert not torch.equal(y1, y2)  # fresh dropout masks
    assert 0.3 < (y1 == 0).float().mean() < 0.7
    torch.manual_seed(5)
    want = model(x)
    torch.manual_seed(5)
    torch.testing.assert_close(program(x), want)  # batch statistics, the same mask
    assert torch.equal(program.tensors["1.running_mean"], before)


def test_gradients_through_the_program_match_the_originals(conv: tuple) -> None:
    model, payload = conv
    program = load_program(payload).requires_grad_()
    x1 = torch.rand(2, 1, 28, 28, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    model.zero_grad()
    model(x1).square().sum().backward()
    program(x2).square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    for name, p in model.named_parameters():
        torch.testing.assert_close(program.named_parameters()[name].grad, p.grad)
    with torch.no_grad():
        assert not program(x2).requires_grad


def test_a_payload_round_trips_through_torch_save_with_weights_only(conv: tuple) -> None:
    model, payload = conv
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    program = load_program(torch.load(buffer, weights_only=True))
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(program(x), model(x))


def test_devices_in_the_graph_become_the_programs_device() -> None:
    payload = export_program(Fixed(), (torch.randn(4, 3),))
    assert any("device" in node["kwargs"] for node in payload["nodes"])
    program = load_program(payload, device="meta")  # a device with no data stands in for CUDA
    assert program(torch.ones(4, 3)).device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_program_runs_on_cuda(conv: tuple) -> None:
    model, payload = conv
    x = torch.rand(5, 1, 28, 28)
    out = load_program(payload).to("cuda")(x.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), model(x), atol=1e-4, rtol=1e-4)


def test_wrong_inputs_are_refused(mlp_payload: dict) -> None:
    program = load_program(mlp_payload)
    for bad in [(torch.randn(4, 21),), (torch.randn(4, 20).double(),), (), ([1.0] * 20,)]:
        with pytest.raises(ProgramError):
            program(*bad)


def test_the_allowlist_holds_only_functional_aten_ops() -> None:
    assert len(ALLOWED_OPS) > 100
    for name, op in ALLOWED_OPS.items():
        assert name.startswith("aten.") and op.namespace == "aten" and not op._schema.is_mutable
    forbidden = {"aten.from_file.default", "aten._print.default", "aten.as_strided.default"}
    assert forbidden <= FORBIDDEN_OPS and not FORBIDDEN_OPS & set(ALLOWED_OPS)


# Hostile payloads: each is a real payload with one thing changed.


def edited(payload: dict) -> dict:
    return copy.deepcopy(payload)


def refused(payload: Any, match: str, **kwargs: Any) -> None:
    with pytest.raises(ProgramError, match=match):
        load_program(payload, **kwargs)


@pytest.mark.parametrize(
    "op",
    ["aten.from_file.default", "aten._print.default", "builtins.eval", "os.system",
     "aten.add_.Tensor", "torch.ops.aten.relu.default", "operator.call", 7],
)  # fmt: skip
def test_an_op_outside_the_allowlist_is_refused(mlp_payload: dict, op: Any) -> None:
    payload = edited(mlp_payload)
    payload["nodes"][0]["op"] = op
    refused(payload, "not allowed")


@pytest.mark.parametrize(
    "ref", [{"ref": 1}, {"ref": 5}, {"ref": -1}, {"input": 1}, {"tensor": "x"}]
)
def test_a_forward_or_dangling_reference_is_refused(mlp_payload: dict, ref: dict) -> None:
    payload = edited(mlp_payload)
    node = payload["nodes"][1]
    assert node["op"] == "aten.addmm.default"
    node["args"][2] = ref
    refused(payload, "earlier node|declared input|stored tensor")


def test_a_tensor_subclass_is_refused_but_a_parameter_is_accepted(mlp_payload: dict) -> None:
    class Sneaky(torch.Tensor):
        pass

    payload = edited(mlp_payload)
    payload["tensors"]["0.weight"] = payload["tensors"]["0.weight"].as_subclass(Sneaky)
    refused(payload, "subclass")
    payload["tensors"]["0.weight"] = nn.Parameter(mlp_payload["tensors"]["0.weight"].clone())
    assert isinstance(load_program(payload), Program)


@pytest.mark.parametrize(
    "value",
    [object(), print, b"bytes", 1j, (1, 2), torch.ones(2), {"ref": 0, "extra": 1},
     {"eval": "1"}, {"dtype": "object"}, {"device": "cuda; rm -rf"}, {"layout": "sparse_coo"}],
)  # fmt: skip
def test_a_value_that_is_not_plain_data_is_refused(mlp_payload: dict, value: Any) -> None:
    payload = edited(mlp_payload)
    payload["nodes"][2]["args"].append(value)
    refused(payload, "not allowed")


def test_a_string_is_refused_where_the_schema_takes_none(mlp_payload: dict) -> None:
    payload = edited(mlp_payload)
    payload["nodes"].append({"op": "aten.full.default", "args": [[2], 0.0], "kwargs": {}})
    assert isinstance(load_program(payload), Program)
    payload["nodes"][-1]["kwargs"]["device"] = "cuda"
    refused(payload, "does not take a string")
    payload["nodes"][-1]["kwargs"]["device"] = {"device": "cuda"}
    assert isinstance(load_program(payload), Program)


@pytest.mark.parametrize("field", _FIELDS)
def test_a_missing_field_is_refused(mlp_payload: dict, field: str) -> None:
    payload = edited(mlp_payload)
    del payload[field]
    refused(payload, f"missing field '{field}'")


def test_a_malformed_payload_is_refused(mlp_payload: dict) -> None:
    refused([], "must be a dict")
    payload = edited(mlp_payload)
    payload["format"] = "dgm-program/0"
    refused(payload, "format")
    payload = edited(mlp_payload)
    payload["extra"] = 1
    refused(payload, "unknown field")
    payload = edited(mlp_payload)
    del payload["nodes"][0]["kwargs"]
    refused(payload, "missing field 'kwargs'")


def test_oversized_tensors_are_refused(mlp_payload: dict) -> None:
    refused(mlp_payload, "exceed 100 elements", max_elements=100)
    payload = edited(mlp_payload)
    payload["inputs"][0]["shape"] = [10**6, 10**6]
    refused(payload, "declares")
    payload = edited(mlp_payload)
    huge = {"op": "aten.full.default", "args": [[10**5, 10**5, 10**5], 0.0], "kwargs": {}}
    payload["nodes"].append(huge)
    refused(payload, "elements, over")  # caught on meta tensors, before anything is allocated


def test_a_batch_norm_with_short_per_channel_tensors_is_refused(conv: tuple) -> None:
    payload = edited(conv[1])
    # The kernel would read past a 1-element running_var into other memory.
    payload["tensors"]["1.running_var"] = torch.ones(1)
    refused(payload, "running_var should have shape")


def test_runaway_size_arithmetic_is_refused(mlp_payload: dict) -> None:
    payload = edited(mlp_payload)
    nodes = payload["nodes"]
    nodes.append({"op": "aten.sym_size.int", "args": [{"input": 0}, 0], "kwargs": {}})
    for _ in range(8):
        k = len(nodes) - 1
        nodes.append({"op": "operator.mul", "args": [{"ref": k}, {"ref": k}], "kwargs": {}})
    refused(payload, "overflowed")


def positions(value: Any, path: tuple = ()) -> list[tuple]:
    """The path to every dict value and list item in a payload."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    return [path + (k,) for k, _ in items] + [
        p for k, v in items for p in positions(v, path + (k,))
    ]


def test_any_single_corruption_either_loads_or_raises_program_error(mlp_payload: dict) -> None:
    weird = [None, -1, 10**30, float("nan"), "x", [], [[[]]], {}, {"ref": 0}, {1: 2}, (1,),
             torch.ones(3), b"x", object()]  # fmt: skip
    for path in positions(mlp_payload):
        for value in weird:
            payload = edited(mlp_payload)
            parent = payload
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
            try:
                load_program(payload)(torch.randn(3, 20))
            except ProgramError:
                pass
