"""The machine line every benchmark prints (cores, CPU model, torch, date)."""

import datetime
import os
import platform


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} cores, {model}, {gpu}, torch {torch.__version__}, "
            f"{datetime.date.today().isoformat()}")
