"""Hostile registries: every registry file is validated against the registry's own types (pydantic, strict), and
a violation is one line naming the file, the entry and the field. In a user zoo a bad entry is left out and
named, so `cfzoo list` still lists the good ones; a registry downloaded by `cfzoo pull` is read strictly."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cfzoo.cli import app
from cfzoo.errors import CfzooError
from cfzoo.zoo.catalog import open_detector
from cfzoo.zoo.registry import (
    REGISTRY_NAME,
    Registry,
    embedded_registry,
    load_registry,
    user_zoo_dir,
)
from cfzoo.zoo.restorers import (
    RESTORER_REGISTRY_NAME,
    RestorerRegistry,
    load_restorer_registry,
)

GOOD_ID = "spam-jpeg70"


def good_payload(model_id=GOOD_ID):
    payload = embedded_registry().get(GOOD_ID).to_json()
    family, task = model_id.split("-", 1)  # the entry of the id's family and task, as the registry orders them
    return {**payload, "id": model_id, "family": family, "task": task, "embedded": False}


def changed(path, value, model_id="bayar2016-median3"):
    """A user entry for ``model_id`` with the field at ``path`` (keys) set to ``value``."""
    payload = good_payload(model_id)
    payload["task"], payload["family"] = model_id.split("-")[1], model_id.split("-")[0]
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return payload


def write_user_registry(text):
    user_zoo_dir().mkdir(parents=True, exist_ok=True)
    path = user_zoo_dir() / REGISTRY_NAME
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


BAD_ENTRIES = {
    "an int": (5, "entry #2: the entry: Input should be an object"),
    "a string": ("spam-jpeg70", "entry #2: the entry: Input should be an object"),
    "null": (None, "entry #2: the entry: Input should be an object"),
    "a size that is a string": (
        changed(("files", "detector", "size"), "12"),
        "entry 'bayar2016-median3': files.detector.size: Input should be a valid integer",
    ),
    "a metric that is a string": (
        changed(("metrics", "test", "acc"), "high"),
        "entry 'bayar2016-median3': metrics.test.acc: should be int or float, not str",
    ),
    "a threshold that is a list": (
        changed(("threshold",), [0.5]),
        "entry 'bayar2016-median3': threshold: Input should be a valid number",
    ),
    "a split that is a number": (
        changed(("training", "split"), 3),
        "entry 'bayar2016-median3': the entry: training.split must hold lists",
    ),
    "a size of 10**30 bytes": (
        changed(("files", "detector", "size"), 10**30),
        "files.detector: size 1000000000000000000000000000000 must be 0 to 1099511627776 bytes",
    ),
    "a bad sha256": (
        changed(("files", "detector", "sha256"), "xyz"),
        "entry 'bayar2016-median3': files.detector: sha256 'xyz' must be 64 lowercase",
    ),
    "a file of an unknown kind": (
        changed(("files", "weights"), good_payload()["files"]["detector"]),
        "entry 'bayar2016-median3': the entry: files may be of these kinds only",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_ENTRIES))
def test_a_bad_user_entry_is_named_and_the_good_ones_are_listed(kind):
    bad, words = BAD_ENTRIES[kind]
    path = write_user_registry(json.dumps({"schema": 1, "models": [good_payload("spam-jpeg90"), bad]}))
    registry = load_registry()
    (problem,) = registry.problems
    assert problem.startswith(f"{path}: ") and words in problem and "\n" not in problem
    assert registry.get("spam-jpeg90").embedded is False  # the good user entry is in
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    listed = [row["id"] for row in json.loads(result.stdout) if row["kind"] == "detector" and row["registered"]]
    assert listed == [entry.id for entry in registry]
    assert result.stderr == f"note: {problem}; left out (fix or delete that entry)\n"
    with pytest.raises(CfzooError, match="fix the entry"):  # read strictly, as a pulled registry.json is
        Registry.read(path)


def test_asking_for_a_model_whose_user_entry_is_invalid_says_why():
    from cfzoo.manipulations import TASK_IDS
    from cfzoo.paper import FAMILY_IDS
    from cfzoo.zoo.registry import embedded_registry

    # an id only the user's (invalid) entry names: the package's registry lists no such model
    model_id = next(
        f"{family}-{task}"
        for family in FAMILY_IDS
        for task in TASK_IDS
        if f"{family}-{task}" not in embedded_registry()
    )
    write_user_registry(json.dumps({"schema": 1, "models": [changed(("files", "detector", "size"), "12", model_id)]}))
    with pytest.raises(CfzooError) as caught:
        open_detector(model_id)
    message = str(caught.value)
    assert f"entry '{model_id}': files.detector.size: Input should be a valid integer" in message
    assert message.endswith("; fix or delete that entry") and "\n" not in message


@pytest.mark.parametrize(
    "text, words",
    [
        (b"\xff\xfe{\x00", "is not UTF-8 text"),
        ("{not json", "is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1, 2]", "is not a cfzoo registry (schema 1)"),
        ('{"schema": 1, "models": {"a": 1}}', "with a list of entries under 'models'"),
        ("null", "is not a cfzoo registry"),
    ],
)
def test_a_user_registry_that_is_no_registry_at_all_is_one_line(text, words):
    path = write_user_registry(text)
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {path}") and words in result.stderr and result.stderr.count("\n") == 1


def test_a_bad_user_restorer_entry_is_named_and_left_out():
    payload = next(iter(load_restorer_registry())).to_json()
    user_zoo_dir().mkdir(parents=True, exist_ok=True)
    path = user_zoo_dir() / RESTORER_REGISTRY_NAME
    path.write_text(json.dumps({"schema": 1, "restorers": [{**payload, "receptive_radius": "ten"}]}))
    registry = load_restorer_registry()
    (problem,) = registry.problems
    assert problem == f"{path}: entry {payload['id']!r}: receptive_radius: Input should be a valid integer"
    assert registry.entries[payload["id"]].embedded  # the embedded restorer stands
    with pytest.raises(CfzooError, match="receptive_radius"):
        RestorerRegistry.read(path)
    # a negative radius (it used to pass and then fail with a traceback when tiles were cut)
    path.write_text(json.dumps({"schema": 1, "restorers": [{**payload, "receptive_radius": -5}]}))
    (problem,) = load_restorer_registry().problems
    assert problem.endswith("receptive_radius: Input should be greater than or equal to 0")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# registries shaped like the real thing, with any values in the entries
REGISTRY_LIKE = st.fixed_dictionaries(
    {"schema": st.sampled_from([1, 2]), "models": st.lists(JSON | st.just(good_payload()), max_size=3)}
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=JSON | REGISTRY_LIKE)
def test_any_json_gives_a_registry_or_a_one_line_error(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("registry") / REGISTRY_NAME
    path.write_text(json.dumps(document))
    for read in (Registry.read, lambda p: Registry.read(p, lenient=True), RestorerRegistry.read):
        try:
            registry = read(path)
        except CfzooError as error:
            assert "\n" not in str(error) and str(path) in str(error)
        else:
            assert all("\n" not in problem for problem in registry.problems)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64))
def test_any_bytes_give_a_registry_or_a_one_line_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("registry") / REGISTRY_NAME
    path.write_bytes(data)
    try:
        Registry.read(path, lenient=True)
    except CfzooError as error:
        assert "\n" not in str(error)
