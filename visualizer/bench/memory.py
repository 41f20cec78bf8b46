"""P9: peak memory with both networks loaded and one analysis each, against a torchvision
script doing the same, each in a fresh interpreter so that neither inherits the other's heap.

On the CPU the peak is the process's resident set high-water mark (``VmHWM``: Linux's
``ru_maxrss`` would keep the parent's peak across the fork); on CUDA it is the largest amount
of device memory PyTorch had allocated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Both scripts build VGG16 and ResNet101 with random weights on the device, analyse the same
# photo once with each, keep what they computed (the five stage outputs, the logits) and print
# their peak. The reference uses torchvision's networks, preprocessing and forward hooks only.
_PEAK = """
import json, resource, sys, torch
def peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # this process's own high-water mark (ru_maxrss keeps the parent's across fork)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
"""
_FMVIZ = (
    _PEAK
    + """
import sys
from models import stage_module_names
from visualizer.core import Analyzer
device, image = sys.argv[1], sys.argv[2]
kept = []
for name in ("vgg16", "resnet101"):
    analyzer = Analyzer(name, "random", device, progress=False)
    kept.append((analyzer, analyzer.analyze(image)))
used = peak(kept[0][0].device)
stages = {a.arch: list(stage_module_names(a.model).values()) for a, _ in kept}
print(json.dumps({"peak": used, "stages": stages}))
"""
)
_TORCHVISION = (
    _PEAK
    + """
import sys
import torchvision
from PIL import Image
device, image = torch.device(sys.argv[1]), Image.open(sys.argv[2]).convert("RGB")
stage_names = json.loads(sys.argv[3])
weights = {"vgg16": "VGG16_Weights", "resnet101": "ResNet101_Weights"}
kept = []
for name in ("vgg16", "resnet101"):
    model = getattr(torchvision.models, name)(weights=None).eval().to(device)
    entry = getattr(torchvision.models, weights[name]).DEFAULT
    modules = dict(model.named_modules())
    stages = []
    for module in stage_names[name]:
        modules[module].register_forward_hook(lambda m, i, out: stages.append(out))
    with torch.inference_mode():
        logits = model(entry.transforms()(image).unsqueeze(0).to(device))
    kept.append((model, stages, logits))
print(json.dumps({"peak": peak(device)}))
"""
)


@dataclass(frozen=True)
class MemoryReport:
    """Peak memory in MiB of fmviz and of the torchvision script, and where it was measured."""

    fmviz_mib: float
    torchvision_mib: float
    measure: str  # "resident set (RSS)" or "CUDA memory allocated"

    @property
    def ratio(self) -> float:
        return self.fmviz_mib / self.torchvision_mib


def measure_memory(device: str, image: str | os.PathLike[str]) -> MemoryReport:
    """Run both scripts on ``device`` (a resolved device name, e.g. ``"cpu"`` or ``"cuda:0"``)."""
    fmviz = _run(_FMVIZ, device, str(image))
    # The reference taps the same modules: fmviz's networks use torchvision's module names.
    reference = _run(_TORCHVISION, device, str(image), json.dumps(fmviz["stages"]))
    measure = "CUDA memory allocated" if device.startswith("cuda") else "peak resident set"
    return MemoryReport(fmviz["peak"], reference["peak"], measure)


def _run(script: str, *args: str) -> dict:
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(  # noqa: S603 (this interpreter, our own script)
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the memory benchmark's script failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])
