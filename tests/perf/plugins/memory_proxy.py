"""A peak-memory proxy for ``clbench run --plugin``: ``MEM_TASKS`` tasks (default 3) of 48 random
CIFAR-shaped images on the CIFAR VGG16-BN at width 1, so that whole-model copies (snapshots,
kept prune stages, records) dominate the memory. Used in docs/speed.md ("Peak memory")."""
import os

import numpy as np

import clbench
from clbench.benchmark import Benchmark, TaskData
from clbench.datasets.tensors import TensorTaskDataset

TASKS = int(os.environ.get("MEM_TASKS", "3"))


def split(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    return TensorTaskDataset(x, (np.arange(n) % 2).astype(np.int64))


class BigVGG(Benchmark):
    name = "bigvgg"
    recipes = {"default": {"*": {"epochs": 1, "batch_size": 16, "lr_milestones": ()}}}

    def load_tasks(self):
        return [
            TaskData(
                name=f"t{i}",
                class_names=["a", "b"],
                train=split(48, i),
                valid=split(16, 100 + i),
                test=split(16, 200 + i),
            )
            for i in range(1, TASKS + 1)
        ]

    def backbone(self, width=1.0):
        from clbench.nn.backbones import vgg16_bn_cifar

        return vgg16_bn_cifar(width)


@clbench.hookimpl
def clbench_register_benchmarks(register):
    register(BigVGG)
