"""The machine line the benchmark scripts print and write beside their tables."""
import os
import platform


def machine(with_paddle: bool = True) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if with_paddle:
        import paddle

        text += f", paddle {paddle.__version__}"
    return text
