"""GPU check (run on a CUDA machine): the training loop with mixed precision and channels_last,
and training throughput of the reports' backbones at their input sizes, CPU-free timings.

    python -m benchmarks.gpu_check        # prints a table, writes results/bench/gpu-*.json
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import time

import torch

from cellutils import models, train
from cellutils.paths import results_root, write_json


def throughput(
    arch: str, size: int, channels: int, batch: int = 32, steps: int = 20, amp: bool = True
) -> float:
    m = (
        models.build(arch, 50, channels, pretrained=False)
        .cuda()
        .to(memory_format=torch.channels_last)
    )
    opt = torch.optim.AdamW(m.parameters(), 3e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(batch, channels, size, size, device="cuda").contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 50, (batch,), device="cuda")
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", enabled=amp):
            loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    ds = torch.utils.data.TensorDataset(torch.randn(256, 6, 64, 64), torch.arange(256) % 4)
    ds.tensors[0][ds.tensors[1] == 1] += 1.0
    with tempfile.TemporaryDirectory() as tmp:
        r = train.fit(
            models.build("resnet18", 4, 6, pretrained=False),
            ds,
            ds,
            train.TrainConfig(epochs=3, batch_size=64, lr=1e-3),
            tmp,
            progress=False,
        )
    print("fit on cuda with AMP:", r.best, "device", next(r.model.parameters()).device)
    rows = []
    for arch, size, ch in [
        ("efficientnet_b3", 320, 6),
        ("densenet161", 64, 3),
        ("mobilenet_v2", 128, 3),
        ("efficientnet_b0", 224, 4),
    ]:
        fp32 = throughput(arch, size, ch, amp=False)
        amp = throughput(arch, size, ch, amp=True)
        rows.append(
            {
                "arch": arch,
                "size": size,
                "channels": ch,
                "fp32_img_s": round(fp32, 1),
                "amp_img_s": round(amp, 1),
                "amp_ratio": round(amp / fp32, 2),
            }
        )
        print(rows[-1], flush=True)
    out = results_root() / "bench"
    out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    write_json(
        out / f"gpu-{stamp}.json",
        {"device": torch.cuda.get_device_name(), "rows": rows, "fit": r.best},
    )


if __name__ == "__main__":
    main()
