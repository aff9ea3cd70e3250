"""The deployment files in docker/, checked without a Docker engine: the compose file is parsed (PyYAML) and every
service, image, healthcheck, queue, path, Dockerfile and environment variable it names is checked against the repo.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE_TEXT = (DOCKER / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
# ${VAR}, ${VAR:-default}, ${VAR:?error}; "$${VAR}" is an escaped shell variable, not compose interpolation
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}")
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
ONE_SHOT = {"airflow-init", "s3-dev-bucket"}


def _env_example() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, active) from .env.example; ``# NAME=...`` lines count as documented but inactive."""
    out: dict[str, tuple[str, bool]] = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        m = re.match(r"^(#\s*)?([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            out[m.group(2)] = (m.group(3), m.group(1) is None)
    return out


def _interpolate_defaults(value: str) -> str:
    """Compose interpolation with every variable at its default (what a bare `docker compose config` would use)."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def _command(service: dict) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_services_and_airflow_components():
    assert {"postgres", "redis", "airflow-init", "airflow-worker", "airflow-worker-gpu", "spark-master",
            "spark-worker"} | set(AIRFLOW_COMPONENTS) <= set(SERVICES)
    for name, command in AIRFLOW_COMPONENTS.items():
        assert _command(SERVICES[name]) == command, name
    assert _command(SERVICES["airflow-worker"]).startswith("celery worker")
    assert "airflow db migrate" in _command(SERVICES["airflow-init"])
    for name in (*AIRFLOW_COMPONENTS, "airflow-worker", "airflow-worker-gpu"):
        deps = SERVICES[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy" and deps["redis"]["condition"] == "service_healthy"
    for name in AIRFLOW_COMPONENTS:  # nothing starts before the metadata database is migrated
        assert SERVICES[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_celery_executor_with_redis_broker_and_postgres_metadata_db():
    env = SERVICES["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env[
        "AIRFLOW__CELERY__BROKER_URL"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert SERVICES["postgres"]["image"].startswith("postgres:") and SERVICES["redis"]["image"].startswith("redis:")
    # every Airflow component shares one configuration (the same secrets, database and broker)
    for name in (*AIRFLOW_COMPONENTS, "airflow-worker", "airflow-worker-gpu", "airflow-init"):
        for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
            assert SERVICES[name]["environment"][key] == env[key], (name, key)


def test_every_long_running_service_has_a_healthcheck():
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2, name
        assert check.get("interval") and check.get("retries", 0) >= 3, name
    assert SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "8974/health" in " ".join(SERVICES["airflow-scheduler"]["healthcheck"]["test"])
    assert "DagProcessorJob" in " ".join(SERVICES["airflow-dag-processor"]["healthcheck"]["test"])


def test_gpu_queue_worker_matches_what_the_dags_route_to():
    gpu = SERVICES["airflow-worker-gpu"]
    queue = _interpolate_defaults(gpu["environment"]["MMSRAREC_GPU_QUEUE"])
    assert queue == "gpu"
    assert f"--queues {queue}" in _command(gpu) and "--concurrency 1" in _command(gpu)
    assert "--queues default" in _command(SERVICES["airflow-worker"])  # CPU work never lands on the GPU worker
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    # the DAGs put GPU-heavy tasks on $MMSRAREC_GPU_QUEUE / $MMSRAREC_GPU_POOL, and airflow-init creates that pool
    common = (REPO / "dags" / "_mmsrarec_common.py").read_text()
    assert "MMSRAREC_GPU_QUEUE" in common and "MMSRAREC_GPU_POOL" in common
    assert "airflow pools set" in _command(SERVICES["airflow-init"])


def test_dag_folder_is_mounted_where_airflow_looks():
    dags_folder = SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__CORE__DAGS_FOLDER"]
    for name in (*AIRFLOW_COMPONENTS, "airflow-worker", "airflow-worker-gpu"):
        mounts = [v.split(":") for v in SERVICES[name]["volumes"]]
        dag_mounts = [m for m in mounts if m[1] == dags_folder]
        assert dag_mounts, name
        host = (DOCKER / dag_mounts[0][0]).resolve()
        assert host == REPO / "dags"
        assert sorted(p.name for p in host.glob("mmsrarec_*.py")), "no DAG files in the mounted folder"
    for dockerfile in ("Dockerfile.airflow", "Dockerfile.gpu"):  # images carry the same DAGs when nothing is mounted
        assert f"COPY --chown=airflow:0 dags {dags_folder}" in (DOCKER / dockerfile).read_text()


def test_builds_dockerfiles_and_copied_paths_exist():
    builds = {name: s["build"] for name, s in SERVICES.items() if "build" in s}
    assert {b["dockerfile"] for b in builds.values()} == {
        "docker/Dockerfile.airflow", "docker/Dockerfile.gpu", "docker/Dockerfile.spark"
    }
    for name, build in builds.items():
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO, name
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), name
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY") and "--from=" not in line:
                sources = [a for a in line.split()[1:] if not a.startswith("--")][:-1]
                for src in sources:
                    assert (context / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
    # services that share an image without building it name an image some service builds
    built_images = {_interpolate_defaults(SERVICES[n]["image"]) for n in builds}
    for name, service in SERVICES.items():
        image = _interpolate_defaults(service["image"]) if "image" in service else None
        if image and image.startswith("mmsrarec-"):
            assert image in built_images, name


def _pin(requirements: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}==(\S+)$", requirements, re.M)
    assert m, f"{name} is not pinned"
    return m.group(1)


def test_base_images_match_the_pinned_versions():
    reqs = (REPO / "requirements.txt").read_text()
    airflow = _pin(reqs, "apache-airflow")
    spark = _pin(reqs, "pyspark")
    for name in ("Dockerfile.airflow", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert f"ARG AIRFLOW_VERSION={airflow}" in text and "FROM apache/airflow:${AIRFLOW_VERSION}" in text
        assert "ARG PYTHON_VERSION=3.11" in text
        assert "torch==2.13.0" in text and "-c /tmp/req/constraints.txt" in text
    gpu = (DOCKER / "Dockerfile.gpu").read_text()
    assert f"faiss-gpu=={_pin(reqs, 'faiss-cpu')}" in gpu and "grep -v '^faiss-cpu'" in gpu
    assert "download.pytorch.org/whl/cpu" in (DOCKER / "Dockerfile.airflow").read_text()
    text = (DOCKER / "Dockerfile.spark").read_text()
    assert re.search(rf"^ARG SPARK_IMAGE=apache/spark:{re.escape(spark)}-\S+$", text, re.M)
    assert "--python 3.11" in text  # executors' Python minor version = the driver's


def test_every_env_var_the_compose_file_names_is_in_env_example():
    documented = _env_example()
    interpolated = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    passed_through = {
        k for s in SERVICES.values() for k, v in (s.get("environment") or {}).items() if v is None
    }
    missing = sorted((interpolated | passed_through) - set(documented))
    assert not missing, f"not in docker/.env.example: {missing}"
    required = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT) if ":?" in m.group(0)}
    assert required >= {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "MMSRAREC_WAREHOUSE"}
    assert all(documented[name][1] for name in required), "a required variable is commented out in .env.example"


def test_env_example_holds_no_secret_values():
    for name, (value, _active) in _env_example().items():
        if re.search(r"PASSWORD|SECRET|FERNET|TOKEN|ACCESS_KEY", name):
            assert value == "", f"{name} has a value in .env.example"
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def _code_text() -> str:
    files = [*REPO.glob("mmsrarec_lib/**/*.py"), *REPO.glob("jobs/*.py"), *REPO.glob("dags/*.py")]
    return "\n".join(p.read_text() for p in files)


def test_project_variables_set_in_compose_are_read_by_the_code():
    """No dead configuration: every MMSRAREC_*/SPARK_* variable a container gets is read somewhere."""
    code = _code_text()
    names = {k for s in SERVICES.values() for k in (s.get("environment") or {})
             if k.startswith(("MMSRAREC_", "SPARK_DRIVER", "SPARK_MASTER"))}
    assert {"MMSRAREC_WAREHOUSE", "MMSRAREC_GPU_QUEUE", "SPARK_MASTER", "SPARK_DRIVER_HOST"} <= names
    unread = sorted(n for n in names if n not in code)
    assert not unread, f"set in docker-compose.yml but read nowhere: {unread}"


# Executors import these mmsrarec_lib modules when they run a Spark job's Python functions.
_EXECUTOR_MODULES = ["mmsrarec_lib/__init__.py", "mmsrarec_lib/storage.py", "mmsrarec_lib/runs.py",
                     "mmsrarec_lib/schemas.py", "mmsrarec_lib/spark.py", "mmsrarec_lib/ingest/*.py"]
_DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml"}


def _third_party_imports(paths: list[Path]) -> set[str]:
    stdlib = set(__import__("sys").stdlib_module_names)
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in stdlib and n not in {"mmsrarec_lib", "jobs", "__future__", "pyspark"}}


def test_spark_image_installs_what_executors_import():
    paths = [p for pattern in _EXECUTOR_MODULES for p in sorted(REPO.glob(pattern))]
    if not any("ingest" in str(p) for p in paths):
        pytest.skip("mmsrarec_lib/ingest has not landed")
    needed = {_DISTRIBUTION.get(n, n) for n in _third_party_imports(paths)}
    listed = {
        line.strip().lower() for line in (DOCKER / "requirements-spark.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert needed <= listed, f"missing from docker/requirements-spark.txt: {sorted(needed - listed)}"
    constraints = (REPO / "constraints.txt").read_text().lower()
    for name in listed:  # pinned, so executors get the driver's versions
        assert re.search(rf"^{re.escape(name)}==", constraints, re.M), name


# bench/gpu_check.py is what the GPU image runs to check a GPU host (see Dockerfile.gpu)
def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    return subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_gpu_check_skips_cleanly_without_cuda():
    proc = _gpu_check()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA device visible" in proc.stdout and "skipped" in proc.stdout


@pytest.mark.slow
def test_gpu_check_runs_its_stages_on_the_cpu_when_allowed():
    """The same summarizer/recommender code path on the CPU, so an API change breaks here, not on a GPU host."""
    proc = _gpu_check("--allow-cpu", "--items", "2", "--users", "1", "--candidates", "3", "--max-new-tokens", "4")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["device"] == "cpu"
    assert report["summarizer"]["text"]["items"] == 2 and report["summarizer"]["image"]["items"] == 2
    rec = report["recommender"]
    assert rec["candidates_per_user"] == 3 and rec["max_abs_diff"] < 1e-4  # shared prefix == naive scoring
