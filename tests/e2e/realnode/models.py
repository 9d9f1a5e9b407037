"""Real scikit-learn models for the real node: trained here, kept in a real S3, served by MLServer.

- `ml_python()`: a virtualenv under the cache with the scikit-learn, numpy and joblib of the
  MLServer image (hack/images/mlserver/constraints.txt), so that what the tests train and predict
  is exactly what the served model computes. Created once per machine (from PyPI).
- `train(directory)`: the model versions the tests roll out, as `<name>/<version>/model.joblib`.
- `predict(model_file, rows)`: the same model's predictions computed here, to check the server's.
- `iris_data()`: the iris measurements and their classes (scikit-learn's copy), for evaluation sets.
- `ModelStore`: moto's S3 server listening on the real node's bridge address (pods cannot reach
  the host's loopback), in its own process that stops by itself after a bounded lifetime.

Runs as a script too (`python -m tests.e2e.realnode.models`), for `make demo`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("SLIPWAY_CACHE", Path.home() / ".cache" / "slipway"))
CONSTRAINTS = ROOT / "hack" / "images" / "mlserver" / "constraints.txt"
BRIDGE_IP = "10.244.0.1"  # the host on the real node's bridge (hack/realnode.sh)
BUCKET = "models"
ACCESS_KEY, SECRET_KEY, REGION = "slipway-test", "slipway-test-secret", "us-east-1"
STORE_LIFETIME = 3600  # seconds: a store outliving its test run stops by itself

# Iris measurements; every tenth row has a negative feature (a centred input): the "bad" model
# cannot take those, the others can.
ROWS: list[list[float]] = [
    [5.1, 3.5, 1.4, 0.2],
    [6.7, 3.0, 5.2, 2.3],
    [5.9, 3.0, 4.2, 1.5],
    [4.6, 3.1, 1.5, 0.2],
    [6.3, 2.9, 5.6, 1.8],
    [5.5, 2.4, 3.8, 1.1],
    [7.2, 3.6, 6.1, 2.5],
    [5.0, 3.4, 1.5, 0.2],
    [6.1, 2.8, 4.0, 1.3],
    [-1.5, 3.2, 4.5, 1.5],
]

# version -> estimator, trained on iris. 2.0.0-bad is a CategoricalNB (fitted on whole
# centimetres), which refuses negative inputs when it predicts ("Negative values in data passed
# to CategoricalNB"): a model that errors on part of its inputs. 3.0.0-worse answers every input,
# always with the most frequent class: a model whose predictions differ from the others'.
VERSIONS: dict[str, str] = {
    "1.0.0": "LogisticRegression(max_iter=500)",
    "1.1.0": "LogisticRegression(max_iter=500, C=0.05)",
    "2.0.0-bad": "CategoricalNB()",
    "3.0.0-worse": "DummyClassifier(strategy='most_frequent')",
}

_TRAIN = """
import json, sys, joblib
from pathlib import Path
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import CategoricalNB
X, y = load_iris(return_X_y=True)
for version, estimator in json.loads(sys.argv[2]).items():
    target = Path(sys.argv[1]) / version / "model.joblib"
    target.parent.mkdir(parents=True, exist_ok=True)
    model = eval(estimator)
    joblib.dump(model.fit(X.astype(int) if isinstance(model, CategoricalNB) else X, y), target)
"""

_PREDICT = """
import json, sys, joblib
model = joblib.load(sys.argv[1])
rows = json.loads(sys.stdin.read())
out = []
for row in rows:
    try:
        out.append(int(model.predict([row])[0]))
    except ValueError:
        out.append(None)
print(json.dumps(out))
"""


_IRIS = """
import json
from sklearn.datasets import load_iris
X, y = load_iris(return_X_y=True)
print(json.dumps({"rows": X.tolist(), "labels": y.tolist()}))
"""


def ml_python() -> Path:
    """A Python with the MLServer image's scikit-learn (a cached virtualenv)."""
    key = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:12]
    venv = CACHE / f"ml-{key}"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=venv.name + ".", dir=CACHE))
    print(f"installing scikit-learn into {venv} (once per machine)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
    subprocess.run(
        [str(building / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS),
         "scikit-learn", "joblib", "numpy"],
        check=True,
        timeout=900,
    )  # fmt: skip
    try:
        building.rename(venv)
    except OSError:  # another run finished first
        shutil.rmtree(building, ignore_errors=True)
    return python


def train(directory: Path) -> dict[str, Path]:
    """Every version of VERSIONS trained into `directory`; version -> its model.joblib."""
    subprocess.run(
        [str(ml_python()), "-c", _TRAIN, str(directory), json.dumps(VERSIONS)],
        check=True,
        timeout=300,
    )
    return {version: directory / version / "model.joblib" for version in VERSIONS}


def predict(model_file: Path, rows: Sequence[Sequence[float]]) -> list[int | None]:
    """The model's class for each row (None where the model refuses the row)."""
    out = subprocess.run(
        [str(ml_python()), "-c", _PREDICT, str(model_file)],
        input=json.dumps([list(r) for r in rows]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return list(json.loads(out))


def iris_data() -> tuple[list[list[float]], list[int]]:
    """The 150 iris measurements and their classes, as scikit-learn ships them."""
    out = subprocess.run(
        [str(ml_python()), "-c", _IRIS], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    data = json.loads(out)
    return [list(map(float, row)) for row in data["rows"]], [int(label) for label in data["labels"]]


def v2_request(rows: Sequence[Sequence[float]]) -> dict[str, Any]:
    """A V2 inference request for `rows` of four features."""
    flat = [float(x) for row in rows for x in row]
    return {
        "inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": flat}]
    }


def infer(
    url: str, model: str, rows: Sequence[Sequence[float]], timeout: float = 10
) -> dict[str, Any]:
    """POST a V2 inference request to `url` (e.g. http://<cluster ip>:8080); the answer as JSON."""
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/infer",
        data=json.dumps(v2_request(rows)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.loads(response.read()))


@dataclass
class ModelStore:
    """moto's S3 on the bridge address, with the bucket `models`."""

    endpoint: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, lifetime: float = STORE_LIFETIME) -> ModelStore:
        from tests.fetch_servers import start_moto

        process, endpoint = start_moto(BRIDGE_IP, lifetime)
        store = cls(endpoint=endpoint, process=process)
        store._boto("s3.create_bucket(Bucket=bucket)")
        return store

    def upload(self, local: Path, key: str) -> None:
        self._boto("s3.upload_file(local, bucket, key)", local=str(local), key=key)

    def stop(self) -> None:
        from tests.fetch_servers import stop_process

        stop_process(self.process)

    def secret(self) -> dict[str, str]:
        """What a ModelDeployment's storage Secret holds to read this store."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def _boto(self, statement: str, **names: str) -> None:
        """One boto3 call against the store, run by moto's Python (which has boto3)."""
        from tests.fetch_servers import moto_python

        script = (
            "import boto3, json, sys\n"
            "args = json.loads(sys.argv[1]); globals().update(args)\n"
            f"s3 = boto3.client('s3', endpoint_url={self.endpoint!r}, "
            f"aws_access_key_id={ACCESS_KEY!r}, aws_secret_access_key={SECRET_KEY!r}, "
            f"region_name={REGION!r})\n"
            f"bucket = {BUCKET!r}\n{statement}\n"
        )
        subprocess.run(
            [str(moto_python()), "-c", script, json.dumps(names)], check=True, timeout=120
        )


def publish(store: ModelStore, name: str, work: Path) -> dict[str, Path]:
    """Train every version and upload it as s3://models/<name>/<version>/model.joblib."""
    trained = train(work)
    for version, file in trained.items():
        store.upload(file, f"{name}/{version}/model.joblib")
    return trained


def main(argv: Sequence[str] | None = None) -> int:
    """`make demo`: start a store on the bridge, publish the iris models, print the Secret data."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, required=True, help="where the models are trained")
    parser.add_argument("--pidfile", type=Path, required=True, help="the store's pid goes here")
    args = parser.parse_args(argv)
    store = ModelStore.start()
    args.pidfile.write_text(str(store.process.pid))
    publish(store, "iris", args.work)
    print(json.dumps(store.secret()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
