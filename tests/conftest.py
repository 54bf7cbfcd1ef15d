import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from strict_skips import (  # noqa: F401  (the skip gate's hooks, registered by being here)
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

from cfzoo.data import CameraDataset
from cfzoo.sample_data import sample_dataset_dir


@pytest.fixture
def mark_digitally_zoomed():
    """A function that replaces a photo by a PNG copy whose EXIF says the camera zoomed 2x digitally."""
    from PIL import Image

    def mark(photo):
        exif = Image.Exif()
        exif[0x8769] = {0xA404: 2.0}  # Exif IFD: DigitalZoomRatio
        zoomed = photo.with_suffix(".zoomed.png")
        with Image.open(photo) as image:
            image.convert("RGB").save(zoomed, exif=exif)
        photo.unlink()
        return zoomed

    return mark


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """scikit-image's bundled photos laid out as a camera dataset (4 pseudo-devices)."""
    return sample_dataset_dir(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def sample_dataset(sample_root):
    return CameraDataset.from_directory(sample_root)


@pytest.fixture(scope="session")
def photo():
    """A real RGB photo (scikit-image's astronaut), 512 x 512 x 3 uint8."""
    from cfzoo.images import read_rgb
    from cfzoo.sample_data import skimage_data_dir

    return read_rgb(skimage_data_dir() / "astronaut.png")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def isolated_homes(tmp_path_factory, monkeypatch):
    """Every test gets an empty user zoo and Hugging Face cache, so only the embedded zoo is visible."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CFZOO_HOME", str(home / "cfzoo"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    # huggingface_hub reads these once, at import: patch its constants too
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hf" / "hub"))
    from cfzoo.zoo.runtime import clear_session_cache

    clear_session_cache()
    yield
    clear_session_cache()


@pytest.fixture
def models(request):
    """The models a test module lists in ``MODELS``, which must ship in the embedded zoo."""
    from cfzoo.zoo.registry import embedded_registry

    embedded = embedded_registry()
    missing = [model for model in request.module.MODELS if model not in embedded or not embedded.get(model).embedded]
    assert not missing, (
        f"not embedded: {', '.join(missing)}; export them with cfzoo export ... --zoo cfzoo/zoo/embedded"
    )


@pytest.fixture
def conforms():
    """``conforms(document, name)``: the JSON document validates against docs/schemas/<name>.schema.json."""
    import jsonschema

    schemas = Path(__file__).resolve().parent.parent / "docs" / "schemas"

    def check(document, name: str) -> None:
        schema = json.loads((schemas / f"{name}.schema.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(document)

    return check


@pytest.fixture(scope="session")
def headless():
    """``headless(*arguments)``: run the system's Chromium headless with ``arguments`` (apt-get install chromium)."""
    import shutil
    import subprocess

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed: apt-get update && apt-get install -y chromium")

    def run(*arguments, timeout=120) -> subprocess.CompletedProcess:
        # --no-sandbox: tests and CI run as root, where Chromium's sandbox refuses to start
        command = [found, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def load_tool():
    """A script of tools/ imported as a module: ``load_tool("structure")`` loads tools/structure.py."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parent.parent / "tools" / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
