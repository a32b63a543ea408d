"""MC-Dropout inference over a pool: alrun's `mc_probs` vs BaaL's `ModelWrapper.predict_on_dataset`.

Same nn.Module (BaaL gets a deep copy with its dropout layers patched, as BaaL users do), same
pool, same batch size (items per batch), same T = 20, both returning probabilities [N, C, T].
BaaL replicates each batch T times in memory (`replicate_in_memory=True`, its fast path) and
runs the whole network on it; alrun runs the layers before the first dropout once per item.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from alrun.config.schema import ModelSpec
from alrun.model.builders import build_model
from alrun.model.inference import mc_probs
from benchmarks.common import interleaved_best, require_baal, row

T = 20


def _case(name: str, spec: ModelSpec, input_shape: tuple[int, ...], n_pool: int, batch: int, repeats: int) -> dict:
    require_baal()
    from baal.bayesian.dropout import patch_module
    from baal.modelwrapper import ModelWrapper, TrainingArgs

    model = build_model(spec, input_shape, 10, seed=0)
    x = torch.randn(n_pool, *input_shape, generator=torch.Generator().manual_seed(0))
    # workers=0: with in-memory tensors, DataLoader worker processes only add start-up time on 2 cores
    wrapper = ModelWrapper(patch_module(copy.deepcopy(model), inplace=False),
                           TrainingArgs(criterion=nn.CrossEntropyLoss(), batch_size=batch, use_cuda=False, workers=0))
    pool = torch.utils.data.TensorDataset(x, torch.zeros(n_pool, dtype=torch.long))

    def alrun_run(consistent: bool = False) -> torch.Tensor:
        return mc_probs(model, x, T, batch_size=batch, generator=torch.Generator().manual_seed(1),
                        consistent=consistent)

    out = alrun_run()
    ref = wrapper.predict_on_dataset(pool, iterations=T, verbose=False)
    if tuple(out.shape) != tuple(ref.shape):
        raise AssertionError(f"{name}: alrun gives {tuple(out.shape)}, BaaL {tuple(ref.shape)}")
    best = interleaved_best(
        {
            "alrun": alrun_run,
            "alrun_consistent": lambda: alrun_run(consistent=True),
            "baal": lambda: wrapper.predict_on_dataset(pool, iterations=T, verbose=False),
        },
        repeats,
        warmup=False,  # the calls above were the warm-up
    )
    return row(
        name, best["alrun"], best["baal"],
        **{
            "alrun items/s": n_pool / best["alrun"],
            "baal items/s": n_pool / best["baal"],
            "consistent masks: alrun s": best["alrun_consistent"],
            "consistent speedup": best["baal"] / best["alrun_consistent"],
            "config": f"pool {n_pool} x {'x'.join(map(str, input_shape))}, batch {batch} items, T={T}, "
                      f"best of {repeats}",
        },
    )


def run(quick: bool) -> list[dict]:
    """Gal et al.'s MNIST CNN (28x28x1) and torchvision VGG-16 (32x32x3), 10 classes."""
    return [
        _case("mc_inference_gal_cnn", ModelSpec(name="gal_cnn", hidden=128, dropout=0.5), (1, 28, 28),
              n_pool=1000 if quick else 5000, batch=128, repeats=2 if quick else 3),
        _case("mc_inference_vgg16", ModelSpec(name="vgg16", pretrained=False, hidden=4096), (3, 32, 32),
              n_pool=64 if quick else 256, batch=32, repeats=2 if quick else 3),
    ]
