"""The security rows as tests, plus the audit's own detector on code it must flag and code it must pass."""

from __future__ import annotations

import pytest

from tests.reliability import security

SEED = 20261203


@pytest.mark.parametrize("code", [
    "import pickle\npickle.loads(b'')",
    "import torch\ntorch.load('x.pt')",
    "import torch\ntorch.load('x.pt', weights_only=False)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.load(text)",
    "eval('1')",
    "import tarfile\ntarfile.open('a.tar').extractall('.')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "import pickle\nclass Mine(pickle.Unpickler):\n    pass",
])
def test_the_audit_flags_unsafe_loads(code):
    assert security.audit_source(code)


def test_the_audit_passes_safe_loads():
    code = ("import torch, yaml\ntorch.load('x.pt', weights_only=True)\nyaml.safe_load('a: 1')\n"
            "class Strict(yaml.SafeLoader):\n    pass\nyaml.load('a: 1', Loader=Strict)\nmodel.eval()\n")
    assert security.audit_source(code) == []


def test_library_code_has_no_unsafe_loads(tmp_path):
    security.audit(1, SEED, tmp_path).check()


@pytest.mark.slow
def test_pickles_that_would_run_code_never_do(prefect_server, tmp_path):
    security.hostile_pickles(1, SEED, tmp_path, current_api=True).check()


@pytest.mark.slow
def test_the_local_prefect_server_and_a_local_ray_listen_on_loopback_only(tmp_path):
    security.bindings(1, SEED, tmp_path).check()


@pytest.mark.slow
def test_secrets_in_the_environment_reach_no_artifact_log_or_file(prefect_server, tmp_path):
    security.credentials(1, SEED, tmp_path, current_api=True).check()
