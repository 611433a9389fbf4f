"""The official Huawei Cloud SDK (huaweicloudsdkcdm, AK/SK) against the simulator: a reading
of the API independent of both the simulator and the exporter's client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from huaweicloudsdkcdm.v1 import (
    CdmClient,
    ListClustersRequest,
    ShowJobsRequest,
    ShowJobStatusRequest,
    ShowSubmissionsRequest,
)
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from live_stack import run_job

from cdm_exporter.simulator import Simulator, SimulatorSettings


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(
        SimulatorSettings(clusters=2, jobs=12, seed=3, time_scale=60.0, rate_limit=0)
    ) as simulator:
        yield simulator


def client(sim: Simulator, secret_key: str = "SIMSK") -> Any:
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    config.timeout = (5, 10)
    return (
        CdmClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials("SIMAK", secret_key, sim.settings.project_id))
        .with_endpoints([sim.url])
        .build()
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's requests session honours proxy variables; the simulator is local.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_sdk_lists_clusters(sim: Simulator) -> None:
    response = client(sim).list_clusters(ListClustersRequest())
    assert [c.id for c in response.clusters] == [c.id for c in sim.world.clusters()]
    first = response.clusters[0]
    assert first.status == "200" and first.datastore.version and first.instances[0].type == "cdm"


def test_sdk_lists_jobs_of_every_type(sim: Simulator) -> None:
    cdm = client(sim)
    cid = sim.world.clusters()[0].id
    for job_type in ("NORMAL_JOB", "BATCH_JOB", "SCENARIO_JOB"):
        request = ShowJobsRequest(cluster_id=cid, job_name="all", job_type=job_type, page_size=10)
        response = cdm.show_jobs(request)
        expected = sim.world.jobs(cid, job_type)
        assert response.total == len(expected)
        assert [j.name for j in response.jobs] == [j.name for j in expected][:10]
        assert all(j.job_type == job_type and j.status for j in response.jobs)


def test_sdk_reads_status_and_history(sim: Simulator) -> None:
    cdm = client(sim)
    cid = sim.world.clusters()[0].id
    for outcome in ("SUCCEEDED", "FAILED"):  # whatever the generated runs are doing now
        sim.world.add_job(cid, f"sdk_{outcome.lower()}")
        run_job(sim, cid, f"sdk_{outcome.lower()}", outcome, duration=1)
    ran = [j for j in sim.world.jobs(cid) if j.latest is not None]
    seen = set()
    for job in ran:
        status = cdm.show_job_status(ShowJobStatusRequest(cluster_id=cid, job_name=job.name))
        (submission,) = status.submissions
        assert submission.job_name == job.name
        assert submission.status in {
            "BOOTING",
            "PENDING",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "FAILURE_ON_SUBMIT",
        }
        if submission.status == "SUCCEEDED":
            assert submission.counters.org_apache_sqoop_submission_counter_sqoop_counters.rows_read >= 0
        if submission.status == "FAILED":
            assert submission.progress == -1 and submission.error_summary
        seen.add(submission.status)
    assert {"SUCCEEDED", "FAILED"} <= seen
    scheduled = next(j for j in ran if j.scheduled)
    history = cdm.show_submissions(ShowSubmissionsRequest(cluster_id=cid, jname=scheduled.name))
    assert history.total == sim.settings.history_size
    ids = [s.submission_id for s in history.submissions if s.submission_id is not None]
    assert ids == sorted(ids, reverse=True) and len(history.submissions) == 10
    assert all(
        isinstance(s.last_update_date, int) for s in history.submissions if s.last_update_date is not None
    )


def test_sdk_reaches_a_job_whose_name_has_a_slash(sim: Simulator) -> None:
    cid = sim.world.clusters()[1].id
    sim.world.add_job(cid, "nightly/orders")
    sim.world.start_run(cid, "nightly/orders", duration=3600)
    status = client(sim).show_job_status(ShowJobStatusRequest(cluster_id=cid, job_name="nightly/orders"))
    assert status.submissions[0].job_name == "nightly/orders"
    assert sim.stats.paths("job_status")[-1].endswith("/cdm/job/nightly%2Forders/status")


def test_sdk_with_a_wrong_secret_is_refused(sim: Simulator) -> None:
    with pytest.raises(ClientRequestException) as caught:
        client(sim, secret_key="not-the-secret").list_clusters(ListClustersRequest())
    assert caught.value.status_code == 401
    assert caught.value.error_code == "APIGW.0301"
    assert caught.value.request_id
