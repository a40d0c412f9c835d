"""The machine line the benchmark scripts print and write beside their tables; peak memory."""
import os
import platform
import resource


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


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's size from before exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
