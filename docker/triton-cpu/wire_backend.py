"""Run at image build time: link the python backend's folder and write the `tritonserver` wrapper.

The same wiring as stack/triton.py (`_backend_dir`, `_environment`), fixed in the image:
`/opt/tritonserver/backends/python/` links the backend library, its utils module and the stub
built for this Python; the wrapper gets the binary's path and the library path filled in.

    python wire_backend.py TEMPLATE TARGET
"""

import importlib.util
import sys
import sysconfig
from pathlib import Path

BACKENDS = Path("/opt/tritonserver/backends")


def main(template: Path, target: Path) -> None:
    spec = importlib.util.find_spec("pytriton")
    assert spec is not None and spec.submodule_search_locations, "nvidia-pytriton is not installed"
    pytriton = Path(next(iter(spec.submodule_search_locations)))
    server = pytriton / "tritonserver"
    stub = server / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    python = BACKENDS / "python"
    python.mkdir(parents=True)
    for source in (
        server / "backends" / "python" / "libtriton_python.so",
        server / "backends" / "python" / "triton_python_backend_utils.py",
        stub / "triton_python_backend_stub",
    ):
        assert source.exists(), f"{source} is missing from the nvidia-pytriton wheel"
        (python / source.name).symlink_to(source)
    libs = [sysconfig.get_config_var("LIBDIR"), str(pytriton.parent / "nvidia_pytriton.libs")]
    wrapper = template.read_text().replace("@BINARY@", str(server / "bin" / "tritonserver"))
    target.write_text(wrapper.replace("@LIBS@", ":".join(libs)))
    target.chmod(0o755)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
