"""Each command's settings object: built only when valid (a one-line CfzooError otherwise, before any work),
normalised once (repeats dropped, eps sorted), and echoed by what the command writes."""

import pytest

from cfzoo.engines.scan import ScanSettings
from cfzoo.errors import CfzooError
from cfzoo.experiments.context import ExperimentContext
from cfzoo.experiments.robustness import RobustnessSettings
from cfzoo.ops.detect import DetectSettings
from cfzoo.ops.restore import RestoreSettings


def test_detect_settings_refuse_a_bad_stride_or_batch_size():
    with pytest.raises(CfzooError, match="multiple of 8"):
        DetectSettings(stride=12)
    with pytest.raises(CfzooError, match="batch"):
        DetectSettings(batch_size=0)
    settings = DetectSettings(families=["spam"], tasks=["jpeg70"], stride=64)
    assert settings.families == ("spam",) and settings.tasks == ("jpeg70",)


def test_scan_settings_are_detect_settings_plus_parts():
    settings = ScanSettings(("spam",), ("jpeg70",), (), 128, 16, "cpu", images_per_part=4)
    assert isinstance(settings, DetectSettings) and settings.images_per_part == 4
    assert [detector.entry.id for detector in settings.detectors()] == ["spam-jpeg70"]
    with pytest.raises(CfzooError, match="images per part|images_per_part"):
        ScanSettings(images_per_part=0)
    with pytest.raises(CfzooError, match="multiple of 8"):
        ScanSettings(stride=100)


def test_restore_settings_default_to_vgg_and_name_one_output_per_restorer(tmp_path):
    assert RestoreSettings("median3").discriminators == ("vgg",)
    both = RestoreSettings("median7", ("kim", "vgg", "kim"))
    assert both.discriminators == ("kim", "vgg")
    assert both.outputs(tmp_path / "out.png") == {"kim": tmp_path / "out-kim.png", "vgg": tmp_path / "out-vgg.png"}
    assert RestoreSettings("median7", ("kim",)).outputs(tmp_path / "out.png") == {"kim": tmp_path / "out.png"}
    with pytest.raises(CfzooError, match="restorers exist for"):
        RestoreSettings("jpeg70")
    with pytest.raises(CfzooError, match="discriminator"):
        RestoreSettings("median3", ("gan",))
    with pytest.raises(CfzooError, match="tile"):
        RestoreSettings("median3", tile=0)
    with pytest.raises(CfzooError, match=r"tile must be at least 32 pixels, got 1: .* would take days"):
        RestoreSettings("median3", tile=1)  # it used to hang: one generator run per pixel


def test_robustness_settings_sort_eps_drop_repeats_and_refuse_what_cannot_run(sample_dataset):
    context = ExperimentContext(sample_dataset, seed=3, batch_size=7)
    settings = RobustnessSettings("cozzolino2017", eps=(4, 1, 4), attacks=("pgd", "fgsm", "pgd"), recompress=(80, 95))
    assert settings.eps == (1, 4) and settings.attacks == ("pgd", "fgsm") and settings.recompress == (95, 80)
    assert settings.attack_settings("square", 2, context).queries is None
    square = RobustnessSettings("spam", attacks=("square",), queries=50).attack_settings("square", 2, context)
    assert (square.queries, square.seed, square.batch_size) == (50, 3, 7)  # the seed and batch are the context's
    with pytest.raises(CfzooError, match="eps"):
        RobustnessSettings("spam", eps=(0,))
    with pytest.raises(CfzooError, match="eps"):
        RobustnessSettings("spam", eps=())
    with pytest.raises(CfzooError, match="ensemble"):
        RobustnessSettings(("spam", "bayar2016"), attacks=("spam-prist",))
    with pytest.raises(CfzooError):
        RobustnessSettings("spam", recompress=(101,))
    with pytest.raises(CfzooError, match="queries"):
        RobustnessSettings("spam", attacks=("square",), queries=0)


def test_an_experiment_context_refuses_bad_counts_and_providers_when_built(sample_dataset):
    with pytest.raises(CfzooError, match="max_patches"):
        ExperimentContext(sample_dataset, max_patches=0)
    with pytest.raises(CfzooError, match="batch size"):
        ExperimentContext(sample_dataset, batch_size=0)
    with pytest.raises(CfzooError, match="unknown provider"):
        ExperimentContext(sample_dataset, providers="tpu")
    context = ExperimentContext(sample_dataset, seed=1)
    assert context.split.test and set(context.split.test) | set(context.split.train) == set(sample_dataset.device_names)
