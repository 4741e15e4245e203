"""Several clients writing at once, as parallel training jobs (or MLflow's
own async logging) do: every write lands, none is refused for contention."""

from concurrent.futures import ThreadPoolExecutor

import mlflow
from mlflow.tracking import MlflowClient

from support import unique


def test_parallel_writers(tracking_uri, client):
    experiment_id = client.create_experiment(unique("exp"))
    shared = client.create_run(experiment_id).info.run_id
    model = unique("model")
    client.create_registered_model(model)

    def worker(index):
        own_client = MlflowClient(tracking_uri, tracking_uri)
        own = own_client.create_run(experiment_id, run_name=f"worker-{index}").info.run_id
        for step in range(20):
            own_client.log_metric(shared, f"w{index}", float(step), step=step, timestamp=step)
            own_client.log_metric(own, "loss", 1.0 / (step + 1), step=step)
        own_client.log_param(shared, f"p{index}", str(index))
        own_client.set_terminated(own)
        version = own_client.create_model_version(model, f"mlflow-artifacts:/{experiment_id}/{own}/artifacts/m",
                                                  run_id=own)
        return own, version.version

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(worker, range(6)))

    run = client.get_run(shared)
    assert run.data.params == {f"p{i}": str(i) for i in range(6)}
    assert run.data.metrics == {f"w{i}": 19.0 for i in range(6)}
    for index in range(6):
        history = client.get_metric_history(shared, f"w{index}")
        assert [m.value for m in history] == [float(step) for step in range(20)]
    # Versions are numbered 1..6, each once.
    assert sorted(int(version) for _, version in results) == list(range(1, 7))
    finished = client.search_runs([experiment_id], "attributes.status = 'FINISHED'")
    assert {r.info.run_id for r in finished} == {own for own, _ in results}
    assert all(len(client.get_metric_history(own, "loss")) == 20 for own, _ in results)
    assert mlflow.get_tracking_uri() == tracking_uri
